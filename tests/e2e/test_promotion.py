"""End to end: promotions of the demo app in `test`, run by the real Airflow scheduler,
API server, DAG processor and triggerer, on the real local fleet."""
from __future__ import annotations

import subprocess

import pytest

import time

from support import (
    LoadGenerator, RotationSampler, assert_all_in_rotation, fleet_state, host_outcomes, mail_text, per_host, run_dag,
    wait_for_mail)

pytestmark = pytest.mark.e2e
DAG = "gantry_promote_test"
BASELINE = "1.0.0"


@pytest.fixture
def baseline(fleet, airflow):
    """Every test starts with 1.0.0 on every host, all in rotation, nothing silenced."""
    fleet.reset(BASELINE)
    state = fleet_state()
    assert set(state["versions"].values()) == {BASELINE}
    assert_all_in_rotation(state)
    return state


def run(airflow, conf: dict, timeout: float = 600) -> tuple[str, str, dict]:
    # These tests are about one environment: no auto-promotion to staging on success.
    return run_dag(airflow, DAG, {"auto_promote": False, **conf}, timeout)


def host_states(tis: dict, task: str) -> dict[str, str]:
    return {host: ti["state"] for host, ti in per_host(tis, task).items()}


def outcomes(airflow, run_id: str, tis: dict) -> dict[str, dict]:
    return host_outcomes(airflow, DAG, run_id, tis)


def test_promotion_under_load_loses_no_request_and_batches_bound_hosts_out_of_rotation(baseline, airflow):
    """The main promotion, on the LocalExecutor (test_scale_out.py runs it on Celery, one host
    at a time): batches of two under load through nginx."""
    with LoadGenerator() as load, RotationSampler() as sampler:
        run_id, state, tis = run(airflow, {"app": "demo", "version": "1.1.0", "batches": "2"})
    assert state == "success"
    after = fleet_state()
    assert set(after["versions"].values()) == {"1.1.0"}, after["versions"]
    assert set(after["registry_instances"].values()) == {"1.1.0"}
    assert set(after["registry_instances"]) == {h["name"] for h in after["hosts"]}
    assert_all_in_rotation(after)
    # Every host really went through the lifecycle, labelled with its name, in its batch.
    names = {h["name"] for h in after["hosts"]}
    assert host_states(tis, "offline_restart_online") == {n: "success" for n in names}
    records = outcomes(airflow, run_id, tis).values()
    assert {o["outcome"] for o in records} == {"released"}
    assert sorted(o["batch"] for o in records) == [0, 0, 1, 1, 2]
    # Graceful: not one failed request, with traffic during every drain and restart.
    assert load.total >= 1500, f"only {load.total} requests were sent"
    assert load.failures == [], f"{len(load.failures)} of {load.total} failed: {load.failures[:5]}"
    assert set(load.versions) == {"1.0.0", "1.1.0"}
    # Batches of 2: two hosts out of rotation together, never more.
    assert sampler.samples > 100
    assert sampler.max_lb_down == 2, "batches of 2 should take two hosts out together, never more"
    assert sampler.max_registry_disabled <= 2


def test_unknown_version_fails_before_any_host_is_touched(baseline, airflow):
    started = time.time()
    run_id, state, tis = run(airflow, {"app": "demo", "version": "9.9.9"})
    assert state == "failed"
    assert tis[("verify_artifact", -1)]["state"] == "failed"
    assert tis[("verify_artifact", -1)]["try_number"] == 1, "a missing version is not retried"
    assert not [t for (t, _), ti in tis.items() if t.startswith("host.") and ti["state"] == "success"]
    after = fleet_state()
    assert set(after["versions"].values()) == {BASELINE}
    assert_all_in_rotation(after)
    # The failure was alerted by mail (Airflow notifier -> the fleet's SMTP receiver).
    mail = wait_for_mail("[gantry] test: demo 9.9.9 FAILED", after=started)
    assert mail["To"] == "release-team@example.com"
    assert run_id in mail_text(mail)


def test_tampered_artifact_stops_before_any_host(baseline, airflow, fleet):
    from fleetctl import STATE
    import artifacts

    path = artifacts.publish_demo(STATE / "artifacts", "1.3.0")
    path.write_bytes(path.read_bytes() + b"tampered")  # the published checksum no longer matches
    run_id, state, tis = run(airflow, {"app": "demo", "version": "1.3.0"})
    assert state == "failed"
    # The demo app ships schema migrations, so the worker downloads the package before any host
    # and catches the mismatch there (each host verifies its own download too: see
    # tests/integration/test_host_scripts.py).
    assert tis[("migrate_database", -1)]["state"] == "failed"
    assert tis[("migrate_database", -1)]["try_number"] == 1, "a checksum mismatch is not retried"
    assert "sha256 mismatch" in airflow.log(DAG, run_id, "migrate_database")
    assert not [t for (t, _), ti in tis.items() if t.startswith("host.") and ti["state"] == "success"]
    after = fleet_state()
    assert set(after["versions"].values()) == {BASELINE}
    assert_all_in_rotation(after)
    result = subprocess.run(fleet.ssh_cmd(after["hosts"][0]) + ["ls /srv/gantry/demo/releases"],
                            capture_output=True, text=True, check=True)
    assert "1.3.0" not in result.stdout.split(), "an unverified package must not be left as a release"


def test_unhealthy_host_is_skipped_and_the_ledger_says_partial_not_verified(baseline, airflow, fleet):
    from gantry.hooks.ledger import LedgerHook

    ledger = LedgerHook()
    sick = baseline["hosts"][2]
    subprocess.run(fleet.ssh_cmd(sick) + ["cd /srv/gantry/demo/current && bin/stop.sh"], check=True,
                   capture_output=True)
    # Auto-promotion on: a release that did not reach every host must not start the next one.
    run_id, state, tis = run(airflow, {"app": "demo", "version": "1.1.0", "auto_promote": True})
    assert state == "success"
    report = outcomes(airflow, run_id, tis)
    assert report[sick["name"]]["outcome"] == "skipped_unhealthy"
    assert host_states(tis, "precheck_and_stage")[sick["name"]] == "skipped"
    after = fleet_state()
    assert after["versions"][sick["name"]] is None, "the unhealthy host was left as it was"
    assert {v for h, v in after["versions"].items() if h != sick["name"]} == {"1.1.0"}
    assert_all_in_rotation(after)
    # The ledger tells the truth: partial, naming the host; not verified; not promoted.
    row = ledger.history("demo", "test", 1)[0]
    assert (row["run_id"], row["status"], row["version"]) == (run_id, "partial", "1.1.0")
    assert f"not on 1.1.0: {sick['name']}" in row["message"]
    assert "1.1.0" not in [c.version for c in ledger.current("demo", "test") if c.run_id == run_id]
    assert tis[("promote_staging", -1)]["state"] == "skipped"
    assert "the release here is partial" in airflow.log(DAG, run_id, "promote_staging")
    where = {r["environment"]: r for r in ledger.where("demo")}["test"]
    assert where["last_attempt"]["status"] == "partial"
    assert sick["name"] in {h["host"] for h in where["drift"] if h["healthy"] is False}

    # Every host unhealthy: nothing was released, and that is a failure, not a success.
    for host in baseline["hosts"]:
        subprocess.run(fleet.ssh_cmd(host) + ["cd /srv/gantry/demo/current && bin/stop.sh || true"], check=True,
                       capture_output=True)
    run_id, state, tis = run(airflow, {"app": "demo", "version": "1.2.0", "auto_promote": True})
    assert state == "failed"
    assert set(host_states(tis, "precheck_and_stage").values()) == {"skipped"}
    row = ledger.history("demo", "test", 1)[0]
    assert (row["run_id"], row["status"]) == (run_id, "failed")
    assert tis[("promote_staging", -1)]["state"] == "upstream_failed"


def test_dry_run_prints_the_plan_and_touches_nothing(baseline, airflow):
    started = time.time()
    run_id, state, tis = run(airflow, {"app": "demo", "version": "1.1.0", "dry_run": True})
    assert state == "success"
    wait_for_mail("[gantry] test: demo 1.1.0 succeeded", after=started)
    assert not [t for t, _ in tis if t.startswith("host.")] or all(
        ti["state"] in ("skipped", None) for (t, _), ti in tis.items() if t.startswith("host."))
    log = airflow.log(DAG, run_id, "collect_hosts")
    for host in baseline["hosts"]:
        assert f"{host['name']} (batch" in log
    assert "mark 127.0.0.13:9000 down in upstream demo-test" in log
    assert "dry run: nothing was touched" in log
    after = fleet_state()
    assert set(after["versions"].values()) == {BASELINE}
    assert_all_in_rotation(after)


@pytest.mark.parametrize("conf, task, reason", [
    ({"hosts": ["nosuchhost"]}, "claim_release", "nosuchhost"),
    ({"version": "9.9.404"}, "verify_artifact", "9.9.404"),
])
def test_a_dry_run_that_would_be_refused_fails_with_the_refusal(baseline, airflow, conf, task, reason):
    run_id, state, tis = run(airflow, {"app": "demo", "version": "1.1.0", "dry_run": True, **conf})
    assert state == "failed", "a dry run exists to find exactly this refusal"
    assert tis[(task, -1)]["state"] == "failed" and tis[("report", -1)]["state"] == "failed"
    log = airflow.log(DAG, run_id, "report")
    assert f"dry run: would be refused at {task}: " in log and reason in log, log[-2000:]
    assert set(fleet_state()["versions"].values()) == {BASELINE}


@pytest.mark.parametrize("conf, message", [
    ({"app": "demo", "version": "1.1.0; rm -rf /"}, "Version (version): '1.1.0; rm -rf /' is not accepted. Allowed: 1 to 64"),
    ({"app": "demo", "version": "$(reboot)"}, "Version (version): '$(reboot)' is not accepted"),
    ({"app": "nope", "version": "1.1.0"}, "App (app): 'nope' is not accepted. Allowed: one of demo"),
    ({"app": "demo", "version": "1.1.0", "hosts": ["a b"]}, "Hosts (hosts): 'a b' is not a host name"),
    ({"app": "demo", "version": "1.1.0", "batches": "1; reboot"}, "Batch plan (batches): '1; reboot' is not accepted"),
    ({"app": "demo", "version": "1.1.0\n"}, "Version (version): '1.1.0\\n' is not accepted"),
    ({"app": "demo", "version": "1..2"}, "with no '..'"),
    ({"app": "demo", "version": "1.1.0", "hosts": ["test-demo-01", "test-demo-01"]}, "names a host more than once"),
    ({"app": "demo", "version": "1.1.0", "batches": "0"}, "Batch plan (batches): '0' is not accepted. Allowed: a batch size"),
    ({"app": "demo", "version": "1.1.0", "batches": "150%"}, "percentages above 0% and up to 100%"),
    ({"app": "demo", "version": "1.1.0", "batches": "0%"}, "Batch plan (batches): '0%' is not accepted"),
    ({"app": "demo", "version": "1.1.0", "batches": "1, , 100%"}, "Batch plan (batches): '1, , 100%'"),
    ({"app": "demo", "version": "1.1.0", "failure_threshold": "0"}, "Failure threshold (failure_threshold): '0'"),
    ({"app": "demo", "version": "1.1.0", "failure_threshold": "101%"}, "a percentage above 0% and up to 100%"),
    ({"app": "demo", "version": "1.1.0", "bake_seconds": -1}, "(bake_seconds): -1 is not accepted. Allowed: a whole"),
    ({"app": "demo", "version": "1.1.0", "on_threshold": "stop"}, "'stop' is not accepted. Allowed: one of halt, pause"),
    ({"app": "demo", "version": "1.1.0", "emergency_reason": "hotfix"}, "(emergency_reason): 'hotfix' is not accepted"),
    ({"app": "demo", "version": "1.1.0", "emergency_reason": " " * 12}, "a reason of 10 to 500 characters"),
])
def test_invalid_params_are_refused_at_trigger(airflow, conf, message):
    resp = airflow.trigger(DAG, conf)
    assert resp.status_code == 400, resp.text
    detail = resp.json()["detail"]
    assert message in detail and "\n" not in detail and "(?:" not in detail, detail


def test_unknown_host_subset_fails_before_any_host_is_touched(baseline, airflow):
    run_id, state, tis = run(airflow, {"app": "demo", "version": "1.1.0", "hosts": ["test-demo-01", "ghost-9"]})
    assert state == "failed"
    # Refused before the environment was claimed: the ledger has no attempt for this run.
    assert tis[("claim_release", -1)]["state"] == "failed"
    assert "refused before claiming test" in airflow.log(DAG, run_id, "claim_release")
    assert "ghost-9" in airflow.log(DAG, run_id, "claim_release")
    from gantry.hooks.ledger import LedgerHook

    assert run_id not in {r["run_id"] for r in LedgerHook().history("demo", "test", 20)}
    assert set(fleet_state()["versions"].values()) == {BASELINE}


def test_host_subset_releases_only_those_hosts(baseline, airflow):
    run_id, state, tis = run(airflow, {"app": "demo", "version": "1.1.0", "hosts": ["test-demo-02"]})
    assert state == "success"
    versions = fleet_state()["versions"]
    assert versions.pop("test-demo-02") == "1.1.0"
    assert set(versions.values()) == {BASELINE}
    from gantry.hooks.ledger import LedgerHook

    row = LedgerHook().history("demo", "test", 1)[0]
    assert (row["run_id"], row["status"], row["scope"]) == (run_id, "partial", "partial")
    assert "test-demo-01" in row["message"] and "test-demo-02" not in row["message"].split("not on")[1]
