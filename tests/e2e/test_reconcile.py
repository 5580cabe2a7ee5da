"""End to end: the reconciler after a run that died - a ledger claim nobody will finish, a host
left out of rotation and silenced, a host on another version than the ledger says."""
from __future__ import annotations

import time

import pytest

from support import assert_all_in_rotation, fleet_state, mail_text, run_dag, wait_for_mail

pytestmark = pytest.mark.e2e
DAG = "gantry_promote_test"
RECONCILE = "gantry_reconcile"


def _wait_for(predicate, what: str, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_reconciler_closes_a_dead_run_puts_its_host_back_and_alerts_drift(fleet, airflow):
    from gantry import adapters
    from gantry.config import load_config
    from gantry.hooks.ledger import LedgerHook

    ledger = LedgerHook()
    fleet.reset("1.0.0")
    # A release that reached every host: the ledger says 1.1.0 runs in test.
    _, state, _ = run_dag(airflow, DAG, {"app": "demo", "version": "1.1.0", "auto_promote": False})
    assert state == "success"
    assert ledger.current("demo", "test")[0].version == "1.1.0"

    # The next release stops for a human after its first host; then its run is killed (marked
    # failed): its report never runs, and its ledger claim stays open.
    resp = airflow.trigger(DAG, {"app": "demo", "version": "1.2.0", "auto_promote": False, "confirm_batches": True})
    run_id = resp.json()["dag_run_id"]
    _wait_for(lambda: airflow.pending_approvals(DAG, run_id), "the go-ahead question of batch 2")
    killed = airflow.s.patch(f"{airflow.base}/api/v2/dags/{DAG}/dagRuns/{run_id}", json={"state": "failed"},
                             timeout=30)
    assert killed.status_code == 200, killed.text
    assert [r["run_id"] for r in ledger.running() if r["environment"] == "test"] == [run_id]
    # ... and, as a step that died mid-way would, it left the third host out of rotation, silenced.
    hosts = fleet_state()["hosts"]
    first, third = hosts[0], hosts[2]
    test_env = load_config().environment("test")
    adapters.registry(test_env, "demo").disable("demo", "test", third["name"], reason="a run that died")
    adapters.load_balancer(test_env, "demo").disable(fleet.pool_name("demo", "test"), third["address"], 9000)
    adapters.silencer().silence("demo", "test", third["name"], minutes=60, comment="a run that died")
    before = fleet_state()
    assert before["lb"][f"{third['address']}:9000"] is False and before["silences"]
    assert before["versions"][first["name"]] == "1.2.0", "the first host was released before the stop"

    started = time.time()
    rid, state, tis = run_dag(airflow, RECONCILE, {"environments": ["test"]}, timeout=300)
    # The first host serves 1.2.0 where the ledger says 1.1.0: a human decides, so its task fails.
    assert state == "failed"
    by_host = {ti["rendered_map_index"]: ti["state"] for (t, _), ti in tis.items() if t == "reconcile_host"}
    assert by_host == {first["name"]: "failed", third["name"]: "success"}
    after = fleet_state()
    assert_all_in_rotation(after)
    assert after["versions"] == before["versions"], "the reconciler restarts nothing"

    # The ledger: the dead run's claim is closed, what was done is recorded, drift is shown.
    dead = next(r for r in ledger.history("demo", "test", 10) if r["run_id"] == run_id)
    assert dead["status"] == "aborted" and "without reporting" in dead["message"]
    swept = next(r for r in ledger.history("demo", "test", 10) if r["kind"] == "reconcile")
    assert swept["status"] == "reconciled" and swept["run_id"].startswith(rid)
    assert f"{first['name']}: serves 1.2.0, the ledger says 1.1.0" in swept["message"]
    assert f"{third['name']}: out of rotation (load balancer, registry), alerts silenced" in swept["message"]
    where = {r["environment"]: r for r in ledger.where("demo")}["test"]
    assert where["version"] == "1.1.0"
    assert [(d["host"], d["version"]) for d in where["drift"]] == [(first["name"], "1.2.0")]
    log = airflow.log(RECONCILE, rid, "reconcile_host", map_index=tis_index(tis, third["name"]))
    assert "put back in rotation" in log
    assert "needs a human" in airflow.log(RECONCILE, rid, "reconcile_host", map_index=tis_index(tis, first["name"]))
    mail = wait_for_mail("test: demo needs a human", after=started)
    assert first["name"] in mail_text(mail)

    # A second pass finds the same drift: not recorded or mailed again, nothing to do.
    rows = len(ledger.history("demo", "test", 50))
    rid2, state2, tis2 = run_dag(airflow, RECONCILE, {"environments": ["test"]}, timeout=300)
    assert state2 == "success"
    assert not [k for k in tis2 if k[0] == "reconcile_host" and k[1] >= 0]
    assert len(ledger.history("demo", "test", 50)) == rows
    assert "unchanged since" in airflow.log(RECONCILE, rid2, "observe_hosts")


def tis_index(tis: dict, host: str) -> int:
    return next(i for (t, i), ti in tis.items() if t == "reconcile_host" and ti["rendered_map_index"] == host)
