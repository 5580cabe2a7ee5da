"""The demo app as a process of the test's own: a real package built by fleet/artifacts.py,
unpacked into a scratch directory and started on a free loopback port, with no registry and no
fleet."""
from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import artifacts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    """(status, body) of a GET; an HTTP error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@contextlib.contextmanager
def demo_app(directory: Path, version: str = "1.3.1", host: str = "web-1", env: str = "test",
             metrics_port: int | None = None, **behaviour) -> Iterator[str]:
    """Run the demo app ``version`` (built with ``behaviour``, as artifacts.build_demo_package
    takes it) until the block ends; yields its base URL once /health answers 200."""
    release = directory / f"{host}-{version}"
    with tarfile.open(fileobj=io.BytesIO(artifacts.build_demo_package(version, **behaviour))) as tar:
        tar.extractall(release, filter="data")
    port = free_port()
    env_vars = {**os.environ, "HOST_NAME": host, "GANTRY_APP": "demo", "GANTRY_ENV": env,
                "BIND_ADDR": "127.0.0.1", "PORT": str(port),
                **({"METRICS_PORT": str(metrics_port)} if metrics_port else {})}
    for key in ("ETCD_URL", "ZOOKEEPER_HOSTS", "PID_FILE"):
        env_vars.pop(key, None)
    log = open(directory / f"{host}-{version}.log", "wb")
    proc = subprocess.Popen([sys.executable, str(release / "app.py")], env=env_vars, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 15
        while True:
            try:
                if get(f"{base}/health", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"demo {version} did not become healthy: "
                                   f"{(directory / f'{host}-{version}.log').read_text()}")
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
