"""docker-compose.yaml is valid and runs what the native CeleryExecutor setup runs: rendered
and validated by Debian's docker-compose (no engine needed to render), then compared with
fleet/fleetctl.py's processes and settings, which read the same config/*.env files."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import fleetctl

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = {"api-server": "api-server", "scheduler": "scheduler", "dag-processor": "dag-processor",
                    "triggerer": "triggerer"}


def compose(project: Path, *args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: ./gantry test installs Debian's docker-compose"
    return subprocess.run([tool, "-f", str(REPO / "docker-compose.yaml"), "--project-directory", str(project), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project directory like a user's checkout: the repository's folders and a .env made
    from .env.example."""
    project = tmp_path_factory.mktemp("compose")
    for folder in ("dags", "plugins", "include", "config"):
        (project / folder).symlink_to(REPO / folder)
    shutil.copy(REPO / ".env.example", project / ".env")
    return project


@pytest.fixture(scope="module")
def rendered(project) -> dict:
    result = compose(project, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def shared_settings() -> dict[str, str]:
    return {**fleetctl.read_env_file(fleetctl.AIRFLOW_ENV_FILE), **fleetctl.read_env_file(fleetctl.CELERY_ENV_FILE)}


def test_the_file_validates_and_names_what_it_needs(project):
    assert compose(project, "config", "--quiet").returncode == 0
    (project / ".env").write_text("GANTRY_FERNET_KEY=x\n")
    refused = compose(project, "config")
    assert refused.returncode != 0 and "set GANTRY_JWT_SECRET in .env" in refused.stderr
    shutil.copy(REPO / ".env.example", project / ".env")


def test_services_are_the_native_processes(rendered):
    """postgres, redis, the four Airflow components, one worker per queue the config routes to."""
    workers = {f"worker-{q}": q for q in fleetctl.celery_queues()}
    assert fleetctl.celery_queues() == ["default", "prod-zone"]
    assert set(rendered["services"]) == {"postgres", "redis", "init", *AIRFLOW_SERVICES, *workers}
    for service, args in AIRFLOW_SERVICES.items():
        assert rendered["services"][service]["command"] in (args, [args])
        assert fleetctl.AIRFLOW_COMPONENTS[f"airflow-{service}"][0] == args
    for service, queue in workers.items():
        command = rendered["services"][service]["command"]
        assert command[:2] == ["celery", "worker"] and command[command.index("--queues") + 1] == queue
        assert rendered["services"][service]["hostname"] == service


def test_every_airflow_service_runs_the_shared_settings_like_the_native_setup(rendered, monkeypatch):
    # The native setup lets these two come from the environment (./gantry test sets the
    # reconciler's schedule to 0); without them it runs exactly the shared files.
    monkeypatch.delenv("GANTRY_RECONCILE_EVERY_MINUTES", raising=False)
    monkeypatch.delenv("GANTRY_AIRFLOW_PARALLELISM", raising=False)
    shared = shared_settings()
    assert shared["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    native = fleetctl.airflow_env("celery")
    assert {k: native[k] for k in shared} == shared
    assert native["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    for name, service in rendered["services"].items():
        if name in ("postgres", "redis"):
            continue
        env = {k: str(v) for k, v in service["environment"].items()}
        assert {k: env.get(k) for k in shared} == shared, name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://"), name
    # The local LocalExecutor install runs the same settings, its executor aside.
    local = fleetctl.airflow_env("local")
    assert local["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    common = fleetctl.read_env_file(fleetctl.AIRFLOW_ENV_FILE)
    assert {k: local[k] for k in common} == common
    # ... and takes the two overrides when they are set.
    monkeypatch.setenv("GANTRY_RECONCILE_EVERY_MINUTES", "0")
    assert fleetctl.airflow_env("local")["GANTRY_RECONCILE_EVERY_MINUTES"] == "0"


def test_long_running_services_have_healthchecks_and_start_in_order(rendered):
    services = rendered["services"]
    for name, service in services.items():
        if name != "init":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in (*AIRFLOW_SERVICES, "worker-default", "worker-prod-zone"):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"},
            "init": {"condition": "service_completed_successfully"}}, name


def test_the_image_gets_the_providers_pinned_in_requirements_txt(rendered):
    locked = dict(line.strip().split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                  if "==" in line)
    image = rendered["services"]["scheduler"]["image"]
    assert image == f"apache/airflow:{locked['apache-airflow']}-python3.11"
    extra = rendered["services"]["scheduler"]["environment"]["_PIP_ADDITIONAL_REQUIREMENTS"].split()
    pins = dict(p.split("==") for p in extra)
    assert {"apache-airflow-providers-celery", "celery", "apache-airflow-providers-ssh"} <= set(pins)
    assert {name: locked[name] for name in pins} == pins
    assert json.loads(rendered["services"]["scheduler"]["environment"]["AIRFLOW_CONN_GANTRY_SSH"])["conn_type"] == "ssh"
