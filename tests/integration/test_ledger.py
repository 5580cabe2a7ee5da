"""The release ledger's queue and claims, against the real PostgreSQL ledger database."""
import threading
import uuid

import pytest

from gantry.hooks.ledger import LedgerHook, ReleaseInProgress


@pytest.fixture
def ledger(fleet):
    hook = LedgerHook()
    yield hook
    # The environments of these tests exist only here: leave the ledger as it was.
    import sqlalchemy as sa

    with hook.engine().begin() as conn:
        for table in ("gantry_queue", "gantry_release", "gantry_host"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE environment LIKE 'itest-%'"))
        conn.execute(sa.text("DELETE FROM gantry_version WHERE app LIKE 'itest-%'"))


def test_a_window_opening_takes_the_newest_approved_version_of_each_app_once(ledger):
    env = f"itest-{uuid.uuid4().hex[:8]}"  # an environment of this test only
    ids = {}
    for app, version in (("web", "1.0"), ("web", "1.1"), ("api", "2.0"), ("web", "1.2")):
        ids[app, version] = ledger.enqueue(app=app, environment=env, version=version, queued_by="ci",
                                           approved_by="alice", dag_id="gantry_queue_x", run_id=f"r-{app}-{version}")
    # Queueing is idempotent per run: a retried enqueue task does not queue twice.
    assert ledger.enqueue(app="web", environment=env, version="1.2", queued_by="ci", approved_by="alice",
                          dag_id="gantry_queue_x", run_id="r-web-1.2") == ids["web", "1.2"]

    taken = {e["app"]: e["version"] for e in ledger.take_queued(env, "opening-1")}
    assert taken == {"web": "1.2", "api": "2.0"}
    status = {(e["app"], e["version"]): e["status"] for e in ledger.queue(env)}
    assert status == {("web", "1.2"): "dispatched", ("api", "2.0"): "dispatched",
                      ("web", "1.1"): "superseded", ("web", "1.0"): "superseded"}
    assert ledger.queue_entry(ids["web", "1.2"])["release_run_id"] == "opening-1"
    assert ledger.take_queued(env, "opening-2") == [], "a second opening finds nothing left"


def test_two_openings_at_once_never_take_the_same_entry(ledger):
    env = f"itest-{uuid.uuid4().hex[:8]}"
    ledger.enqueue(app="web", environment=env, version="3.0", queued_by="ci", approved_by="alice",
                   dag_id="gantry_queue_x", run_id=f"r-{env}")
    results = []
    threads = [threading.Thread(target=lambda n=n: results.append(LedgerHook().take_queued(env, f"opening-{n}")))
               for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]


def test_one_running_release_per_app_and_environment(ledger):
    env = f"itest-{uuid.uuid4().hex[:8]}"
    common = dict(app="web", environment=env, kind="promote", version="1.0", triggered_by="ci", scope="full",
                  auto=False, override_reason=None, previous_version=None)
    first = ledger.claim(dag_id="d", run_id="r1", **common)
    assert ledger.claim(dag_id="d", run_id="r1", **common) == first, "a retried claim is the same claim"
    with pytest.raises(ReleaseInProgress, match=f"another release of web in {env} is in progress"):
        ledger.claim(dag_id="d", run_id="r2", **common)
    ledger.finish("d", "r1", "succeeded", "ok", [])
    ledger.claim(dag_id="d", run_id="r2", **common)
    assert [c.version for c in ledger.current("web", env)] == ["1.0"]


def test_what_runs_where_per_cell_current_last_attempt_route_and_drift(ledger):
    """``where`` (the CLI's and the REST view's status): each cell the ledger or an observation
    names, with its current release, the last attempt when that is another, the route and the
    drifting hosts - read by index per cell."""
    import datetime as dt

    app, envs = f"itest-{uuid.uuid4().hex[:8]}", ("itest-a", "itest-b", "itest-c", "itest-d")
    common = dict(app=app, triggered_by="ci", scope="full", auto=False, override_reason=None, previous_version=None)

    def release(env, kind, version, status, run_id):
        ledger.claim(environment=env, kind=kind, version=version, dag_id="d", run_id=run_id, **common)
        if status != "running":
            ledger.finish("d", run_id, status, f"{status} {version}", [])

    release("itest-a", "promote", "1.0", "succeeded", f"{app}-1")
    release("itest-a", "promote", "1.1", "failed", f"{app}-2")       # the last attempt, not current
    release("itest-b", "promote", "2.0", "succeeded", f"{app}-3")
    release("itest-b", "reconcile", None, "reconciled", f"{app}-4")  # the reconciler's: not an attempt
    release("itest-c", "promote", "3.0", "running", f"{app}-5")      # still running, nothing observed
    ledger.record_route(app=app, version="2.0", special=False, route=["itest-a", "itest-b"], marked_by="ci",
                        environment="itest-a", run_id=f"{app}-3")
    ledger.observe(app, "itest-b", [{"host": "b1", "version": "2.0", "healthy": True, "in_rotation": True},
                                   {"host": "b2", "version": "1.9", "healthy": True, "in_rotation": True}], "t")
    ledger.observe(app, "itest-d", [{"host": "d1", "version": "0.9", "healthy": False, "in_rotation": True}], "t")

    rows = {r["environment"]: r for r in ledger.where(app)}
    assert sorted(rows) == ["itest-a", "itest-b", "itest-d"], "a cell with only a running release is not shown"
    a, b, d = rows["itest-a"], rows["itest-b"], rows["itest-d"]
    assert (a["version"], a["by"], a["run_id"]) == ("1.0", "promote", f"{app}-1")
    assert dt.datetime.fromisoformat(a["since"]).tzinfo is not None and "." not in a["since"]
    assert {k: a["last_attempt"][k] for k in ("kind", "version", "status", "message", "run_id")} == {
        "kind": "promote", "version": "1.1", "status": "failed", "message": "failed 1.1", "run_id": f"{app}-2"}
    assert (a["special"], a["route"], a["drift"]) == (None, None, [])
    assert (b["version"], b["special"], b["route"]) == ("2.0", False, ["itest-a", "itest-b"])
    assert "last_attempt" not in b, "the current release is the last attempt"
    assert [(h["host"], h["version"]) for h in b["drift"]] == [("b2", "1.9")]
    assert (d["version"], d["since"], [h["host"] for h in d["drift"]]) == (None, None, ["d1"])
    assert [r["app"] for r in ledger.where(app)] == [app] * 3 and ledger.where(f"{app}-none") == []
