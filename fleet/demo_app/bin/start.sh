#!/bin/sh
# Starts the release this script belongs to, detached from the SSH session.
set -eu
RELEASE_DIR=$(cd "$(dirname "$0")/.." && pwd -P)
SHARED="$RELEASE_DIR/../../shared"
set -a; . "$SHARED/app.env"; set +a
export PID_FILE="$SHARED/app.pid"
setsid nohup /usr/bin/python3 "$RELEASE_DIR/app.py" </dev/null >>"$SHARED/app.log" 2>&1 &
echo "started pid $!"
