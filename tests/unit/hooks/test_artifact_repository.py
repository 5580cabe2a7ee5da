"""What each artifact gets: a missing package or checksum, a .sha256 that is not a hash and a
package that does not match its checksum are refused before any host is touched. The repository
is a real HTTP server on 127.0.0.1 serving a directory, as the fleet's nginx does."""
import hashlib

import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException
from local_http import files

from gantry.hooks.artifacts import ArtifactNotFound, ArtifactRepositoryHook

PACKAGE = b"\x1f\x8b not really a tarball, but bytes with a digest"
DIGEST = hashlib.sha256(PACKAGE).hexdigest()
NAME = "demo-1.2.0.tar.gz"


@pytest.fixture
def repository(tmp_path, serve):
    """<root>/demo/1.2.0/demo-1.2.0.tar.gz and its .sha256 as sha256sum writes it."""
    release = tmp_path / "demo" / "1.2.0"
    release.mkdir(parents=True)
    (release / NAME).write_bytes(PACKAGE)
    (release / f"{NAME}.sha256").write_text(f"{DIGEST}  {NAME}\n")
    serve(files(tmp_path), "gantry_artifacts")
    return release


def test_a_published_package_and_its_checksum_are_found_and_match(repository):
    repo = ArtifactRepositoryHook()
    assert repo.checksum("demo", "1.2.0", NAME) == DIGEST
    repo.verify_package("demo", "1.2.0", NAME, DIGEST)
    assert repo.download("demo", "1.2.0", NAME, DIGEST) == PACKAGE


def test_a_checksum_in_capitals_or_without_a_file_name_is_read(repository):
    (repository / f"{NAME}.sha256").write_text(DIGEST.upper() + "\n")
    assert ArtifactRepositoryHook().checksum("demo", "1.2.0", NAME) == DIGEST


def test_a_missing_package_is_refused(repository):
    with pytest.raises(ArtifactNotFound, match="demo 9.9.9: demo-9.9.9.tar.gz is not in the artifact repository"):
        ArtifactRepositoryHook().checksum("demo", "9.9.9", "demo-9.9.9.tar.gz")


def test_a_missing_checksum_is_refused(repository):
    (repository / f"{NAME}.sha256").unlink()
    with pytest.raises(ArtifactNotFound, match="demo-1.2.0.tar.gz.sha256 is missing; refusing an unverifiable"):
        ArtifactRepositoryHook().checksum("demo", "1.2.0", NAME)


@pytest.mark.parametrize("content", ["", "not-a-hash\n", DIGEST[:63], DIGEST + "0", "<html>404</html>",
                                     f"sha256:{DIGEST}", f"{DIGEST}  {NAME}\n{DIGEST}  other.tar.gz\n"])
def test_a_checksum_file_that_is_not_a_hash_is_refused(repository, content):
    (repository / f"{NAME}.sha256").write_text(content)
    with pytest.raises(ArtifactNotFound, match=r"demo-1.2.0.tar.gz.sha256 is not a sha256 checksum \(64 hex digits"):
        ArtifactRepositoryHook().checksum("demo", "1.2.0", NAME)


def test_a_tampered_package_is_refused_on_the_worker(repository):
    (repository / NAME).write_bytes(PACKAGE + b"tampered")
    repo = ArtifactRepositoryHook()
    digest = repo.checksum("demo", "1.2.0", NAME)  # the published checksum still reads fine
    with pytest.raises(ArtifactNotFound, match=f"sha256 mismatch for {NAME}: expected {DIGEST}"):
        repo.verify_package("demo", "1.2.0", NAME, digest)
    with pytest.raises(ArtifactNotFound, match=f"sha256 mismatch for {NAME}"):
        repo.download("demo", "1.2.0", NAME, digest)  # what migrate_database does for an app with migrations


# ---------------------------------------------------------------- verify_artifact, before any host
@pytest.fixture
def app_without_migrations(tmp_path, monkeypatch):
    config = tmp_path / "gantry.yaml"
    config.write_text(yaml.safe_dump({
        "apps": {"demo": {"package": "demo-{version}.tar.gz", "install_root": "/srv/demo", "port": 9000,
                          "start_command": "bin/start.sh", "stop_command": "bin/stop.sh",
                          "pid_file": "/srv/demo/app.pid"}},
        "environments": {"test": {}}}))
    monkeypatch.setenv("GANTRY_CONFIG", str(config))


def verify(version):
    from gantry.operators.artifact import VerifyArtifactOperator

    return VerifyArtifactOperator(task_id="verify_artifact", app="demo", version=version).execute({})


def test_verify_artifact_returns_the_package_to_stage(repository, app_without_migrations):
    artifact = verify("1.2.0")
    assert (artifact["filename"], artifact["sha256"]) == (NAME, DIGEST)
    assert artifact["url"].startswith("http://127.0.0.1:") and artifact["url"].endswith(f"/demo/1.2.0/{NAME}")


@pytest.mark.parametrize("change, message", [
    (lambda release: (release / NAME).write_bytes(PACKAGE + b"tampered"), "sha256 mismatch"),
    (lambda release: (release / f"{NAME}.sha256").write_text("not-a-hash"), "is not a sha256 checksum"),
    (lambda release: (release / NAME).unlink(), "is not in the artifact repository"),
])
def test_verify_artifact_fails_at_once_before_any_host(repository, app_without_migrations, change, message):
    """AirflowFailException: the task fails without retries, and every host is as it was."""
    change(repository)
    with pytest.raises(AirflowFailException, match=f"{message}.*No host was touched"):
        verify("1.2.0")


def test_verify_artifact_refuses_a_bad_version_before_asking_the_repository(app_without_migrations):
    with pytest.raises(AirflowFailException, match="invalid version '1.2.0\\\\n'"):
        verify("1.2.0\n")
