"""The host scripts, run by a real shell against the real artifact repository, in a
scratch install root (the same scripts Gantry sends over SSH)."""
import hashlib
import os
import subprocess
import urllib.request

import pytest

from gantry import remote
from gantry.config import AppConfig, Timeouts


@pytest.fixture
def app(tmp_path):
    return AppConfig(name="demo", package="demo-{version}.tar.gz", install_root=str(tmp_path / "demo"),
                     port=9000, start_command="bin/start.sh", stop_command="bin/stop.sh",
                     pid_file=str(tmp_path / "demo/shared/app.pid"), timeouts=Timeouts(command=20))


def sha(fleet, version):
    url = f"http://127.0.0.1:{fleet.ARTIFACT_PORT}/demo/{version}/demo-{version}.tar.gz"
    return url, hashlib.sha256(urllib.request.urlopen(url).read()).hexdigest()


def sh(script):
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True)


def test_stage_verifies_and_is_idempotent(fleet, app, tmp_path):
    (tmp_path / "demo").mkdir()
    url, digest = sha(fleet, "1.1.0")
    first = sh(remote.stage_script(app, "1.1.0", url, digest))
    assert first.returncode == 0, first.stderr
    release = tmp_path / "demo/releases/1.1.0"
    assert (release / "app.py").exists() and (release / "bin/start.sh").stat().st_mode & 0o111
    assert (release / ".gantry-sha256").read_text().strip() == digest
    again = sh(remote.stage_script(app, "1.1.0", url, digest))
    assert again.returncode == 0 and "already staged" in again.stdout
    assert [p.name for p in (tmp_path / "demo/releases").iterdir()] == ["1.1.0"], "no staging dirs left"


def test_stage_refuses_a_checksum_mismatch_and_leaves_nothing(fleet, app, tmp_path):
    (tmp_path / "demo").mkdir()
    url, _ = sha(fleet, "1.1.0")
    result = sh(remote.stage_script(app, "1.1.0", url, "0" * 64))
    assert result.returncode == remote.EXIT_CHECKSUM
    assert "sha256 mismatch" in result.stderr
    assert list((tmp_path / "demo/releases").iterdir()) == []


def test_stage_reports_a_missing_package(fleet, app, tmp_path):
    (tmp_path / "demo").mkdir()
    url = f"http://127.0.0.1:{fleet.ARTIFACT_PORT}/demo/0.0.0/demo-0.0.0.tar.gz"
    assert sh(remote.stage_script(app, "0.0.0", url, "0" * 64)).returncode == remote.EXIT_NOT_FOUND


def test_probe_output_parses():
    assert remote.parse_probe("current=1.0.0\nprocess=up\nhealth=200\nserved=1.0.0\n") == {
        "current": "1.0.0", "process": "up", "health": "200", "served": "1.0.0"}


def test_cleanup_keeps_the_newest_releases_and_never_current_or_previous(app, tmp_path):
    import time

    root = tmp_path / "demo"
    for i, v in enumerate(["0.1", "0.2", "0.3", "0.4", "0.5"]):
        (root / "releases" / v).mkdir(parents=True)
        os.utime(root / "releases" / v, (time.time() - 100 + i, time.time() - 100 + i))
    (root / "releases" / ".staging-x").mkdir()
    (root / "current").symlink_to("releases/0.1")  # rolled back to the oldest
    result = sh(remote.cleanup_script(app, keep=2, protect=["0.2"]))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (root / "releases").iterdir()) == [".staging-x", "0.1", "0.2", "0.4", "0.5"]


def test_restart_switches_current_and_logs_the_release(app, tmp_path):
    root = tmp_path / "demo"
    for v in ("1.0", "2.0"):
        (root / "releases" / v / "bin").mkdir(parents=True)
        for cmd in ("start.sh", "stop.sh"):
            script = root / "releases" / v / "bin" / cmd
            script.write_text(f"#!/bin/sh\necho {cmd} {v} >> ../../shared/calls\n")
            script.chmod(0o755)
    (root / "shared").mkdir()
    (root / "current").symlink_to("releases/1.0")
    result = sh(remote.restart_script(app, "2.0"))
    assert result.returncode == 0, result.stderr
    assert os.readlink(root / "current") == "releases/2.0"
    assert (root / "shared/calls").read_text().split("\n")[:2] == ["stop.sh 1.0", "start.sh 2.0"]
    history = sh(remote.history_script(app)).stdout.splitlines()
    assert history[0] == "current=2.0" and history[1].endswith(" 2.0")
    assert sh(remote.restart_script(app, "9.9")).returncode == remote.EXIT_NOT_FOUND

