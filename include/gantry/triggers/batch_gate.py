"""Trigger that waits, in the triggerer, until the previous batch of a rollout is done."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

from gantry import plan


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


class BatchGateTrigger(BaseTrigger):
    def __init__(self, dag_id: str, run_id: str, group_id: str, final_task_id: str, after: list[int],
                 batch_start: int, threshold: int = 1, bake_seconds: float = 0, poll_interval: float = 1.0) -> None:
        super().__init__()
        self.dag_id, self.run_id, self.group_id = dag_id, run_id, group_id
        self.final_task_id, self.after, self.poll_interval = final_task_id, list(after), poll_interval
        self.batch_start, self.threshold, self.bake_seconds = batch_start, threshold, bake_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("gantry.triggers.batch_gate.BatchGateTrigger", {
            "dag_id": self.dag_id, "run_id": self.run_id, "group_id": self.group_id,
            "final_task_id": self.final_task_id, "after": self.after, "batch_start": self.batch_start,
            "threshold": self.threshold, "bake_seconds": self.bake_seconds, "poll_interval": self.poll_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        baked = self.bake_seconds <= 0
        while True:
            states = await sync_to_async(read_group_states)(self.dag_id, self.run_id, self.group_id)
            decision, message = plan.gate_decision(states, self.final_task_id, self.after, self.batch_start,
                                                   self.threshold)
            if decision == plan.GATE_GO and not baked:
                # Bake time: let the previous batch serve for a while, then decide again.
                self.log.info("previous batch done; baking %.0fs before the next batch", self.bake_seconds)
                await asyncio.sleep(self.bake_seconds)
                baked = True
                continue
            if decision != plan.GATE_WAIT:
                yield TriggerEvent({"decision": decision, "message": message})
                return
            await asyncio.sleep(self.poll_interval)
