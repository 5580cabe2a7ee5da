"""Shared fixtures. Tests run against the real local fleet and the real Airflow install
that `./gantry test` brings up; running pytest directly brings them up too (idempotent)."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("GANTRY_STATE", "/var/lib/gantry-local"))
FLEETCTL = [sys.executable, str(REPO / "fleet" / "fleetctl.py")]


def _load_airflow_env() -> None:
    env_file = STATE / "airflow.env"
    if not env_file.exists():
        subprocess.run([*FLEETCTL, "env-file"], check=True, capture_output=True)
    for line in env_file.read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        os.environ.setdefault(key, shlex.split(value)[0] if value else "")


@pytest.fixture(scope="session")
def fleet():
    """The local fleet (sshd hosts, nginx, etcd, Alertmanager, artifacts) is up."""
    subprocess.run([*FLEETCTL, "up"], check=True)
    _load_airflow_env()
    import fleetctl

    return fleetctl


@pytest.fixture(scope="session")
def airflow(fleet):
    subprocess.run([*FLEETCTL, "airflow-up"], check=True)
    from airflow_api import AirflowAPI

    api = AirflowAPI()
    api.wait_for_dag("gantry_promote_test")
    return api


_load_airflow_env()
