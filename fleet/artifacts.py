"""Builds and publishes versioned demo-app packages into the local artifact repository.

Layout served by the artifact nginx: <root>/<app>/<version>/<package> and <package>.sha256
(``<hex>  <package>``, the format ``sha256sum`` writes).
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

DEMO_SRC = Path(__file__).resolve().parent / "demo_app"


def _vendored() -> list[tuple[str, bytes]]:
    """The ZooKeeper client the demo app ships in vendor/ (a registry client is part of the
    package, as in a Dubbo provider's jar): kazoo from the build environment, without its tests."""
    import kazoo

    root = Path(kazoo.__file__).parent
    return [(f"vendor/kazoo/{f.relative_to(root)}", f.read_bytes()) for f in sorted(root.rglob("*.py"))
            if "tests" not in f.relative_to(root).parts]


def _add_file(tar: tarfile.TarFile, arcname: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0  # reproducible packages: same inputs, same checksum
    tar.addfile(info, io.BytesIO(data))


# Which schema migrations each demo version ships (each package carries its whole chain).
MIGRATIONS = {"1.0.0": ("0001",), "1.1.0": ("0001", "0002"), "1.2.0": ("0001", "0002", "0003")}
# The release-analysis builds (fleetctl.DEMO_BUILDS) come after 1.2.0: they carry its whole chain.
MIGRATIONS.update({v: MIGRATIONS["1.2.0"] for v in ("1.3.1", "1.3.1-errors", "1.3.1-slow", "1.3.2")})
DEFAULT_MIGRATIONS = MIGRATIONS["1.1.0"]


def build_demo_package(version: str, *, startup_delay: float = 0, never_healthy: bool = False,
                       never_healthy_on: tuple[str, ...] = (), migrations: tuple[str, ...] | None = None,
                       migrations_reversible: bool = True, crash_after_ready_on: tuple[str, ...] = (),
                       crash_after_seconds: float = 1, error_ratio: float = 0,
                       extra_latency_ms: float = 0) -> bytes:
    """A demo package; the keyword arguments are the behaviour its release.json bakes in.

    :param error_ratio: the share of the app's requests (0-1) it fails with 500, /health staying 200.
    :param extra_latency_ms: milliseconds added to each of the app's requests.
    """
    if not 0 <= error_ratio <= 1:
        raise ValueError(f"error_ratio {error_ratio!r} is a share of requests, between 0 and 1")
    release = {"version": version, "startup_delay": startup_delay, "never_healthy": never_healthy,
               "never_healthy_on": list(never_healthy_on), "migrations_reversible": migrations_reversible,
               "crash_after_ready_on": list(crash_after_ready_on), "crash_after_seconds": crash_after_seconds}
    # Only when set: the packages of earlier versions stay byte for byte what they were.
    if error_ratio:
        release["error_ratio"] = error_ratio
    if extra_latency_ms:
        release["extra_latency_ms"] = extra_latency_ms
    revisions = migrations if migrations is not None else MIGRATIONS.get(version, DEFAULT_MIGRATIONS)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.USTAR_FORMAT) as tar:
        _add_file(tar, "app.py", (DEMO_SRC / "app.py").read_bytes(), 0o644)
        _add_file(tar, "bin/start.sh", (DEMO_SRC / "bin/start.sh").read_bytes(), 0o755)
        _add_file(tar, "bin/stop.sh", (DEMO_SRC / "bin/stop.sh").read_bytes(), 0o755)
        _add_file(tar, "release.json", json.dumps(release).encode(), 0o644)
        for arcname, data in _vendored():
            _add_file(tar, arcname, data, 0o644)
        _add_file(tar, "migrations/env.py", (DEMO_SRC / "migrations/env.py").read_bytes(), 0o644)
        for rev in revisions:
            (script,) = (DEMO_SRC / "migrations/versions").glob(f"{rev}_*.py")
            _add_file(tar, f"migrations/versions/{script.name}", script.read_bytes(), 0o644)
    return buf.getvalue()


def publish(root: Path, app: str, version: str, package: bytes, filename: str) -> Path:
    target = root / app / version
    target.mkdir(parents=True, exist_ok=True)
    (target / filename).write_bytes(package)
    digest = hashlib.sha256(package).hexdigest()
    (target / f"{filename}.sha256").write_text(f"{digest}  {filename}\n")
    return target / filename


def publish_demo(root: Path, version: str, **behaviour) -> Path:
    filename = f"demo-{version}.tar.gz"
    return publish(root, "demo", version, build_demo_package(version, **behaviour), filename)
