"""Human answers that count whenever they come.

Airflow 3.3 parks a human-in-the-loop task in ``awaiting_input`` and lets the REST API that
records the answer re-schedule it at once. An answer that comes before the scheduler has
processed the parked process's exit (about the first second or two) re-queues the task under
the same try number; the executor's stale "success" for the parked process then lands on the
re-queued try, and the scheduler fails it as "state changed externally" (apache/airflow#72716's
HITL relative: ``process_executor_events`` only forgives a stale success while the task is still
``scheduled``). The API answered 200, the answer was kept, and the release failed anyway.

Gantry therefore never parks: the task writes its request and waits for the answer in its own
process, reading it through Airflow's REST API (the task SDK lets only triggers read answers, and
a deferred task is resumed by the answer the same way a parked one is). The REST API only records
an answer for a running task, so no answer is lost, however soon it comes, and none is asked twice. The price is a
worker slot held while a human decides, as a poking sensor holds one; each waiting run holds
at most one (its approval, or the first host of the batch that waits for a go-ahead).
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from airflow.sdk import Context

# How often a waiting task reads the answer: an answer decides within this, plus one round trip.
POLL_SECONDS = 0.5


def ask_and_wait(context: Context, *, subject: str, body: str | None, options: Sequence[str],
                 assigned_users: list[dict] | None, timeout: dt.timedelta | None, log: logging.Logger,
                 notifiers: Sequence[Callable[[Context], Any]] = (), defaults: list[str] | None = None,
                 multiple: bool = False, params: dict | None = None,
                 poll_seconds: float = POLL_SECONDS) -> dict[str, Any]:
    """Write the request for ``context``'s task instance (Airflow's Required Actions list it),
    notify, and wait for the answer in this process, reading it through Airflow's REST API
    (``gantry.hooks.airflow_api``).

    :param context: the running task's context.
    :param subject: the request's title.
    :param body: the request's text (markdown).
    :param options: the answers a human may choose.
    :param assigned_users: who may answer (``[{"id", "name"}]``), or None for anyone who may edit the DAG.
    :param timeout: how long to wait; None waits as long as the task may run.
    :param log: where the wait is logged.
    :param notifiers: called with the context once the request exists.
    :param defaults: options chosen when the time is up (None: the time running out is an error).
    :param multiple: whether several options may be chosen.
    :param params: the form fields of the request, serialized.
    :param poll_seconds: how often the answer is read.
    :return: the event Airflow's ``HITLOperator.execute_complete`` takes: ``chosen_options``,
        ``params_input``, ``responded_at``, ``responded_by_user``; or ``error``/``error_type``
        (``timeout``) when nobody answered in time and there is no default.
    """
    from airflow.sdk.execution_time.hitl import upsert_hitl_detail

    from gantry.hooks.airflow_api import AirflowApiHook

    ti = context["task_instance"]
    upsert_hitl_detail(ti_id=ti.id, options=list(options), subject=subject, body=body, defaults=defaults,
                       multiple=multiple, params=params or {}, assigned_users=assigned_users)
    who = ", ".join(u["name"] for u in assigned_users) if assigned_users else "anyone allowed to run the DAG"
    log.info("asking %s: %s (%s)", who, subject, f"expires after {timeout}" if timeout else "no deadline")
    for notifier in notifiers:
        notifier(context)
    api = AirflowApiHook()
    return wait_for_answer(lambda: api.hitl_detail(ti.dag_id, ti.run_id, ti.task_id, ti.map_index),
                           timeout=timeout, defaults=defaults, poll_seconds=poll_seconds)


def wait_for_answer(read: Callable[[], dict[str, Any]], *, timeout: dt.timedelta | None,
                    defaults: list[str] | None = None, poll_seconds: float = POLL_SECONDS,
                    clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Read the request until it has an answer or ``timeout`` has passed.

    :param read: returns the request as Airflow's REST API gives it (``response_received``,
        ``chosen_options``, ``params_input``, ``responded_at``, ``responded_by_user``).
    :param timeout: how long to wait (None: no deadline).
    :param defaults: chosen when the time is up, as Airflow's timeout does; None makes it an error.
    :param poll_seconds: pause between reads.
    :param clock: monotonic seconds.
    :param sleep: waits between reads.
    """
    deadline = clock() + timeout.total_seconds() if timeout else None
    while True:
        detail = read()
        if detail.get("response_received"):
            return {"chosen_options": list(detail.get("chosen_options") or []),
                    "params_input": detail.get("params_input") or {}, "responded_at": detail.get("responded_at"),
                    "responded_by_user": detail.get("responded_by_user"), "timedout": False}
        if deadline is not None and clock() >= deadline:
            if defaults:
                return {"chosen_options": list(defaults), "params_input": {},
                        "responded_at": dt.datetime.now(dt.timezone.utc), "responded_by_user": None,
                        "timedout": True}
            return {"error": f"no answer within {timeout}", "error_type": "timeout"}
        sleep(poll_seconds if deadline is None else max(0.0, min(poll_seconds, deadline - clock())))
