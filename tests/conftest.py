"""Shared fixtures. Tests run against the real local fleet and the real Airflow install
that `./gantry test` brings up; running pytest directly brings them up too (idempotent)."""
from __future__ import annotations

import datetime as _dt
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


# Tests that reach Airflow's Connections (hooks) read them from the environment of a fleet that is
# up; pure unit tests need no fleet, so nothing is started or written here at import.
if (STATE / "airflow.env").exists():
    _load_airflow_env()


def pytest_collection_modifyitems(session, config, items):
    """End-to-end modules marked ``celery`` run together after the others, so that Airflow
    switches executor once; test_zz_* (which read what every earlier run left) run last."""
    def rank(item) -> int:
        if Path(str(item.fspath)).name.startswith("test_zz_"):
            return 2
        return 1 if item.get_closest_marker("celery") else 0

    items.sort(key=rank)  # stable: each group keeps its order


@pytest.fixture(scope="module", autouse=True)
def executor(request):
    """A module marked ``celery`` runs on Airflow's CeleryExecutor (redis, one worker per queue,
    as `GANTRY_EXECUTOR=celery ./gantry up` runs it): Airflow is restarted on it, once, keeping
    its history and the fleet. Other modules run on what `airflow-up` started (the LocalExecutor
    in `./gantry test`, which restarts an install it finds on another executor)."""
    if request.node.get_closest_marker("celery"):
        request.getfixturevalue("airflow")
        import fleetctl

        if fleetctl.running_executor() != "celery":
            fleetctl.switch_executor("celery")
        return "celery"
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """When an end-to-end test fails, name the failed tasks of the runs it started and their
    errors, so that a red CI run says why without access to the machine."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or "airflow" not in item.fixturenames:
        return
    try:
        api = item.funcargs["airflow"]
        started = _dt.datetime.fromtimestamp(call.start, _dt.timezone.utc).isoformat()
        runs = api.get("/dags/~/dagRuns", start_date_gte=started, state="failed", limit=50)["dag_runs"]
        lines = []
        for run in runs:
            for ti in api.task_instances(run["dag_id"], run["dag_run_id"]):
                if ti["state"] in ("failed", "up_for_retry"):
                    err = [l for l in api.log(run["dag_id"], run["dag_run_id"], ti["task_id"], ti["map_index"],
                                              ti["try_number"]).splitlines() if "Error" in l or "Exception" in l]
                    lines.append(f"{run['dag_id']} {run['dag_run_id']} {ti['task_id']}[{ti['map_index']}] "
                                 f"try {ti['try_number']} {ti['state']}: {err[-1] if err else '(no error logged)'}")
        report.sections.append(("failed Airflow tasks", "\n".join(lines) or "none"))
    except Exception as exc:  # diagnostics must never hide the test's own failure
        report.sections.append(("failed Airflow tasks", f"could not list them: {exc!r}"))
