"""The host scripts, run by a real shell against the real artifact repository, in a
scratch install root (the same scripts Gantry sends over SSH)."""
import hashlib
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
