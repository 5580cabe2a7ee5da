"""What the report says stopped a run before any host: the first failed task before the hosts,
in run order, read from the run's task states once; refused only when a gate said no."""
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def report():
    return DagBag(str(REPO / "dags")).dags["gantry_promote_test"].get_task("report")


def failed_before_hosts(report, monkeypatch, states):
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    asked = []

    def get_task_states(dag_id, task_ids, run_ids):
        asked.append(sorted(task_ids))
        return {run_ids[0]: states}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(get_task_states))
    got = report._failed_before_hosts({"dag": report.dag, "run_id": "r1"})
    assert len(asked) == 1 and "collect_hosts" in asked[0] and "report" not in asked[0]
    assert not any(t.startswith("host.") for t in asked[0]), "only the tasks before the hosts"
    return got


def test_the_first_failed_task_in_run_order_comes_first(report, monkeypatch):
    states = {"claim_release": "success", "check_gates": "failed", "verify_artifact": "failed",
              "collect_hosts": "upstream_failed"}
    assert failed_before_hosts(report, monkeypatch, states) == ["check_gates", "verify_artifact"]
    assert "check_gates" in report.gate_task_ids and "verify_artifact" not in report.gate_task_ids


def test_nothing_failed_before_the_hosts(report, monkeypatch):
    assert failed_before_hosts(report, monkeypatch, {"claim_release": "success", "collect_hosts": "success"}) == []
