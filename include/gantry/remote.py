"""Shell scripts Gantry runs on a host over SSH, built as plain strings so they can be
read in task logs and tested without a host.

Layout on a host, under the app's ``install_root``:
    releases/<version>/   one directory per release, kept for rollback
    current -> releases/<version>
    shared/               state that survives releases (pid file, logs, app.env)

Exit codes carry meaning: EXIT_CHECKSUM and EXIT_NOT_FOUND are deterministic failures
(no retry); anything else non-zero may be transient.

Every value that is not the script's own text (version, address, URL, paths, and what a host
reported, such as the version it runs now) reaches the shell ``shlex.quote``d, as a word of its
own: never inside a double-quoted string, where ``$(...)`` and backticks would still run.
Messages that mix values with shell variables are ``printf`` calls with a constant format.
The app's ``start_command`` and ``stop_command`` are the exception: they are commands, written
by whoever owns the configuration, and run as such.
"""
from __future__ import annotations

from shlex import quote

from gantry.config import AppConfig

EXIT_CHECKSUM = 42
EXIT_NOT_FOUND = 43
EXIT_UNHEALTHY = 44


def current_version() -> str:
    return "v=$(readlink current 2>/dev/null || true); echo \"${v#releases/}\""


def _in_root(app: AppConfig, body: str) -> str:
    return f"set -eu\ncd {quote(app.install_root)}\n{body}"


def probe_script(app: AppConfig, address: str, expect_version: str | None = None, served: bool = False) -> str:
    """Prints three lines: current version, process state, HTTP health (and the version served,
    when a version is expected or ``served`` asks for it)."""
    base = f"http://{address}:{int(app.port)}"
    version_check = ""
    if (expect_version or served) and app.version_path:
        version_check = (f"\nserved=$(curl -fsS -m 3 {quote(base + app.version_path)} 2>/dev/null || true)\n"
                         "echo \"served=$served\"")
    return _in_root(app, f"""echo "current=$({current_version()})"
if [ -f {quote(app.pid_file)} ] && kill -0 "$(cat {quote(app.pid_file)})" 2>/dev/null; then echo process=up; else echo process=down; fi
code=$(curl -s -o /dev/null -m 3 -w '%{{http_code}}' {quote(base + app.health_path)} || true)
echo "health=$code"{version_check}""")


def parse_probe(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def stage_script(app: AppConfig, version: str, url: str, sha256: str) -> str:
    """Download into a temporary directory, verify, unpack, then rename into place: a
    retry or a second run finds either nothing or a complete, verified release."""
    pkg = app.package_name(version)
    rel = f"releases/{version}"
    download = f'"$tmp"/{quote(pkg)}'
    # The digest is read from stdin: for a file name with a newline or a backslash, sha256sum
    # would escape the name and put a backslash before the digest.
    if app.package_kind == "tar.gz":
        unpack = f'tar -xzf {download} -C "$tmp/release"'
    else:  # jar/war are started as-is by the app's start command
        unpack = f'cp {download} "$tmp/release/"'
    return _in_root(app, f"""mkdir -p releases
if [ -f {quote(rel)}/.gantry-sha256 ] && [ "$(cat {quote(rel)}/.gantry-sha256)" = {quote(sha256)} ]; then
  echo {quote(f"release {version} already staged and verified")}; exit 0
fi
tmp=$(mktemp -d releases/.staging-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/release"
code=$(curl -sS -o {download} -w '%{{http_code}}' --retry 2 -m {int(app.timeouts.command)} {quote(url)})
if [ "$code" = 404 ]; then echo {quote(f"package not found: {url}")} >&2; exit {EXIT_NOT_FOUND}; fi
[ "$code" = 200 ] || {{ echo "download failed with HTTP $code" >&2; exit 1; }}
actual=$(sha256sum < {download} | cut -d' ' -f1)
if [ "$actual" != {quote(sha256)} ]; then
  printf 'sha256 mismatch for %s: expected %s, got %s\\n' {quote(pkg)} {quote(sha256)} "$actual" >&2; exit {EXIT_CHECKSUM}
fi
{unpack}
echo {quote(sha256)} > "$tmp/release/.gantry-sha256"
rm -rf {quote(rel)}
mv "$tmp/release" {quote(rel)}
printf 'staged %s (%s) into %s/%s\\n' {quote(pkg)} "$actual" "$(pwd)" {quote(rel)}""")


def restart_script(app: AppConfig, version: str) -> str:
    """Stop what runs now with its own stop command, switch ``current`` atomically, start."""
    rel = f"releases/{version}"
    return _in_root(app, f"""[ -d {quote(rel)} ] || {{ printf 'release %s is not staged\\n' {quote(version)} >&2; exit {EXIT_NOT_FOUND}; }}
prev=$({current_version()})
if [ -n "$prev" ] && [ -d current ]; then
  printf 'stopping %s: %s\\n' "$prev" {quote(app.stop_command)}
  (cd current && {app.stop_command})
fi
ln -sfn {quote(rel)} current.gantry-new && mv -T current.gantry-new current
mkdir -p shared && printf '%s %s\\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" {quote(version)} >> shared/gantry-releases.log
printf 'current -> %s; starting: %s\\n' {quote(rel)} {quote(app.start_command)}
cd current && {app.start_command}""")


def drain_script(app: AppConfig, address: str, timeout: float, settle_checks: int = 3) -> str:
    """Wait until no TCP connection to the app's port is established, seen ``settle_checks``
    times in a row 0.2 s apart, or until ``timeout``. Works for any app: no cooperation needed."""
    steps = max(1, int(timeout / 0.2))
    member = f"{address}:{int(app.port)}"
    return f"""set -u
quiet=0
for i in $(seq 1 {steps}); do
  n=$(ss -Htn state established src {quote(member)} | wc -l)
  if [ "$n" -eq 0 ]; then quiet=$((quiet+1)); else quiet=0; fi
  if [ "$quiet" -ge {int(settle_checks)} ]; then echo {quote(f"drained: no connections to {member}")}; exit 0; fi
  [ $((i % 10)) -eq 1 ] && echo "in flight: $n connection(s)"
  sleep 0.2
done
echo "drain timeout after {float(timeout):g}s with $n connection(s) still open" >&2
exit 0"""


def history_script(app: AppConfig) -> str:
    """Prints ``current=<version>`` then the release switches, oldest first."""
    return _in_root(app, f"""echo "current=$({current_version()})"
cat shared/gantry-releases.log 2>/dev/null || true""")


def previous_version(history: list[str], current: str | None) -> str | None:
    """The version that ran before the current one, from ``<timestamp> <version>`` lines."""
    versions = [line.split()[-1] for line in history if line.strip() and "=" not in line]
    while versions and versions[-1] == current:
        versions.pop()
    return versions[-1] if versions else None


def cleanup_script(app: AppConfig, keep: int, protect: list[str]) -> str:
    """Delete the oldest release directories beyond ``keep``; never ``current`` or ``protect``."""
    # Each protected version is a quoted case pattern of its own, which matches literally.
    # (A quoted word inside a double-quoted string would not be quoted at all.)
    kept = "|".join(['"$cur"', *(quote(p) for p in protect if p)])
    # One name per line, read as is: a name is never split into words or expanded as a glob.
    return _in_root(app, f"""cur=$({current_version()})
n=0
ls -1t releases | grep -v '^\\.' | while IFS= read -r r; do
  n=$((n+1))
  [ "$n" -le {int(keep)} ] && continue
  case "$r" in {kept}) continue ;; esac
  rm -rf "releases/$r" && echo "removed old release $r"
done""")
