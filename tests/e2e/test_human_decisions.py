"""Humans in the loop of a rollout (Airflow's HITL approvals): confirmation between batches and
pause-for-a-human at the failure threshold, answered through Airflow's REST API."""
from __future__ import annotations

import time

import pytest

from support import assert_all_in_rotation, fleet_state, host_outcomes, left_rotation_at, wait_for_approval

pytestmark = pytest.mark.e2e
ENV, DAG = "perf", "gantry_promote_perf"
BASELINE = "1.0.0"


@pytest.fixture
def perf(fleet, airflow):
    fleet.reset(BASELINE, ENV)
    return fleet_state(env=ENV)


def as_user(name):
    from airflow_api import AirflowAPI

    return AirflowAPI(username=name, password=name)


def decisions(run_id: str) -> list[dict]:
    """The run's human decisions as the ledger keeps them."""
    from gantry.hooks.ledger import LedgerHook

    return LedgerHook().decisions(DAG, run_id)


def test_confirmation_between_batches_only_from_the_configured_approver(perf, airflow):
    resp = airflow.trigger(DAG, {"app": "demo", "version": "1.1.0", "batches": "1", "confirm_batches": True,
                                 "hosts": ["perf-demo-01", "perf-demo-02"]})
    run_id = resp.json()["dag_run_id"]
    detail = wait_for_approval(airflow, DAG, run_id)
    ti = detail["task_instance"]
    assert ti["task_id"] == "host.offline_restart_online" and ti["map_index"] == 1
    assert "start batch 2 of 2" in detail["subject"]
    # The first batch is done and back; the second has not started.
    state = fleet_state(env=ENV)
    assert state["versions"]["perf-demo-01"] == "1.1.0" and state["versions"]["perf-demo-02"] == BASELINE
    denied = as_user("bob").respond(DAG, run_id, ti["task_id"], 1, "Approve")
    assert denied.status_code == 403, denied.text
    approved_at = time.time()
    answer = as_user("alice").respond(DAG, run_id, ti["task_id"], 1, "Approve")
    assert answer.status_code == 200, answer.text
    assert airflow.wait_run(DAG, run_id) == "success"
    tis = {(t["task_id"], t["map_index"]): t for t in airflow.task_instances(DAG, run_id)}
    assert left_rotation_at(host_outcomes(airflow, DAG, run_id, tis)["perf-demo-02"]) >= approved_at
    assert set(fleet_state(env=ENV)["versions"].values()) == {"1.1.0", BASELINE}
    assert fleet_state(env=ENV)["versions"]["perf-demo-02"] == "1.1.0"
    decided = decisions(run_id)
    assert [(d["kind"], d["decided_by"]) for d in decided] == [("triggered", "admin"), ("batch_go_ahead", "alice")]
    assert "start batch 2 of 2" in decided[1]["detail"], "what alice saw is kept"
    assert "batch_go_ahead by alice: demo 1.1.0 in perf: start batch 2 of 2?" in airflow.log(DAG, run_id, "report")


def test_pause_at_the_failure_threshold_and_a_rejection_stops_the_rollout(perf, airflow, fleet):
    import artifacts

    artifacts.publish_demo(fleet.STATE / "artifacts", "1.1.2-bad01", never_healthy_on=("perf-demo-01",))
    resp = airflow.trigger(DAG, {"app": "demo", "version": "1.1.2-bad01", "batches": "1", "on_threshold": "pause",
                                 "hosts": ["perf-demo-01", "perf-demo-02", "perf-demo-03"]})
    run_id = resp.json()["dag_run_id"]
    detail = wait_for_approval(airflow, DAG, run_id)
    assert "failure threshold of 1" in detail["body"]
    assert fleet_state(env=ENV)["versions"]["perf-demo-01"] == BASELINE, "the failed canary was rolled back"
    answer = as_user("alice").respond(DAG, run_id, "host.offline_restart_online", 1, "Reject")
    assert answer.status_code == 200, answer.text
    assert airflow.wait_run(DAG, run_id) == "failed"
    tis = {(t["task_id"], t["map_index"]): t for t in airflow.task_instances(DAG, run_id)}
    assert tis[("host.offline_restart_online", 1)]["state"] == "skipped", "the rejected batch did not start"
    assert tis[("host.offline_restart_online", 2)]["state"] == "failed", "the rollout stopped"
    after = fleet_state(env=ENV)
    assert set(after["versions"].values()) == {BASELINE}
    assert_all_in_rotation(after)
    assert [(d["kind"], d["decided_by"]) for d in decisions(run_id)][-1] == ("batch_stopped", "alice")
