"""The wait for a human's answer (gantry.hitl): an answer counts whenever it comes, the deadline
holds, and the event has the shape Airflow's HITL operators take."""
from __future__ import annotations

import datetime as dt

from gantry.hitl import wait_for_answer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def detail(answer: list[str] | None = None, by: str = "alice") -> dict:
    """A request as Airflow's REST API gives it (gantry.hooks.airflow_api parses responded_at)."""
    return {"response_received": answer is not None, "chosen_options": answer, "params_input": None,
            "responded_at": dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc) if answer else None,
            "responded_by_user": {"id": by, "name": by} if answer else None}


def test_an_answer_already_given_when_the_wait_starts_decides_at_once():
    clock, reads = FakeClock(), []
    event = wait_for_answer(lambda: reads.append(1) or detail(["Approve"]), timeout=dt.timedelta(minutes=5),
                            clock=clock, sleep=clock.sleep)
    assert reads == [1] and clock.sleeps == []
    assert event["chosen_options"] == ["Approve"] and event["params_input"] == {}
    assert event["responded_by_user"] == {"id": "alice", "name": "alice"}
    assert event["responded_at"].year == 2026 and event["timedout"] is False


def test_a_later_answer_is_read_on_the_next_poll():
    clock = FakeClock()
    answers = iter([detail(), detail(), detail(["Reject"], by="bob")])
    event = wait_for_answer(lambda: next(answers), timeout=None, clock=clock, sleep=clock.sleep,
                            poll_seconds=0.5)
    assert event["chosen_options"] == ["Reject"] and event["responded_by_user"]["name"] == "bob"
    assert clock.sleeps == [0.5, 0.5]


def test_no_answer_by_the_deadline_is_an_error_without_defaults_and_the_default_with_them():
    clock = FakeClock()
    event = wait_for_answer(detail, timeout=dt.timedelta(seconds=2), clock=clock,
                            sleep=clock.sleep, poll_seconds=0.5)
    assert event == {"error": "no answer within 0:00:02", "error_type": "timeout"}
    assert clock.now == 2.0, "it waits exactly until the deadline, not a poll beyond it"
    clock = FakeClock()
    event = wait_for_answer(detail, timeout=dt.timedelta(seconds=1), defaults=["Reject"],
                            clock=clock, sleep=clock.sleep, poll_seconds=0.4)
    assert event["chosen_options"] == ["Reject"] and event["timedout"] is True and event["responded_by_user"] is None
    assert clock.now == 1.0
