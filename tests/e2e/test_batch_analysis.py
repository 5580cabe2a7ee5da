"""End to end: the analysis after each batch, on the real fleet, Prometheus and Alertmanager.

One shared fleet, five releases of ``test`` (batches ``1, 100%``, under load through nginx; the
environment's analysis, config/gantry.yaml: 3 x 4 s per metric, switched on with the trigger's
``analysis: true``):

1. ``1.3.1``, a good build: passes and completes.
2. ``1.3.1-errors`` (5 % of requests fail, ``/health`` green), measured on its canary against the
   hosts still on the good build: FAIL, the canary is rolled back gracefully, the second batch
   never starts, the ledger keeps the numbers, only the canary ever served it.
3. ``1.3.1-slow`` (250 ms more per request): FAIL on latency, rolled back the same way.
4. ``1.3.2``, a good build, with an alert firing in Alertmanager for the app and environment:
   the canary is released, the next batch does not go (halt, nothing rolled back).
5. ``1.3.2`` again with Prometheus stopped: the configured decision (``on_unreachable: halt``),
   never a silent pass.

No host is out of rotation after any of them."""
from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from support import (LoadGenerator, assert_all_in_rotation, back_in_rotation_at, fleet_state, host_outcomes, per_host,
                     run_dag)

pytestmark = pytest.mark.e2e
DAG = "gantry_promote_test"


@dataclass
class Release:
    """One release of test, under load through nginx, and what it left behind."""
    run_id: str
    state: str
    tis: dict
    load: LoadGenerator
    versions: dict[str, str]
    analysis: dict


def release(airflow, version: str) -> Release:
    """Releases ``version`` with batches ``1, 100%`` and the analysis on; every host is back in
    rotation after it, whatever it did, and the run analysed one batch."""
    from gantry.hooks.ledger import LedgerHook

    with LoadGenerator() as load:
        run_id, state, tis = run_dag(airflow, DAG, {"app": "demo", "version": version, "batches": "1, 100%",
                                                    "analysis": True, "auto_promote": False}, timeout=150)
    after = fleet_state()
    assert_all_in_rotation(after)
    (analysis,) = LedgerHook().analyses(DAG, run_id)
    assert analysis["batch"] == 1
    return Release(run_id, state, tis, load, after["versions"], analysis)


def test_bad_builds_alerts_and_a_missing_prometheus_stop_after_the_canary(fleet, airflow):
    from gantry.hooks.ledger import LedgerHook

    started = time.monotonic()
    fleet.reset("1.0.0")
    hosts = sorted(h["name"] for h in fleet_state()["hosts"])
    assert len(hosts) >= 3
    canary, rest = hosts[0], hosts[1:]

    def rolled_back(r: Release, version: str, metric: str) -> dict:
        """The canary's analysis failed on ``metric``, it was rolled back to 1.3.1 by the graceful
        path, batch 2 never started; only the canary ever served the bad build. Returns the metric."""
        assert r.state == "failed"
        assert set(r.versions.values()) == {"1.3.1"}, r.versions
        assert (r.analysis["verdict"], r.analysis["action"]) == ("FAIL", "roll_back"), r.analysis
        evidence = r.analysis["evidence"]
        assert evidence["canary"] == [canary] and sorted(evidence["baseline"]) == rest
        outcomes = host_outcomes(airflow, DAG, r.run_id, r.tis)
        assert outcomes[canary]["outcome"] == "released", "the canary's own release was healthy (/health is green)"
        leader = outcomes[rest[0]]
        assert leader["outcome"] == "not_started" and "analysis of batch 1: FAIL" in leader["reason"]
        assert leader["analysis"]["verdict"] == "FAIL" and leader["analysis"]["action"] == "roll_back"
        (back,) = leader["overrides"]
        assert back["host"] == canary and back["outcome"] == "rolled_back" and back["serving"] == "1.3.1"
        # Out of rotation before the restart, back after it.
        assert [s["step"] for s in back["steps"]] == [
            f"{canary}: silence monitoring", f"{canary}: offline", f"{canary}: quiet period",
            f"{canary}: roll back to 1.3.1", f"{canary}: online"]
        released = per_host(r.tis, "offline_restart_online")
        assert all(released[h]["state"] in ("failed", "upstream_failed") for h in rest), \
            {h: released[h]["state"] for h in rest}
        assert all(o["outcome"] == "not_started" for h, o in outcomes.items() if h in rest[1:])
        assert r.load.hosts_serving(version) == {canary}, r.load.served
        print(f"{version}: {len(r.load.failures)} of {r.load.total} requests failed; the canary served it "
              f"{in_rotation_seconds(back, outcomes[canary]):.1f} s")
        return next(m for m in evidence["metrics"] if m["name"] == metric)

    def halted_after_the_canary(r: Release) -> dict:
        """The canary runs 1.3.2, the rest 1.3.1, the leader of batch 2 did not start; nothing
        was rolled back. Returns the leader's outcome."""
        assert r.state == "failed"
        assert r.versions[canary] == "1.3.2" and {r.versions[h] for h in rest} == {"1.3.1"}, r.versions
        assert r.analysis["action"] == "halt", r.analysis
        leader = host_outcomes(airflow, DAG, r.run_id, r.tis)[rest[0]]
        assert leader["outcome"] == "not_started" and not leader.get("overrides"), leader
        return leader

    # 1. A good build passes its analysis and completes.
    r = release(airflow, "1.3.1")
    assert r.state == "success" and set(r.versions.values()) == {"1.3.1"}, r.versions
    assert r.load.failures == [], r.load.failures[:5]
    assert (r.analysis["verdict"], r.analysis["action"]) == ("PASS", "proceed")
    assert all(m["verdict"] == "PASS" for m in r.analysis["evidence"]["metrics"]), r.analysis["evidence"]

    # 2. A build failing 5 % of its requests. (In this order no test waits for its error alert
    # to end: the next run fails on its own metric, and the one after halts on an alert anyway.)
    r = release(airflow, "1.3.1-errors")
    errors = rolled_back(r, "1.3.1-errors", "error_ratio")
    assert errors["verdict"] == "FAIL" and len(errors["measurements"]) == 3
    assert sum(m["canary"] > 0.01 for m in errors["measurements"]) >= 2, errors["measurements"]
    assert all(m["baseline"] == 0 and m["canary_requests"] >= 20 for m in errors["measurements"])
    # Only the bad build's own errors: the rollback lost no request.
    assert r.load.failures and all(f.endswith("HTTP 500") for f in r.load.failures), r.load.failures[:5]
    assert next(x for x in LedgerHook().history("demo", "test", limit=5) if x["run_id"] == r.run_id)["status"] \
        == "failed"

    # 3. A build answering 250 ms slower: the latency fails, rolled back the same way.
    r = release(airflow, "1.3.1-slow")
    latency = rolled_back(r, "1.3.1-slow", "latency_p99")
    assert latency["verdict"] == "FAIL", latency
    assert all(m["canary"] > m["baseline"] + 0.2 for m in latency["measurements"]), latency["measurements"]
    assert r.load.failures == [], r.load.failures[:5]

    # 4. A good build while an alert fires for the app in test: the next batch does not go.
    alarm = {"alertname": "GantryE2EAlarm", "app": "demo", "env": "test", "severity": "page"}
    post_alert(alarm, minutes=10)
    try:
        r = release(airflow, "1.3.2")
    finally:
        post_alert(alarm, minutes=0)  # resolved
    leader = halted_after_the_canary(r)
    assert r.analysis["verdict"] == "PASS", r.analysis
    assert "GantryE2EAlarm" in [a["alertname"] for a in r.analysis["evidence"]["alerts"]]
    assert "alerts firing: " in leader["reason"] and "GantryE2EAlarm" in leader["reason"], leader["reason"]
    assert r.load.failures == [], r.load.failures[:5]

    # 5. Prometheus stopped: test's on_unreachable (halt), never a silent pass.
    fleet.stop("prometheus")
    try:
        r = release(airflow, "1.3.2")
    finally:
        fleet.prometheus_up(fleet.inventory_hosts())
        fleet.wait_http(f"http://127.0.0.1:{fleet.PROMETHEUS_PORT}/-/ready", name="prometheus")
    halted_after_the_canary(r)
    assert r.analysis["verdict"] == "INCONCLUSIVE" and r.analysis["evidence"]["metrics"] == [], r.analysis
    assert r.analysis["evidence"]["reason"].startswith("the metrics store could not be asked"), r.analysis["evidence"]
    print(f"total {time.monotonic() - started:.1f}s")


def post_alert(labels: dict, minutes: float) -> None:
    """An alert for Alertmanager (API v2), as a user's other monitoring would send it; ``minutes``
    0 resolves it."""
    now = datetime.now(timezone.utc)
    body = [{"labels": labels, "annotations": {"summary": "raised by the batch analysis test"},
             "startsAt": (now - timedelta(seconds=5)).isoformat(),
             "endsAt": (now + timedelta(minutes=minutes) if minutes else now - timedelta(seconds=1)).isoformat()}]
    import fleetctl

    request = urllib.request.Request(f"http://127.0.0.1:{fleetctl.ALERTMANAGER_PORT}/api/v2/alerts",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).read()


def in_rotation_seconds(rollback: dict, released: dict) -> float:
    """How long the canary served the bad build: from the end of its release's online step to the
    start of the rollback's offline step (the steps' recorded times)."""
    offline = next(s for s in rollback["steps"] if s["step"] == f"{rollback['host']}: offline")
    return offline["at"] - back_in_rotation_at(released)
