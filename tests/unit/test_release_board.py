"""The release board's plain functions (gantry.board): the matrix, releases in flight, approvals,
the window queue, history pages and the HTML, from rows as the ledger and Airflow give them."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from gantry import board as b
from gantry.config import parse_config

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 3, 17, 0, tzinfo=UTC)  # a Thursday, 18:00 in Berlin: prod's window is shut
CONFIG = """
apps:
  demo: {package: "demo-{version}.tar.gz", install_root: /srv/demo, port: 9000, start_command: s,
         stop_command: t, pid_file: /srv/demo/pid}
  api: {package: "api-{version}.tar.gz", install_root: /srv/api, port: 9001, start_command: s,
        stop_command: t, pid_file: /srv/api/pid}
environments:
  perf: {}
  prod:
    upstream: staging
    approval: true
    approvers: [alice, carol]
    scheduled_release: true
    window: {timezone: Europe/Berlin, days: [mon, tue, wed, thu], hours: ["10:00-16:00"]}
  dev: {auto_promote: true, promote_to: staging}
  staging: {upstream: dev, promote_to: prod}
"""


@pytest.fixture(scope="module")
def config():
    return parse_config(yaml.safe_load(CONFIG), Path("."))


def release(id_, version, status="succeeded", env="dev", app="demo", ended=None, **kw):
    return {"id": id_, "app": app, "environment": env, "kind": kw.pop("kind", "promote"), "version": version,
            "previous_version": kw.pop("previous_version", None), "status": status, "message": kw.pop("message", ""),
            "dag_id": f"gantry_promote_{env}", "run_id": f"manual__{id_}", "triggered_by": kw.pop("by", "admin"),
            "approved_by": kw.pop("approved_by", None), "started_at": ended, "ended_at": ended, **kw}


def host(name, version, env="dev", healthy=True, in_rotation=True):
    return {"app": "demo", "environment": env, "host": name, "version": version, "healthy": healthy,
            "in_rotation": in_rotation, "observed_at": NOW, "observed_by": "gantry_reconcile"}


def test_environments_are_in_promotion_order_then_the_others_as_configured(config):
    assert b.environment_order(config) == ["perf", "dev", "staging", "prod"]


def test_a_cell_has_the_current_version_since_when_by_whom_and_its_drifting_hosts(config):
    at = "2026-12-01T09:00:00.123+00:00"
    latest = [{"app": "demo", "environment": "dev", "current": release(7, "1.2", ended=at, by="bob"),
               "attempt": release(9, "1.3", status="failed", ended=at, message="2 hosts failed"),
               "special": False, "route": ["dev", "staging", "prod"]},
              {"app": "demo", "environment": "prod", "current": release(5, "1.1", env="prod", ended=at,
                                                                           approved_by="alice"),
               "attempt": release(5, "1.1", env="prod", ended=at), "special": None, "route": None}]
    hosts = [host("dev-1", "1.2"), host("dev-2", "1.0"), host("dev-3", "1.2", in_rotation=False),
             host("perf-1", "0.9", env="perf")]
    running = [release(10, "1.4", status="running", env="staging")]
    m = b.matrix(config, latest, hosts, running)
    assert m["apps"] == ["demo", "api"] and m["environments"] == ["perf", "dev", "staging", "prod"]
    dev = m["cells"]["demo"]["dev"]
    assert (dev["version"], dev["since"], dev["by"], dev["route"]) == ("1.2", "2026-12-01T09:00:00+00:00", "bob",
                                                                      ["dev", "staging", "prod"])
    assert [(d["host"], d["version"], d["in_rotation"]) for d in dev["drift"]] == [("dev-2", "1.0", True),
                                                                                  ("dev-3", "1.2", False)]
    assert dev["last_attempt"]["status"] == "failed" and dev["last_attempt"]["version"] == "1.3"
    prod = m["cells"]["demo"]["prod"]
    assert prod["approved_by"] == "alice" and prod["last_attempt"] is None, "the current release is the last attempt"
    # Hosts installed before any release: nothing to drift from.
    assert m["cells"]["demo"]["perf"]["version"] is None and m["cells"]["demo"]["perf"]["drift"] == []
    assert m["cells"]["demo"]["staging"]["releasing"]["version"] == "1.4"
    assert m["cells"]["api"]["dev"]["version"] is None, "every app x environment has a cell"


def test_a_cell_shows_each_batch_analysis_of_its_release_and_of_a_later_attempt(config):
    at = "2026-12-01T09:00:00+00:00"
    latest = [{"app": "demo", "environment": "dev", "current": release(7, "1.2", ended=at),
               "current_analyses": [{"batch": 1, "verdict": "PASS", "action": "proceed"}],
               "attempt": release(9, "1.3", status="failed", ended=at),
               "attempt_analyses": [{"batch": 1, "verdict": "PASS", "action": "proceed"},
                                    {"batch": 2, "verdict": "FAIL", "action": "roll_back"}]},
              {"app": "demo", "environment": "prod", "current": release(5, "1.1", env="prod", ended=at),
               "current_analyses": [], "attempt": release(5, "1.1", env="prod", ended=at),
               "attempt_analyses": []}]
    m = b.matrix(config, latest, [], [])
    dev = m["cells"]["demo"]["dev"]
    assert [a["verdict"] for a in dev["analyses"]] == ["PASS"]
    assert [a["verdict"] for a in dev["last_attempt"]["analyses"]] == ["PASS", "FAIL"]
    html = b.render_matrix({"matrix": m}, "")
    assert '<div class="analysis muted">analysis: batch 1 PASS</div>' in html
    assert '<div class="analysis attempt failed">analysis: batch 1 PASS, batch 2 FAIL: roll_back</div>' in html
    assert html.count('class="analysis') == 2, "a release without analyses shows none"


def tis(release_states, stage_states=None, other=()):
    out = [{"task_id": t, "map_index": -1, "state": s, "label": None} for t, s in other]
    for i, s in enumerate(release_states):
        out.append({"task_id": b.RELEASE_TASK, "map_index": i, "state": s, "label": f"h{i}"})
        out.append({"task_id": b.STAGE_TASK, "map_index": i, "state": (stage_states or {}).get(i, "success"),
                    "label": f"h{i}"})
    return out


PLAN = [{"name": f"h{i}", "index": i, "batch": batch, "batches": 3} for i, batch in enumerate([0, 1, 1, 2, 2])]


def test_progress_counts_hosts_and_names_the_batch_under_way():
    p = b.progress(tis(["success", "running", "success", "deferred", "deferred"]), PLAN)
    assert (p["batch"], p["batches"], p["hosts"]) == (2, 3, 5)
    assert (p["released"], p["out_of_rotation"], p["failed"], p["waiting"]) == (2, 1, 0, 2)
    assert [h["status"] for h in p["host_states"]] == ["released", "out_of_rotation", "released", "waiting",
                                                       "waiting"]
    failed = b.progress(tis(["failed", "upstream_failed", None, None, None], {4: "failed"}), PLAN)
    assert (failed["batch"], failed["failed"], failed["waiting"]) == (1, 3, 2)


def test_before_any_host_the_progress_says_which_step_the_run_is_at():
    p = b.progress(tis([], other=[("claim_release", "success"), ("approve_release", "running")]), None,
                   asking={("approve_release", -1)})
    assert (p["batch"], p["batches"], p["hosts"]) == (0, 0, 0)
    assert p["step"] == {"task_id": "approve_release", "state": "awaiting_input"}, "it asks a human"
    p = b.progress(tis([], other=[("claim_release", "success"), ("approve_release", "running")]), None)
    assert p["step"] == {"task_id": "approve_release", "state": "running"}


def test_a_host_whose_task_asks_a_human_is_waiting_in_rotation_not_out_of_it():
    asking = {(b.RELEASE_TASK, 1)}
    p = b.progress(tis(["success", "running", "deferred", "deferred", "deferred"]), PLAN, asking)
    assert [h["status"] for h in p["host_states"]] == ["released", "waiting", "waiting", "waiting", "waiting"]
    assert (p["batch"], p["out_of_rotation"], p["waiting"]) == (1, 0, 4), "batch 2 has not started"


def test_releases_in_flight_link_to_their_run_and_hide_the_dags_the_user_may_not_read(config):
    running = [release(10, "1.4", status="running", env="staging", previous_version="1.3"),
               release(11, "2.0", status="running", env="dev", app="api")]
    key = ("gantry_promote_staging", "manual__10")
    state = b.AirflowState(runs={key: {"state": "running"}}, tasks={key: tis(["running", None, None, None, None])},
                           plans={key: PLAN}, readable={"gantry_promote_staging"})
    (f,) = b.in_flight(running, state, "/base")
    assert f["link"] == "/base/dags/gantry_promote_staging/runs/manual__10"
    assert (f["version"], f["previous_version"], f["batch"], f["out_of_rotation"]) == ("1.4", "1.3", 1, 1)


def test_an_approval_names_who_may_answer_and_the_page_to_answer_on(config):
    asked = dt.datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    state = b.AirflowState(approvals=[
        {"subject": "Release demo 1.4 to prod?", "assignees": None, "created_at": asked,
         "dag_id": "gantry_queue_prod", "run_id": "manual__2026-12-03T12:00:00+00:00", "task_id": "approve_release",
         "map_index": -1, "rendered_map_index": None, "conf": {"app": "demo", "version": "1.4"}},
        {"subject": "start batch 2 of 2?", "assignees": [{"id": "bob", "name": "bob"}], "created_at": asked,
         "dag_id": "gantry_promote_perf", "run_id": "r1", "task_id": "host.offline_restart_online", "map_index": 1,
         "rendered_map_index": "perf-02", "conf": {}}])
    prod, perf = b.approvals(config, state, "")
    assert prod["approvers"] == ["alice", "carol"] and prod["environment"] == "prod" and prod["version"] == "1.4"
    assert prod["link"] == ("/dags/gantry_queue_prod/runs/manual__2026-12-03T12%3A00%3A00%2B00%3A00/tasks/"
                            "approve_release/required_actions")
    assert perf["approvers"] == ["bob"], "the request's own assignees come first"
    assert perf["link"] == "/dags/gantry_promote_perf/runs/r1/tasks/host.offline_restart_online/mapped/1/required_actions"
    assert perf["host"] == "perf-02"


def test_queued_versions_wait_for_the_next_opening_shown_in_the_environments_time_zone(config):
    waiting = [{"id": 3, "app": "demo", "environment": "prod", "version": "1.4", "queued_by": "admin",
                "approved_by": "alice", "queued_at": NOW}]
    (prod,) = b.queued(config, waiting, NOW)
    assert [v["version"] for v in prod["versions"]] == ["1.4"]
    w = prod["next_window"]
    assert (w["opens_at"], w["opens_local"], w["open_now"]) == ("2026-12-07T09:00:00+00:00",
                                                                "Mon 2026-12-07 10:00 CET", False)
    # An operator's override (Variable gantry_windows) is the window that counts.
    (prod,) = b.queued(config, [], NOW, {"prod": {"timezone": "America/New_York", "hours": ["13:00-14:00"]}})
    assert prod["next_window"]["opens_local"] == "Thu 2026-12-03 13:00 EST" and prod["versions"] == []
    # An environment without scheduled releases is listed only while something waits there.
    assert [q["environment"] for q in b.queued(config, [{**waiting[0], "environment": "perf"}], NOW)] == [
        "perf", "prod"]


def test_a_history_page_knows_whether_an_older_one_exists():
    rows = [release(i, f"1.{i}", ended=NOW) for i in (5, 4, 3)]
    page = b.history(rows, "", limit=2)
    assert [r["version"] for r in page["rows"]] == ["1.5", "1.4"] and page["next_before"] == 4
    assert page["rows"][0]["link"] == "/dags/gantry_promote_dev/runs/manual__5"
    assert b.history(rows, "", limit=3)["next_before"] is None


def test_the_html_escapes_what_the_ledger_says_and_polls_quickly_only_while_something_moves(config):
    latest = [{"app": "demo", "environment": "dev", "current": None, "special": None, "route": None,
               "attempt": release(2, "1.0", status="failed", ended=NOW, kind="<script>x</script>")}]
    state = b.AirflowState()
    data = b.build(config, latest=latest, hosts=[], running=[], waiting=[], airflow=state, now=NOW)
    assert data["active"] is False and data["in_flight"] == [] and data["approvals"] == []
    page = b.render_page(data, "", "/gantry", "<admin>")
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "Signed in as &lt;admin&gt;" in page and 'root = "/gantry"' in page and "active = false" in page
    assert 'id="no-flights"' in page and 'id="no-approvals"' in page
    running = [release(3, "1.1", status="running")]
    assert b.build(config, latest=latest, hosts=[], running=running, waiting=[], airflow=state, now=NOW)["active"]
