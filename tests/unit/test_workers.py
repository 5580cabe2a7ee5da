"""Which worker a task instance names (Airflow's [core] hostname_callable)."""
import socket

from gantry.workers import worker_hostname


def test_a_worker_sharing_a_machine_names_itself(monkeypatch):
    monkeypatch.setenv("GANTRY_WORKER_NAME", "worker-prod-zone")
    assert worker_hostname() == "worker-prod-zone"


def test_elsewhere_the_machine_name(monkeypatch):
    monkeypatch.delenv("GANTRY_WORKER_NAME", raising=False)
    assert worker_hostname() == socket.getfqdn()
