"""Waits, in the triggerer, until a host's batch may start.

Every host's release task starts in the triggerer (``start_from_trigger``): a host waiting for
its batch holds no worker slot and costs no task process. All waiting hosts of one run share a
single poll (Airflow's shared-stream triggers, keyed by the run): one read of the run's host
task states per tick, fanned out to every waiting host, which decides for itself with the pure
``gantry.plan`` rules. The tick is 0.25 s while a host task is queued or running (a batch may
end any moment, and the next one then starts within a quarter of a second) and backs off to
5 s while nothing moves (a human's go-ahead, a bake time): whatever the host count, a run costs
one small API call per tick.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Hashable

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from gantry import plan

FAST_TICK, TIMED_TICK, SLOW_TICK = 0.25, 0.5, 5.0
# While a host task is on its way (queued, running), a batch may end any moment: poll fast. When
# nothing moves (waiting for a human's go-ahead, a retry's delay), back off. A rollout with a bake
# time or an analysis between batches never backs off past TIMED_TICK: its leaders decide on a
# tick, and a slow one would start the next batch up to SLOW_TICK after its wait has ended.
MOVING = {"scheduled", "queued", "running", "restarting"}


def next_tick(tick: float, states: dict[int, dict[str, str | None]], timed: bool = False) -> float:
    """The shared poll's next interval.

    :param tick: the last interval.
    :param states: the group's task states by map index.
    :param timed: whether the rollout waits a bake time or an analysis between batches.
    """
    if any(state in MOVING for tasks in states.values() for state in tasks.values()):
        return FAST_TICK
    return min(TIMED_TICK if timed else SLOW_TICK, tick * 2)


def analysis_wait(host: dict) -> float:
    """How long a batch leader waits once the previous batch is back: the analysis' intervals
    where an analysis runs (it replaces the bake time), else the bake time (0: none)."""
    if host.get("batch", 0) == 0:
        return 0.0
    return float(host.get("analysis_seconds") or host.get("bake_seconds") or 0)


def group_states(raw: dict[str, Any]) -> dict[int, dict[str, str | None]]:
    """``{"<task_id>_<map_index>": state}`` (Task SDK shape) -> ``{map_index: {task_id: state}}``."""
    out: dict[int, dict[str, str | None]] = {}
    for key, state in raw.items():
        task_id, _, idx = key.rpartition("_")
        if idx.isdigit():
            out.setdefault(int(idx), {})[task_id] = state
    return out


def read_group_states(dag_id: str, run_id: str, group_id: str) -> dict[int, dict[str, str | None]]:
    """States of every mapped task instance of the group in this run, by map index."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, task_group_id=group_id, run_ids=[run_id])
    return group_states(states.get(run_id, {}))


def read_plan(dag_id: str, run_id: str, plan_task_id: str) -> list[dict]:
    """The host records the rollout was planned with (the return value of the plan task)."""
    from airflow.sdk.execution_time.xcom import XCom

    return XCom.get_one(key="return_value", dag_id=dag_id, task_id=plan_task_id, run_id=run_id) or []


class BatchGateTrigger(BaseEventTrigger):
    """Fires ``{"decision": "go" | "fail", "message": ...}`` for one host of a rollout.

    ``dag_id``, ``run_id`` and ``map_index`` come from the task instance when the task starts in
    the triggerer; a task that defers from a worker passes them explicitly.
    """

    def __init__(self, *, group_id: str, plan_task_id: str, prepare_task_id: str, release_task_id: str,
                 dag_id: str | None = None, run_id: str | None = None, map_index: int | None = None) -> None:
        super().__init__()
        self.group_id, self.plan_task_id = group_id, plan_task_id
        self.prepare_task_id, self.release_task_id = prepare_task_id, release_task_id
        self._dag_id, self._run_id, self._map_index = dag_id, run_id, map_index

    def _ti(self, attr: str, explicit: Any) -> Any:
        return explicit if explicit is not None else getattr(self.task_instance, attr, None)

    @property
    def dag_id(self) -> str:
        return self._ti("dag_id", self._dag_id)

    @property
    def run_id(self) -> str:
        return self._ti("run_id", self._run_id)

    @property
    def map_index(self) -> int:
        return self._ti("map_index", self._map_index)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("gantry.triggers.batch_gate.BatchGateTrigger", {
            "group_id": self.group_id, "plan_task_id": self.plan_task_id,
            "prepare_task_id": self.prepare_task_id, "release_task_id": self.release_task_id,
            "dag_id": self.dag_id, "run_id": self.run_id, "map_index": self.map_index})

    def shared_stream_key(self) -> Hashable:
        return ("gantry-batch-gate", self.dag_id, self.run_id, self.group_id)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[dict]:
        """One poll per run: the plan once, then the group's task states on every tick."""
        from asgiref.sync import sync_to_async

        dag_id, run_id = kwargs["dag_id"], kwargs["run_id"]
        records = await sync_to_async(read_plan)(dag_id, run_id, kwargs["plan_task_id"])
        tick, timed = FAST_TICK, any(analysis_wait(r) for r in records)
        while True:
            states = await sync_to_async(read_group_states)(dag_id, run_id, kwargs["group_id"])
            yield {"records": records, "states": states}
            tick = next_tick(tick, states, timed)
            await asyncio.sleep(tick)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[dict]) -> AsyncIterator[TriggerEvent]:
        go_since: float | None = None
        back_at: float | None = None
        async for snapshot in shared_stream:
            host = snapshot["records"][self.map_index]
            decision, message = plan.batch_gate(host, snapshot["states"], self.prepare_task_id,
                                                self.release_task_id)
            extra: dict[str, Any] = {}
            wait = analysis_wait(host)
            if decision == plan.GATE_GO and wait and plan.is_batch_leader(host):
                # Bake time, or the analysis' intervals: the previous batch serves for a while
                # before this one starts. Waiting here costs no process; the leader task then
                # asks Prometheus for the intervals that ended meanwhile (gantry.measure).
                go_since = go_since or time.monotonic()
                back_at = back_at or time.time()
                if time.monotonic() - go_since < wait:
                    continue
                if host.get("analysis_seconds"):
                    extra = {"analysis_since": back_at}
                    message += f"; measured for {wait:g}s since the previous batch was back"
                else:
                    message += f"; baked {wait:g}s"
            if decision != plan.GATE_WAIT:
                yield TriggerEvent({"decision": decision, "message": message, **extra})
                return

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Only used where shared streams are not available: the same decision on a private poll.
        async for event in self.filter_shared_stream(self.open_shared_stream(self.serialize()[1])):
            yield event
