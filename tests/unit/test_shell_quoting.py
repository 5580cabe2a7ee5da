"""Version, host and app strings never reach a host's shell unquoted.

Two lines of defence, each tested on its own:

- the validators refuse shell metacharacters in what a user or the CMDB can send (the version
  at trigger time and at run time, host names and addresses, the app's install root);
- every script in ``gantry.remote`` quotes what it is given anyway: a validator can be loosened
  or bypassed, and what a host itself reports passes none (the version its ``current`` link
  names, which a rollback restarts and the clean-up protects).

Each script is built with hostile values, checked with ``bash -n`` and run by bash in a scratch
install root with ``curl`` and ``ss`` replaced by recorders: no injected command may run (it
would create the marker file), and the value must arrive as one literal argument.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import jsonschema
import pytest

from gantry import params, plan, remote
from gantry.config import AppConfig, ConfigError, Timeouts, parse_config

# Each runs `touch $PWNED` if the shell ever parses it as code. No slash in any of them, so a
# version stays a valid directory name and the scripts run to their end.
PAYLOADS = [
    "1.0;touch $PWNED",
    "1.0 && touch $PWNED",
    "1.0|touch $PWNED",
    "$(touch $PWNED)",
    "`touch $PWNED`",
    "1.0'; touch $PWNED; '",
    '1.0"; touch $PWNED; "',
    "1.0\ntouch $PWNED",
    "1.0 $(touch $PWNED) `touch $PWNED`",
]

FAKE_CURL = """#!/bin/bash
# Records its arguments, one file per call; writes the package for -o; prints 200 for -w.
printf '%s\\0' "$@" > "$RECORD/curl.$(date +%s%N)"
out=""; prev=""
for a in "$@"; do [ "$prev" = -o ] && out="$a"; prev="$a"; done
[ -n "$out" ] && cp "$PACKAGE" "$out"
printf 200
"""

FAKE_SS = """#!/bin/bash
# Records its arguments, one file per call; no connection is established.
printf '%s\\0' "$@" > "$RECORD/ss.$(date +%s%N)"
"""


@pytest.fixture
def sandbox(tmp_path):
    """A scratch install root, recorders for curl and ss, and the marker an injection would create."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    for name, text in (("curl", FAKE_CURL), ("ss", FAKE_SS)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    package = tmp_path / "package.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        body = b"print()\n"
        info = tarfile.TarInfo("app.py")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    package.write_bytes(buf.getvalue())
    root = tmp_path / "root $(touch $PWNED)"
    (root / "releases").mkdir(parents=True)
    (root / "shared").mkdir()
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PWNED": str(tmp_path / "PWNED"),
           "RECORD": str(record), "PACKAGE": str(package), "LC_ALL": "C"}
    return {"tmp": tmp_path, "root": root, "record": record, "env": env, "marker": tmp_path / "PWNED",
            "sha256": hashlib.sha256(package.read_bytes()).hexdigest()}


def make_app(sandbox, **overrides) -> AppConfig:
    # The install root and pid file carry a payload too: only the config's owner sets them,
    # but they are still quoted wherever they appear.
    fields = dict(name="demo", package="demo-{version}.tar.gz", install_root=str(sandbox["root"]), port=9000,
                  start_command="true", stop_command="true", pid_file=str(sandbox["root"] / "shared/app.pid"),
                  health_path="/health?x=$(touch $PWNED)", timeouts=Timeouts(command=5))
    fields.update(overrides)
    return AppConfig(**fields)


def run(sandbox, script: str) -> subprocess.CompletedProcess:
    syntax = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, timeout=10)
    assert syntax.returncode == 0, f"not a valid script:\n{script}\n{syntax.stderr}"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                            cwd=sandbox["tmp"], env=sandbox["env"])
    assert not sandbox["marker"].exists(), f"an injected command ran:\n{script}\n{result.stdout}{result.stderr}"
    return result


def recorded(sandbox, tool: str) -> list[list[str]]:
    """Each call's arguments as the tool received them, in call order."""
    calls = sorted(sandbox["record"].glob(f"{tool}.*"), key=lambda p: int(p.suffix[1:]))
    return [p.read_text().split("\0")[:-1] for p in calls]


# ---------------------------------------------------------------- the payloads are live
@pytest.mark.parametrize("payload", PAYLOADS)
def test_each_payload_runs_its_command_when_interpolated_naively(sandbox, payload):
    """Without this, a script that never reached the payload would pass for a safe one."""
    fired = []
    for template in ("echo {}", 'echo "{}"', "echo '{}'"):
        sandbox["marker"].unlink(missing_ok=True)
        subprocess.run(["bash", "-c", template.format(payload)], capture_output=True, timeout=10,
                       env=sandbox["env"])
        fired.append(sandbox["marker"].exists())
    sandbox["marker"].unlink(missing_ok=True)
    assert any(fired), f"{payload!r} is not an injection in any naive context"


# ---------------------------------------------------------------- validators
@pytest.mark.parametrize("payload", [*PAYLOADS, "1.0 ", "../1.0", "1.0/x", "-rf", "", "1" * 65])
def test_versions_with_shell_or_path_characters_are_refused(payload):
    with pytest.raises(plan.PlanError):
        plan.validate_version(payload)
    with pytest.raises(jsonschema.ValidationError):  # the trigger form refuses them before any run starts
        jsonschema.validate(payload, params.version_param().schema)


def test_plain_versions_pass():
    for version in ("1.1.0", "2024.06.01-rc1", "1.0.0+build.7", "v2_beta"):
        assert plan.validate_version(version) == version
        jsonschema.validate(version, params.version_param().schema)


@pytest.mark.parametrize("payload", [*PAYLOADS, "-oProxyCommand=x", "host name", ""])
def test_cmdb_host_names_with_shell_characters_are_refused(payload):
    with pytest.raises(plan.PlanError):
        plan.Host.from_record({"name": payload, "address": "127.0.0.1"})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([payload], params.promotion_params(_config(), _config().environments["test"])[
            "hosts"].schema)


@pytest.mark.parametrize("payload", [*PAYLOADS, "127.0.0.1 -oProxyCommand=x", "-oProxyCommand=x", "127.0.0.1\n"])
def test_cmdb_addresses_with_shell_characters_are_refused(payload):
    with pytest.raises(plan.PlanError):
        plan.Host.from_record({"name": "web-1", "address": payload})


@pytest.mark.parametrize("check", ["version", "version form", "host name"])
def test_a_trailing_newline_is_refused(check):
    if check == "version":
        with pytest.raises(plan.PlanError):
            plan.validate_version("1.1.0\n")
    elif check == "version form":
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate("1.1.0\n", params.version_param().schema)
    else:
        with pytest.raises(plan.PlanError):
            plan.Host.from_record({"name": "web-1\n", "address": "127.0.0.1"})


def _config():
    return parse_config({"apps": {"demo": {"package": "demo-{version}.tar.gz", "install_root": "/srv/demo",
                                           "port": 9000, "start_command": "bin/start.sh",
                                           "stop_command": "bin/stop.sh", "pid_file": "/srv/demo/app.pid"}},
                         "environments": {"test": {}}}, Path("."))


def test_the_trigger_form_offers_only_configured_apps():
    app = params.app_param(_config()).schema
    jsonschema.validate("demo", app)
    for payload in ("demo;touch x", "$(touch x)"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(payload, app)


@pytest.mark.parametrize("install_root", ["srv/demo", "/srv/de'mo"])
def test_an_install_root_that_is_relative_or_has_a_quote_is_refused(install_root):
    raw = {"package": "demo-{version}.tar.gz", "install_root": install_root, "port": 9000,
           "start_command": "s", "stop_command": "s", "pid_file": "/p"}
    with pytest.raises(ConfigError):
        parse_config({"apps": {"demo": raw}, "environments": {"test": {}}}, Path("."))


# ---------------------------------------------------------------- the scripts quote
@pytest.mark.parametrize("version", PAYLOADS)
def test_stage_puts_a_hostile_version_into_one_literal_directory(sandbox, version):
    app = make_app(sandbox)
    url = f"http://127.0.0.1:18081/demo/{version}/demo-{version}.tar.gz"
    result = run(sandbox, remote.stage_script(app, version, url, sandbox["sha256"]))
    assert result.returncode == 0, result.stderr
    assert (sandbox["root"] / "releases" / version / "app.py").exists()
    assert (sandbox["root"] / "releases" / version / ".gantry-sha256").read_text().strip() == sandbox["sha256"]
    [curl] = recorded(sandbox, "curl")
    assert curl[-1] == url, "the URL reaches curl as one argument, unchanged"
    assert curl[curl.index("-o") + 1].endswith(f"/demo-{version}.tar.gz")
    assert f"demo-{version}.tar.gz" in result.stdout
    again = run(sandbox, remote.stage_script(app, version, url, sandbox["sha256"]))
    assert again.returncode == 0 and f"release {version} already staged" in again.stdout


@pytest.mark.parametrize("payload", PAYLOADS)
def test_stage_reports_a_hostile_checksum_without_running_it(sandbox, payload):
    result = run(sandbox, remote.stage_script(make_app(sandbox), "1.1.0", "http://127.0.0.1:18081/x", payload))
    assert result.returncode == remote.EXIT_CHECKSUM
    assert f"expected {payload}, got {sandbox['sha256']}" in result.stderr


@pytest.mark.parametrize("version", PAYLOADS)
def test_restart_switches_to_a_hostile_version_literally(sandbox, version):
    root = sandbox["root"]
    (root / "releases" / version).mkdir()
    result = run(sandbox, remote.restart_script(make_app(sandbox), version))
    assert result.returncode == 0, result.stderr
    assert os.readlink(root / "current") == f"releases/{version}"
    assert (root / "shared/gantry-releases.log").read_text().endswith(f" {version}\n")


@pytest.mark.parametrize("version", PAYLOADS)
def test_restart_refuses_an_unstaged_hostile_version_and_names_it(sandbox, version):
    result = run(sandbox, remote.restart_script(make_app(sandbox), version))
    assert result.returncode == remote.EXIT_NOT_FOUND
    assert result.stderr == f"release {version} is not staged\n"


def test_start_and_stop_commands_run_as_written_and_are_announced_literally(sandbox):
    """They are commands (the configuration's owner writes them); the lines announcing them
    only print them, so a quote or ``$(...)`` inside one is not run by the announcement."""
    root = sandbox["root"]
    for version in ("1.0", "2.0"):
        (root / "releases" / version).mkdir()
    (root / "current").symlink_to("releases/1.0")
    stop = "echo \"stopped\" '$(touch $PWNED)'"
    start = "echo \"started\" '`touch $PWNED`'"
    result = run(sandbox, remote.restart_script(make_app(sandbox, start_command=start, stop_command=stop), "2.0"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"stopping 1.0: {stop}", "stopped $(touch $PWNED)",
        f"current -> releases/2.0; starting: {start}", "started `touch $PWNED`"]


@pytest.mark.parametrize("current", PAYLOADS)
def test_a_hostile_current_link_on_the_host_is_only_data(sandbox, current):
    """The version a host reports is not validated: it comes back as the rollback target."""
    root = sandbox["root"]
    (root / "releases" / current).mkdir()
    (root / "current").symlink_to(f"releases/{current}")
    app = make_app(sandbox)
    history = run(sandbox, remote.history_script(app))
    assert history.returncode == 0 and history.stdout.startswith(f"current={current}\n")
    probe = run(sandbox, remote.probe_script(app, "127.0.0.1", expect_version=current))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith(f"current={current}\n")
    (root / "releases/2.0").mkdir()
    restart = run(sandbox, remote.restart_script(app, "2.0"))
    assert restart.returncode == 0 and f"stopping {current}: true" in restart.stdout
    back = run(sandbox, remote.restart_script(app, current))  # the rollback to what the host reported
    assert back.returncode == 0 and os.readlink(root / "current") == f"releases/{current}"


@pytest.mark.parametrize("protected", PAYLOADS)
def test_cleanup_protects_a_hostile_release_name_literally(sandbox, protected):
    root = sandbox["root"]
    names = ["0.1", protected, "0.3", "0.4", "0.5"]
    for age, name in enumerate(reversed(names)):
        (root / "releases" / name).mkdir()
        os.utime(root / "releases" / name, (1_000_000 - age * 100, 1_000_000 - age * 100))
    (root / "current").symlink_to("releases/0.5")
    result = run(sandbox, remote.cleanup_script(make_app(sandbox), keep=1, protect=[protected]))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (root / "releases").iterdir()) == sorted(["0.5", protected])


@pytest.mark.parametrize("address", PAYLOADS)
def test_probe_and_drain_pass_a_hostile_address_as_one_argument(sandbox, address):
    """Host.from_record refuses such addresses; the scripts quote them anyway."""
    app = make_app(sandbox)
    probe = run(sandbox, remote.probe_script(app, address, expect_version="1.1.0"))
    assert probe.returncode == 0, probe.stderr
    urls = [args[-1] for args in recorded(sandbox, "curl")]
    assert urls == [f"http://{address}:9000/health?x=$(touch $PWNED)", f"http://{address}:9000/version"]
    drain = run(sandbox, remote.drain_script(app, address, timeout=2))
    assert drain.returncode == 0, drain.stderr
    assert drain.stdout.strip().endswith(f"drained: no connections to {address}:9000")
    assert recorded(sandbox, "ss")[0] == ["-Htn", "state", "established", "src", f"{address}:9000"]


@pytest.mark.parametrize("address", ["$(touch $PWNED)", "127.0.0.9'; touch $PWNED; '"])
def test_the_load_balancer_script_runs_no_command_from_a_cmdb_address(sandbox, monkeypatch, address):
    """The same check for the script the load balancer hook runs on the LB box, run by a local bash."""
    from gantry.hooks.loadbalancer import NginxUpstreamHook
    from gantry.hooks.ssh import RemoteResult

    upstreams = sandbox["tmp"] / "upstreams"
    upstreams.mkdir()
    (upstreams / "demo-test.conf").write_text("upstream demo-test {\n  server 127.0.0.2:9000;\n}\n")
    monkeypatch.setenv("AIRFLOW_CONN_GANTRY_LB_QUOTING_TEST", json.dumps({
        "conn_type": "ssh", "host": "127.0.0.10", "login": "root",
        "extra": {"upstream_dir": str(upstreams), "nginx_conf": "/dev/null", "nginx_bin": "true"}}))
    hook = NginxUpstreamHook("gantry_lb_quoting_test")

    def run_locally(script: str, timeout: float | None = None) -> RemoteResult:
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                                cwd=sandbox["tmp"], env=sandbox["env"])
        return RemoteResult(result.returncode, result.stdout, result.stderr)

    monkeypatch.setattr(hook, "run", run_locally)
    with pytest.raises(Exception, match="is not a member"):
        hook.disable("demo-test", address, 9000)
    assert not sandbox["marker"].exists(), "an injected command ran on the load balancer"
    assert (upstreams / "demo-test.conf").read_text() == "upstream demo-test {\n  server 127.0.0.2:9000;\n}\n"
