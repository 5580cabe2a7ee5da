"""The per-host step log and the run report's step table (no Airflow services needed)."""
import logging
import time

import pytest

from gantry.operators.host import StepLog
from gantry.operators.report import step_table


def test_each_step_is_a_folded_timed_section_and_a_table_row(caplog):
    log = logging.getLogger("gantry.test")
    step = StepLog(log)
    with caplog.at_level(logging.INFO, logger="gantry.test"):
        with step("quiet period"):
            time.sleep(0.05)
        with pytest.raises(RuntimeError):
            with step("restart"):
                raise RuntimeError("exit 1")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "::group::quiet period" and lines[1] == "::endgroup::"
    assert lines[3] == "::group::restart"
    assert [(s["step"], s["status"]) for s in step.table] == [("quiet period", "ok"), ("restart", "failed")]
    assert step.table[0]["seconds"] >= 0.05 and step.table[0]["at"] <= step.table[1]["at"]


def test_the_report_prints_every_host_with_its_step_durations():
    text = step_table([
        {"host": "h1", "batch": 0, "outcome": "released", "reason": "1.0.0 -> 1.1.0",
         "steps": [{"step": "restart", "seconds": 0.25, "status": "ok"},
                   {"step": "health check", "seconds": 1.5, "status": "failed"}]},
        {"host": "h2", "batch": 1, "outcome": "not_started", "reason": "no step recorded an outcome"},
    ])
    first, steps, second = text.splitlines()
    assert first.split()[:4] == ["h1", "batch", "1", "released"]
    assert "restart 0.25s" in steps and "health check 1.50s FAILED" in steps
    assert second.split()[:4] == ["h2", "batch", "2", "not_started"]
