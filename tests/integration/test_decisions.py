"""Every human decision of a run, with who made it, in the ledger (hooks/ledger.py decide,
decisions, history) and on the release board's history page (board.history, render_history)."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from gantry.board import history, matrix, render_history, render_matrix
from gantry.config import parse_config
from gantry.hooks.ledger import LedgerHook


@pytest.fixture
def ledger(fleet):
    hook = LedgerHook()
    yield hook
    import sqlalchemy as sa

    with hook.engine().begin() as conn:
        for table in ("gantry_decision", "gantry_analysis", "gantry_release"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE environment LIKE 'itest-%'"))


def test_decisions_are_kept_in_order_with_who_and_what_they_saw_and_shown_on_the_board(ledger):
    env, run_id = f"itest-{uuid.uuid4().hex[:6]}", f"manual__{uuid.uuid4().hex}"
    run = {"app": "demo", "environment": env, "dag_id": f"gantry_promote_{env}", "run_id": run_id}
    ledger.claim(app="demo", environment=env, kind="promote", version="2.0.0", dag_id=run["dag_id"], run_id=run_id,
                 triggered_by="rita", scope="full", auto=False, override_reason="INC-4711 payment outage",
                 previous_version="1.0.0")
    ledger.decide(**run, kind="triggered", by="rita", detail="promote 2.0.0")
    ledger.decide(**run, kind="override", by="rita", detail="INC-4711 payment outage")
    ledger.decide(**run, kind="approved", by="alice", detail="Release demo 2.0.0?\n\nRunning there now: 1.0.0")
    ledger.decide(**run, kind="batch_stopped", by="alice", detail="start batch 2 of 3?")
    got = ledger.decisions(run["dag_id"], run_id)
    assert [(d["kind"], d["decided_by"]) for d in got] == [
        ("triggered", "rita"), ("override", "rita"), ("approved", "alice"), ("batch_stopped", "alice")]
    assert got[2]["detail"].endswith("Running there now: 1.0.0"), "what the approver saw is kept"
    with pytest.raises(ValueError, match="unknown decision 'vetoed'"):
        ledger.decide(**run, kind="vetoed", by="bob")

    rows = ledger.history("demo", env, 10)
    assert [d["kind"] for d in rows[0]["decisions"]] == ["triggered", "override", "approved", "batch_stopped"]
    page = history(rows, "http://127.0.0.1:8080")
    html = render_history("demo", env, page)
    assert "approved by alice: Release demo 2.0.0?" in html and "batch stopped by alice" in html
    assert "triggered by" not in html, "the trigger is the row's own 'by' column"


def test_a_runs_batch_analyses_are_in_its_history_and_on_the_boards_matrix(ledger):
    env, run_id = f"itest-{uuid.uuid4().hex[:6]}", f"manual__{uuid.uuid4().hex}"
    dag_id = f"gantry_promote_{env}"
    ledger.claim(app="demo", environment=env, kind="promote", version="2.0.0", dag_id=dag_id, run_id=run_id,
                 triggered_by="rita", scope="full", auto=False, override_reason=None,
                 previous_version="1.0.0")
    for batch, verdict, action, reason in ((1, "PASS", "proceed", "score 100.0 >= pass 95"),
                                           (2, "FAIL", "roll_back", "critical metric failed: error_ratio")):
        ledger.record_analysis(app="demo", environment=env, version="2.0.0", dag_id=dag_id, run_id=run_id,
                               batch=batch, evidence={"verdict": verdict, "action": action, "score": 50.0,
                                                      "reason": reason, "metrics": []})
    (row,) = ledger.history("demo", env, 10)
    assert [(a["batch"], a["verdict"], a["action"]) for a in row["analyses"]] == [
        (1, "PASS", "proceed"), (2, "FAIL", "roll_back")]
    html = render_history("demo", env, history([row], "http://127.0.0.1:8080"))
    assert "analysis of batch 1: PASS &rarr; proceed (score 100.0 &gt;= pass 95)" in html
    assert '<div class="analysis attempt failed">analysis of batch 2: FAIL &rarr; roll back (critical metric ' \
           'failed: error_ratio)</div>' in html

    # The matrix's cell shows the last attempt's analyses; once a release succeeds, its own.
    ledger.finish(dag_id, run_id, "failed", "the analysis of batch 2: FAIL", hosts=[])
    app = {"package": "demo-{version}.tar.gz", "install_root": "/srv/demo", "port": 9000,
           "start_command": "bin/start.sh", "stop_command": "bin/stop.sh", "pid_file": "/srv/demo/app.pid"}
    config = parse_config({"apps": {"demo": app}, "environments": {env: {}}}, Path("."))

    def cell_html() -> str:
        return render_matrix({"matrix": matrix(config, ledger.latest([("demo", env)]), [], [])}, "")

    assert '<div class="analysis attempt failed">analysis: batch 1 PASS, batch 2 FAIL: roll_back</div>' \
        in cell_html()
    good = f"manual__{uuid.uuid4().hex}"
    ledger.claim(app="demo", environment=env, kind="promote", version="2.0.1", dag_id=dag_id, run_id=good,
                 triggered_by="rita", scope="full", auto=False, override_reason=None, previous_version="1.0.0")
    ledger.record_analysis(app="demo", environment=env, version="2.0.1", dag_id=dag_id, run_id=good, batch=1,
                           evidence={"verdict": "PASS", "action": "proceed", "score": 100.0, "reason": "", "metrics": []})
    ledger.finish(dag_id, good, "succeeded", "", hosts=[])
    html = cell_html()
    assert '<div class="version">2.0.1</div>' in html
    assert '<div class="analysis muted">analysis: batch 1 PASS</div>' in html and "FAIL" not in html
