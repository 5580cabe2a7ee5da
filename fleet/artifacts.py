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


def _add_file(tar: tarfile.TarFile, arcname: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0  # reproducible packages: same inputs, same checksum
    tar.addfile(info, io.BytesIO(data))


def build_demo_package(version: str, *, startup_delay: float = 0, never_healthy: bool = False) -> bytes:
    release = {"version": version, "startup_delay": startup_delay, "never_healthy": never_healthy}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.USTAR_FORMAT) as tar:
        _add_file(tar, "app.py", (DEMO_SRC / "app.py").read_bytes(), 0o644)
        _add_file(tar, "bin/start.sh", (DEMO_SRC / "bin/start.sh").read_bytes(), 0o755)
        _add_file(tar, "bin/stop.sh", (DEMO_SRC / "bin/stop.sh").read_bytes(), 0o755)
        _add_file(tar, "release.json", json.dumps(release).encode(), 0o644)
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
