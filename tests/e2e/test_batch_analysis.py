"""End to end: the analysis after each batch, on the real fleet, Prometheus and Alertmanager.

A good build passes its analysis and completes. Then a release of a build that fails 5 % of its
requests (``/health`` green) is measured on its canary against the hosts still on the good
build, under load through nginx: the analysis fails, the canary is rolled back gracefully and is
back in rotation, the second batch never starts and the ledger keeps the numbers. The
test environment's analysis (config/gantry.yaml: 3 x 4 s per metric) is switched on with the
trigger's ``analysis: true``."""
from __future__ import annotations

import time

import pytest

from support import LoadGenerator, assert_all_in_rotation, fleet_state, host_outcomes, per_host, run_dag

pytestmark = pytest.mark.e2e
DAG = "gantry_promote_test"


def run(airflow, version: str) -> tuple[str, str, dict]:
    return run_dag(airflow, DAG, {"app": "demo", "version": version, "batches": "1, 100%", "analysis": True,
                                  "auto_promote": False}, timeout=150)


def test_a_good_build_passes_and_a_failing_canary_is_rolled_back(fleet, airflow):
    from gantry.hooks.ledger import LedgerHook

    started = time.monotonic()
    fleet.reset("1.0.0")
    hosts = sorted(h["name"] for h in fleet_state()["hosts"])
    assert len(hosts) >= 3
    canary, rest = hosts[0], hosts[1:]

    # --- a good build passes its analysis and completes.
    with LoadGenerator() as load:
        run_id, state, tis = run(airflow, "1.3.1")
    assert state == "success"
    after = fleet_state()
    assert set(after["versions"].values()) == {"1.3.1"}, after["versions"]
    assert_all_in_rotation(after)
    assert load.failures == [], load.failures[:5]
    (analysis,) = LedgerHook().analyses(DAG, run_id)
    assert (analysis["batch"], analysis["verdict"], analysis["action"]) == (1, "PASS", "proceed")
    assert all(m["verdict"] == "PASS" for m in analysis["evidence"]["metrics"]), analysis["evidence"]

    # --- then a bad build: the canary's analysis fails, it is rolled back to the good build,
    # batch 2 never starts. (In this order no test waits for the bad build's error alert to end.)
    with LoadGenerator() as load:
        run_id, state, tis = run(airflow, "1.3.1-errors")
    assert state == "failed"
    after = fleet_state()
    assert set(after["versions"].values()) == {"1.3.1"}, after["versions"]
    assert_all_in_rotation(after)
    outcomes = host_outcomes(airflow, DAG, run_id, tis)
    assert outcomes[canary]["outcome"] == "released", "the canary's own release was healthy (/health is green)"
    leader = outcomes[rest[0]]
    assert leader["outcome"] == "not_started" and "analysis of batch 1: FAIL" in leader["reason"]
    assert leader["analysis"]["verdict"] == "FAIL" and leader["analysis"]["action"] == "roll_back"
    (back,) = leader["overrides"]
    assert back["host"] == canary and back["outcome"] == "rolled_back" and back["serving"] == "1.3.1"
    # Rolled back by the graceful path: out of rotation before the restart, back after it.
    assert [s["step"] for s in back["steps"]] == [
        f"{canary}: silence monitoring", f"{canary}: offline", f"{canary}: quiet period",
        f"{canary}: roll back to 1.3.1", f"{canary}: online"]
    # The second batch never started: no host of it left 1.3.1 or ran its release.
    released = per_host(tis, "offline_restart_online")
    assert all(released[h]["state"] in ("failed", "upstream_failed") for h in rest), \
        {h: released[h]["state"] for h in rest}
    assert all(o["outcome"] == "not_started" for h, o in outcomes.items() if h in rest[1:])
    # Only the bad build's own errors: the rollback lost no request.
    assert load.failures and all(f.endswith("HTTP 500") for f in load.failures), load.failures[:5]
    # The ledger holds the evidence, with its numbers.
    (analysis,) = LedgerHook().analyses(DAG, run_id)
    assert (analysis["batch"], analysis["verdict"], analysis["action"]) == (1, "FAIL", "roll_back")
    evidence = analysis["evidence"]
    assert evidence["canary"] == [canary] and sorted(evidence["baseline"]) == rest
    errors = next(m for m in evidence["metrics"] if m["name"] == "error_ratio")
    assert errors["verdict"] == "FAIL" and len(errors["measurements"]) == 3
    assert sum(m["canary"] > 0.01 for m in errors["measurements"]) >= 2, errors["measurements"]
    assert all(m["baseline"] == 0 and m["canary_requests"] >= 20 for m in errors["measurements"])
    release = next(r for r in LedgerHook().history("demo", "test", limit=5) if r["run_id"] == run_id)
    assert release["status"] == "failed"
    print(f"total {time.monotonic() - started:.1f}s; alerts in the bad build's evidence: {evidence['alerts']}")
