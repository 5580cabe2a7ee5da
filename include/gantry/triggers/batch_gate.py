"""Trigger that waits, in the triggerer, until the previous batch of a rollout is done."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

from gantry import plan


def group_states(raw: dict[str, Any], indexes: list[int]) -> dict[int, dict[str, str | None]]:
    """``{"<task_id>_<map_index>": state}`` (Task SDK shape) -> ``{map_index: {task_id: state}}``."""
    wanted = set(indexes)
    out: dict[int, dict[str, str | None]] = {i: {} for i in indexes}
    for key, state in raw.items():
        task_id, _, idx = key.rpartition("_")
        if idx.lstrip("-").isdigit() and int(idx) in wanted:
            out[int(idx)][task_id] = state
    return out


def read_previous_batch(dag_id: str, run_id: str, group_id: str, after: list[int]) -> dict:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, task_group_id=group_id, run_ids=[run_id])
    return group_states(states.get(run_id, {}), after)


class BatchGateTrigger(BaseTrigger):
    def __init__(self, dag_id: str, run_id: str, group_id: str, final_task_id: str, after: list[int],
                 poll_interval: float = 1.0) -> None:
        super().__init__()
        self.dag_id, self.run_id, self.group_id = dag_id, run_id, group_id
        self.final_task_id, self.after, self.poll_interval = final_task_id, list(after), poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("gantry.triggers.batch_gate.BatchGateTrigger", {
            "dag_id": self.dag_id, "run_id": self.run_id, "group_id": self.group_id,
            "final_task_id": self.final_task_id, "after": self.after, "poll_interval": self.poll_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        while True:
            previous = await sync_to_async(read_previous_batch)(self.dag_id, self.run_id, self.group_id, self.after)
            decision, message = plan.gate_decision(previous, self.final_task_id)
            if decision != plan.GATE_WAIT:
                yield TriggerEvent({"decision": decision, "message": message})
                return
            await asyncio.sleep(self.poll_interval)
