#!/bin/sh
# Graceful stop: SIGTERM, wait for in-flight requests to finish, SIGKILL only as a last resort.
set -u
RELEASE_DIR=$(cd "$(dirname "$0")/.." && pwd -P)
PID_FILE="$RELEASE_DIR/../../shared/app.pid"
[ -f "$PID_FILE" ] || { echo "not running"; exit 0; }
PID=$(cat "$PID_FILE")
kill -0 "$PID" 2>/dev/null || { rm -f "$PID_FILE"; echo "not running"; exit 0; }
kill -TERM "$PID"
for _ in $(seq 1 300); do
  kill -0 "$PID" 2>/dev/null || { rm -f "$PID_FILE"; echo "stopped pid $PID"; exit 0; }
  sleep 0.1
done
echo "pid $PID ignored SIGTERM for 30s, killing" >&2
kill -KILL "$PID"; rm -f "$PID_FILE"
