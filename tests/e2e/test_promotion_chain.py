"""The promotion chain dev -> project -> test -> staging -> beta -> prod, where project and beta
are optional (only special versions must pass them): auto-promotion along a version's route,
verified upstream, the human approvals, one release at a time, release windows and the ledger -
through the real scheduler, with the ledger's answers checked against what the hosts serve."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid

import pytest

from support import (LoadGenerator, RotationSampler, assert_all_in_rotation, fleet_state, wait_for_approval,
                     wait_for_mail)

# On the CeleryExecutor (tests/conftest.py): each environment's tasks run on the workers of its
# zone, `prod-zone` for beta and prod, `default` for the others.
pytestmark = [pytest.mark.e2e, pytest.mark.celery]
BASELINE = "1.0.0"


def promote(env):
    return f"gantry_promote_{env}"


@pytest.fixture
def chain(fleet, airflow):
    for env in ("dev", "project", "test", "staging", "beta"):
        fleet.reset(BASELINE, env)
        airflow.wait_for_dag(promote(env))
        airflow.wait_for_dag(f"gantry_rollback_{env}")
    airflow.delete_variable("gantry_windows")
    yield fleet
    airflow.delete_variable("gantry_windows")


@pytest.fixture
def ledger(fleet):
    from gantry.hooks.ledger import LedgerHook

    return LedgerHook()


def fresh_version(fleet, tag: str) -> str:
    """A version no earlier test has released, so the ledger's history cannot interfere."""
    import artifacts

    version = f"1.8.{int(time.time()) % 100000}-{tag}{uuid.uuid4().hex[:4]}"
    artifacts.publish_demo(fleet.STATE / "artifacts", version)
    return version


def trigger(airflow, env, conf):
    resp = airflow.trigger(promote(env), conf)
    assert resp.status_code == 200, resp.text
    return resp.json()["dag_run_id"]


def wait_for_run(airflow, dag_id, version, timeout=300, exclude=()):
    """The run of ``dag_id`` for ``version`` (started by someone else), once it has ended."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for r in airflow.runs(dag_id):
            if ((r["conf"] or {}).get("version") == version and r["state"] in ("success", "failed")
                    and r["dag_run_id"] not in exclude):
                return r
        time.sleep(0.5)
    raise TimeoutError(f"no finished run of {dag_id} for {version}")


def states(airflow, dag_id, run_id):
    return {(t["task_id"], t["map_index"]): t["state"] for t in airflow.task_instances(dag_id, run_id)}


def workers(airflow, dag_id, run_id) -> set[tuple[str, str]]:
    """(queue, worker) of every task of the run that ran on a worker."""
    return {(t["queue"], t["hostname"]) for t in airflow.task_instances(dag_id, run_id) if t["state"] == "success"}


def versions(env):
    return set(fleet_state(env=env)["versions"].values())


def test_auto_promotion_runs_the_chain_and_never_undoes_a_rollback(chain, airflow, ledger):
    v = fresh_version(chain, "chain")
    run_id = trigger(airflow, "dev", {"app": "demo", "version": v})
    assert airflow.wait_run(promote("dev"), run_id) == "success"
    # An ordinary version skips the optional project environment: dev promotes it to test.
    dev_tasks = states(airflow, promote("dev"), run_id)
    assert (dev_tasks[("promote_project", -1)], dev_tasks[("promote_test", -1)]) == ("skipped", "success")
    assert (f"project is not on the route of demo {v} (dev -> test -> staging -> prod)"
            in airflow.log(promote("dev"), run_id, "promote_project"))
    assert wait_for_run(airflow, promote("test"), v)["state"] == "success"
    staging_run = wait_for_run(airflow, promote("staging"), v)
    assert staging_run["state"] == "success"
    assert staging_run["conf"]["auto"] is True
    assert workers(airflow, promote("staging"), staging_run["dag_run_id"]) == {("default", "worker-default")}
    for env in ("dev", "test", "staging"):
        assert versions(env) == {v}, env
        assert_all_in_rotation(fleet_state(env=env))
    assert versions("beta") == {BASELINE}, "staging does not auto-promote to beta"
    assert not [r for r in airflow.runs(promote("beta")) if (r["conf"] or {}).get("version") == v]
    assert versions("project") == {BASELINE}
    assert not [r for r in airflow.runs(promote("project")) if (r["conf"] or {}).get("version") == v]
    route = ledger.route("demo", v)
    assert (route["special"], route["route"], route["environment"]) == (
        False, ["dev", "test", "staging", "prod"], "dev")
    # The ledger says what the hosts say.
    current = {c.environment: c.version for c in ledger.current("demo")}
    assert current["dev"] == current["test"] == current["staging"] == v
    staging_rows = ledger.history("demo", "staging", 1)
    assert staging_rows[0]["triggered_by"] == "gantry-auto-promotion" and staging_rows[0]["auto"]
    assert {h["outcome"] for h in staging_rows[0]["hosts"]} == {"released"}
    assert (staging_rows[0]["special"], staging_rows[0]["route"]) == (False, ["dev", "test", "staging", "prod"])

    # A deliberate rollback in staging is not undone by the next auto-promotion from test.
    # Staging runs on ZooKeeper (Dubbo-style) and HAProxy: its rollback and its release by hand
    # below serve traffic through HAProxy all along.
    with LoadGenerator(env="staging") as load, RotationSampler(env="staging") as rotation:
        _staging_rollback_is_not_undone_then_released_by_hand(airflow, ledger, v)
    assert load.failures == [], f"{len(load.failures)} of {load.total} requests through HAProxy failed: {load.failures[:5]}"
    assert load.ok > 100 and set(load.versions) == {BASELINE, v}
    # One host at a time (batches "1"), in the load balancer and the registry alike - and the
    # sampler saw each host go.
    assert (rotation.max_lb_down, rotation.max_registry_disabled) == (1, 1), vars(rotation)
    assert_all_in_rotation(fleet_state(env="staging"))
    assert set(fleet_state(env="staging")["registry_instances"].values()) == {v}


def _staging_rollback_is_not_undone_then_released_by_hand(airflow, ledger, v):
    rb = airflow.trigger("gantry_rollback_staging", {"app": "demo", "version": BASELINE})
    assert airflow.wait_run("gantry_rollback_staging", rb.json()["dag_run_id"]) == "success"
    assert versions("staging") == {BASELINE}
    # The next auto-promotion from test: a run started as test's promote_staging starts one (the
    # `auto` flag, seen above on staging_run), without releasing test's five hosts again.
    refused = trigger(airflow, "staging", {"app": "demo", "version": v, "auto": True})
    assert airflow.wait_run(promote("staging"), refused) == "failed"
    assert states(airflow, promote("staging"), refused)[("check_gates", -1)] == "failed"
    assert "was rolled back in staging" in airflow.log(promote("staging"), refused, "check_gates")
    assert versions("staging") == {BASELINE}
    assert ledger.current("demo", "staging")[0].version == BASELINE
    assert ledger.history("demo", "staging", 1)[0]["status"] == "refused"
    # By hand it may come back.
    run_id = trigger(airflow, "staging", {"app": "demo", "version": v, "auto_promote": False})
    assert airflow.wait_run(promote("staging"), run_id) == "success"
    assert versions("staging") == {v}


def test_a_special_version_passes_project_and_beta_and_beta_needs_staging_and_an_approval(chain, airflow, ledger):
    from airflow_api import AirflowAPI

    unknown_upstream = fresh_version(chain, "nostaging")
    run_id = trigger(airflow, "beta", {"app": "demo", "version": unknown_upstream})
    assert airflow.wait_run(promote("beta"), run_id) == "failed"
    assert states(airflow, promote("beta"), run_id)[("check_gates", -1)] == "failed"
    assert "has not passed staging" in airflow.log(promote("beta"), run_id, "check_gates")
    assert versions("beta") == {BASELINE}
    row = ledger.history("demo", "beta", 1)[0]
    assert row["status"] == "refused" and [(d["kind"], d["by"]) for d in row["decisions"]] == [("triggered", "admin")]

    # A special version (marked at its first promotion) passes project, and is refused at prod
    # until it passed beta (unit tests: tests/unit/test_routes.py).
    v = fresh_version(chain, "beta")
    rid = trigger(airflow, "project", {"app": "demo", "version": v, "special": True, "auto_promote": False})
    assert airflow.wait_run(promote("project"), rid) == "success"
    assert ledger.route("demo", v)["special"] is True
    for env in ("test", "staging"):
        rid = trigger(airflow, env, {"app": "demo", "version": v, "auto_promote": False})
        assert airflow.wait_run(promote(env), rid) == "success"
    staged_at = time.time()

    # Soak time: beta wants the version current in staging for 15 s (config/gantry.yaml).
    rid = trigger(airflow, "beta", {"app": "demo", "version": v, "auto_promote": False})
    assert airflow.wait_run(promote("beta"), rid) == "failed"
    assert "needs a soak time of 0.25 min" in airflow.log(promote("beta"), rid, "check_gates")
    assert versions("beta") == {BASELINE}
    qid = airflow.trigger("gantry_queue_prod", {"app": "demo", "version": v}).json()["dag_run_id"]
    assert airflow.wait_run("gantry_queue_prod", qid) == "failed"
    assert f"demo {v} has not passed beta" in airflow.log("gantry_queue_prod", qid, "check_gates")
    time.sleep(max(0, staged_at + 16 - time.time()))

    def ask(conf):
        asked = time.time()
        rid = trigger(airflow, "beta", conf)
        detail = wait_for_approval(airflow, promote("beta"), rid, timeout=120)
        mail = wait_for_mail(f"[gantry] beta: approval needed for demo {v}", after=asked)
        assert "release-team@example.com" in mail["To"]
        return rid, detail

    # Not answered within its deadline: the run ends, no host touched.
    rid, detail = ask({"app": "demo", "version": v, "auto_promote": False, "approval_timeout_minutes": 0.2})
    assert airflow.wait_run(promote("beta"), rid, timeout=120) == "failed"
    assert states(airflow, promote("beta"), rid)[("approve_release", -1)] == "failed"
    assert versions("beta") == {BASELINE}
    assert_all_in_rotation(fleet_state(env="beta"))
    row = ledger.history("demo", "beta", 1)[0]
    assert row["status"] == "refused" and row["message"].startswith("stopped at approve_release: ") \
        and not row["approved_by"], row
    assert [(d["kind"], d["by"]) for d in row["decisions"]][-1] == ("no_answer", None)
    too_long = airflow.trigger(promote("beta"), {"app": "demo", "version": v, "approval_timeout_minutes": 600})
    assert too_long.status_code == 400, "a run may shorten the approval deadline, never extend it"

    # Rejected: the run ends, no host touched.
    rid, detail = ask({"app": "demo", "version": v, "auto_promote": False})
    assert detail["task_instance"]["task_id"] == "approve_release"
    assert f"{v} succeeded in staging on every host" in detail["body"]
    assert f"Running there now: {BASELINE}" in detail["body"] or "Running there now:" in detail["body"]
    answer = AirflowAPI(username="alice", password="alice").respond(promote("beta"), rid, "approve_release", -1, "Reject")
    assert answer.status_code == 200, answer.text
    assert airflow.wait_run(promote("beta"), rid) == "failed"
    assert versions("beta") == {BASELINE}
    row = ledger.history("demo", "beta", 1)[0]
    assert row["status"] == "refused" and [(d["kind"], d["by"]) for d in row["decisions"]][-1] == ("rejected", "alice")

    # Approved by the configured approver only.
    rid, detail = ask({"app": "demo", "version": v, "auto_promote": False})
    denied = AirflowAPI(username="bob", password="bob").respond(promote("beta"), rid, "approve_release", -1, "Approve")
    assert denied.status_code == 403
    answer = AirflowAPI(username="alice", password="alice").respond(promote("beta"), rid, "approve_release", -1,
                                                                    "Approve")
    assert answer.status_code == 200, answer.text
    assert airflow.wait_run(promote("beta"), rid) == "success"
    assert versions("beta") == {v}
    assert workers(airflow, promote("beta"), rid) == {("prod-zone", "worker-prod-zone")}
    row = ledger.history("demo", "beta", 1)[0]
    assert row["status"] == "succeeded" and row["approved_by"] == "alice" and row["version"] == v
    approved = [d for d in row["decisions"] if d["kind"] == "approved"]
    assert [d["by"] for d in approved] == ["alice"] and f"{v} succeeded in staging" in approved[0]["detail"]
    assert row["special"] is True and row["route"] == ["dev", "project", "test", "staging", "beta", "prod"]

    # Having passed beta, the special version passes prod's upstream gate; only beta's soak time
    # (15 s) holds it now.
    qid = airflow.trigger("gantry_queue_prod", {"app": "demo", "version": v}).json()["dag_run_id"]
    assert airflow.wait_run("gantry_queue_prod", qid) == "failed"
    assert "needs a soak time of 0.25 min" in airflow.log("gantry_queue_prod", qid, "check_gates")


def test_one_release_per_app_and_environment_at_a_time(chain, airflow, ledger):
    v = fresh_version(chain, "lock")
    run_id = trigger(airflow, "dev", {"app": "demo", "version": v, "auto_promote": False})
    deadline = time.time() + 60
    while states(airflow, promote("dev"), run_id).get(("claim_release", -1)) != "success":
        assert time.time() < deadline
        time.sleep(0.5)
    rb = airflow.trigger("gantry_rollback_dev", {"app": "demo", "version": BASELINE})
    rb_id = rb.json()["dag_run_id"]
    assert airflow.wait_run("gantry_rollback_dev", rb_id) == "failed"
    assert "another release of demo in dev is in progress" in airflow.log("gantry_rollback_dev", rb_id,
                                                                          "claim_release")
    assert airflow.wait_run(promote("dev"), run_id) == "success"
    assert versions("dev") == {v}


def _window_around(now: dt.datetime, open_in_minutes: int, outside: str) -> dict:
    start = (now + dt.timedelta(minutes=open_in_minutes)).strftime("%H:%M")
    end = (now + dt.timedelta(minutes=open_in_minutes + 30)).strftime("%H:%M")
    return {"timezone": "UTC", "hours": [f"{start}-{end}"], "outside": outside}


def test_release_windows_wait_refuse_override_and_freeze(chain, airflow, ledger):
    """dev's window opens at the next minute: its run waits for it in the triggerer, without a
    worker. Meanwhile (sharing the wait) test's window is closed and refuses, an emergency reason
    overrides it, and a freeze refuses."""
    now = dt.datetime.now(dt.timezone.utc)
    if now.second > 40:  # open at the start of the next-but-one minute, at most ~80 s away
        time.sleep(61 - now.second)
        now = dt.datetime.now(dt.timezone.utc)
    dev_window = _window_around(now, 1, "wait")
    airflow.set_variable("gantry_windows", json.dumps({"dev": dev_window, "test": _window_around(now, 120, "refuse")}))
    opens = (now + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
    v = fresh_version(chain, "window")
    waiting = trigger(airflow, "dev", {"app": "demo", "version": v, "auto_promote": False})
    deadline = time.time() + 60
    while states(airflow, promote("dev"), waiting).get(("release_window", -1)) != "deferred":
        assert time.time() < deadline, "the run did not wait for its window"
        time.sleep(1)
    assert versions("dev") == {BASELINE}

    run_id = trigger(airflow, "test", {"app": "demo", "version": v, "auto_promote": False})
    assert airflow.wait_run(promote("test"), run_id) == "failed"
    assert "release window is closed" in airflow.log(promote("test"), run_id, "release_window")
    assert versions("test") == {BASELINE}
    reason = "INC-4711: security fix must ship now"
    run_id = trigger(airflow, "test", {"app": "demo", "version": v, "auto_promote": False,
                                       "emergency_reason": reason})
    assert airflow.wait_run(promote("test"), run_id) == "success"
    assert versions("test") == {v}
    row = ledger.history("demo", "test", 1)[0]
    assert row["override_reason"] == reason and row["status"] == "succeeded"
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    airflow.set_variable("gantry_windows", json.dumps(
        {"dev": dev_window, "test": {"freeze": [today], "outside": "refuse"}}))
    run_id = trigger(airflow, "test", {"app": "demo", "version": BASELINE, "auto_promote": False})
    assert airflow.wait_run(promote("test"), run_id) == "failed"
    assert f"test is frozen ({today}..{today})" in airflow.log(promote("test"), run_id, "release_window")

    assert airflow.wait_run(promote("dev"), waiting) == "success"
    tis = {t["task_id"]: t for t in airflow.task_instances(promote("dev"), waiting) if t["map_index"] == -1}
    assert dt.datetime.fromisoformat(tis["verify_artifact"]["start_date"]) >= opens
    assert versions("dev") == {v}


def test_prod_releases_the_approved_queued_version_when_its_window_opens(chain, airflow, ledger):
    """prod: approve now (gantry_queue_prod), release at the window opening (gantry_scheduled_prod,
    scheduled by the plugin's timetable), with the approval checked in the ledger, not asked again."""
    import requests

    from airflow_api import AirflowAPI
    from gantry.config import load_config
    from gantry.windows import ReleaseWindow

    chain.reset(BASELINE, "prod")
    for dag_id in ("gantry_queue_prod", "gantry_scheduled_prod", promote("prod")):
        airflow.wait_for_dag(dag_id)
    ledger.take_queued("prod", "test-setup")  # whatever earlier tests queued is not this test's
    alice = AirflowAPI(username="alice", password="alice")

    # The scheduler knows the timetable (registered by the plugin): the next run is the next opening.
    window = ReleaseWindow.from_config(load_config().environment("prod").window)
    dag = airflow.get("/dags/gantry_scheduled_prod")
    assert dag["timetable_summary"].startswith("window opens (mon,tue,wed,thu 10:00-16:00 Europe/Berlin")
    assert dt.datetime.fromisoformat(dag["next_dagrun_run_after"]) == window.next_opening(dt.datetime.now(dt.timezone.utc))
    # The release runs check the window themselves (manual runs ignore timetables); open it all day here.
    airflow.set_variable("gantry_windows", json.dumps({"prod": {"timezone": "UTC"}}))

    # An opening with nothing queued does nothing, and says so.
    rid = airflow.trigger("gantry_scheduled_prod", {}).json()["dag_run_id"]
    assert airflow.wait_run("gantry_scheduled_prod", rid) == "success"
    assert "nothing is queued for prod: this window opening releases nothing" in airflow.log(
        "gantry_scheduled_prod", rid, "take_queued")
    assert {s for (t, _), s in states(airflow, "gantry_scheduled_prod", rid).items() if t == "start_release"} == {"skipped"}
    prod_runs_before = {r["dag_run_id"] for r in airflow.runs(promote("prod"))}

    # An ordinary version, from dev along its route (dev -> test -> staging by auto-promotion;
    # project and beta skipped): staging satisfies prod's gate. It is approved now and waits in
    # the queue.
    v = fresh_version(chain, "prod")
    assert airflow.wait_run(promote("dev"), trigger(airflow, "dev", {"app": "demo", "version": v})) == "success"
    assert wait_for_run(airflow, promote("staging"), v)["state"] == "success"
    assert versions("beta") != {v} and versions("project") != {v}
    time.sleep(16)  # prod's soak time in staging
    qid = airflow.trigger("gantry_queue_prod", {"app": "demo", "version": v}).json()["dag_run_id"]
    _approve(airflow, alice, "gantry_queue_prod", qid)
    assert airflow.wait_run("gantry_queue_prod", qid) == "success"
    entry = ledger.queue("prod", 1)[0]
    assert (entry["version"], entry["status"], entry["approved_by"]) == (v, "approved", "alice")
    assert "released at the next window opening" in airflow.log("gantry_queue_prod", qid, "enqueue")
    assert versions("prod") == {BASELINE}, "queueing touches no host"

    # The window opens: the queued version is released without asking again.
    rid = airflow.trigger("gantry_scheduled_prod", {}).json()["dag_run_id"]
    assert airflow.wait_run("gantry_scheduled_prod", rid) == "success"
    release = wait_for_run(airflow, promote("prod"), v, exclude=prod_runs_before)
    assert release["conf"]["queue_id"] == entry["id"] and release["state"] == "success"
    assert not airflow.pending_approvals(promote("prod"), release["dag_run_id"])
    assert "was approved by alice when it was queued" in airflow.log(promote("prod"), release["dag_run_id"],
                                                                     "approve_release")
    assert versions("prod") == {v}
    assert_all_in_rotation(fleet_state(env="prod"))
    # prod's zone: every task of its release, each host's steps included, ran on its worker.
    assert workers(airflow, promote("prod"), release["dag_run_id"]) == {("prod-zone", "worker-prod-zone")}
    prod_steps = [t for t in airflow.task_instances(promote("prod"), release["dag_run_id"])
                  if t["task_id"] == "host.offline_restart_online"]
    assert {t["rendered_map_index"] for t in prod_steps} == {f"prod-demo-0{i}" for i in range(1, 6)}
    assert {t["hostname"] for t in prod_steps} == {"worker-prod-zone"}
    row = ledger.history("demo", "prod", 1)[0]
    assert (row["status"], row["approved_by"], row["version"]) == ("succeeded", "alice", v)
    assert row["triggered_by"] == f"gantry-release-window (queue entry {entry['id']})"
    assert ledger.queue_entry(entry["id"])["status"] == "dispatched"

    # The ledger's REST view (plugin) answers what the hosts run, to authenticated users only.
    url = "http://127.0.0.1:8080/gantry/ledger"
    assert requests.get(f"{url}/status", timeout=10).status_code == 401
    status = {r["environment"]: r["version"] for r in alice.s.get(f"{url}/status", params={"app": "demo"},
                                                                   timeout=10).json()}
    for env in ("dev", "test", "staging", "prod"):
        assert status[env] == v and versions(env) == {v}, env
    routes = {r["environment"]: (r["special"], r["route"]) for r in alice.s.get(
        f"{url}/status", params={"app": "demo"}, timeout=10).json()}
    assert routes["prod"] == (False, ["dev", "test", "staging", "prod"])
    history = alice.s.get(f"{url}/history/demo/prod", params={"limit": 1}, timeout=10).json()
    assert history[0]["approved_by"] == "alice" and history[0]["status"] == "succeeded"
    queue = alice.s.get(f"{url}/queue/prod", timeout=10).json()
    assert queue[0]["id"] == entry["id"] and queue[0]["status"] == "dispatched"
    assert alice.s.get(f"{url}/history/demo/nowhere", timeout=10).status_code == 404
    # ... and so does the command line.
    cli = [sys.executable, "-m", "gantry.ledger_cli"]
    rows = json.loads(subprocess.run([*cli, "status", "demo", "--json"], check=True, capture_output=True,
                                     text=True).stdout)
    assert {r["environment"]: r["version"] for r in rows} == status
    queued = json.loads(subprocess.run([*cli, "queue", "prod", "--json"], check=True, capture_output=True,
                                       text=True).stdout)
    assert (queued[0]["id"], queued[0]["status"], queued[0]["approved_by"]) == (entry["id"], "dispatched", "alice")


def _approve(airflow, approver, dag_id, run_id):
    wait_for_approval(airflow, dag_id, run_id, timeout=120)
    answer = approver.respond(dag_id, run_id, "approve_release", -1, "Approve")
    assert answer.status_code == 200, answer.text
