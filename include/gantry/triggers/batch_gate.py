"""Trigger that waits, in the triggerer, until a host's batch may start."""
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


def decide(states: dict, gate: dict, final_task_id: str, confirm_task_id: str) -> tuple[str, str]:
    """A batch leader waits for the previous batch; the other hosts of the batch wait for the
    leader's confirmation step (which may ask a human)."""
    if gate.get("follower_of") is not None:
        return plan.follower_decision(states, gate["follower_of"], confirm_task_id)
    return plan.gate_decision(states, final_task_id, gate["after"], gate["batch_start"],
                              gate.get("threshold", 1), gate.get("on_threshold", "halt"), confirm_task_id)


def gate_spec(host: dict) -> dict:
    """What the gate of one host needs to know, from its host record."""
    leader = host["batch_start"]
    return {
        "after": host["after"], "batch_start": leader, "threshold": host.get("threshold", 1),
        "on_threshold": host.get("on_threshold", "halt"), "bake_seconds": host.get("bake_seconds", 0),
        "follower_of": leader if host["batch"] > 0 and host.get("index", leader) != leader else None,
    }


class BatchGateTrigger(BaseTrigger):
    def __init__(self, dag_id: str, run_id: str, group_id: str, final_task_id: str, confirm_task_id: str,
                 gate: dict, poll_interval: float = 1.0) -> None:
        super().__init__()
        self.dag_id, self.run_id, self.group_id = dag_id, run_id, group_id
        self.final_task_id, self.confirm_task_id = final_task_id, confirm_task_id
        self.gate, self.poll_interval = gate, poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("gantry.triggers.batch_gate.BatchGateTrigger", {
            "dag_id": self.dag_id, "run_id": self.run_id, "group_id": self.group_id,
            "final_task_id": self.final_task_id, "confirm_task_id": self.confirm_task_id,
            "gate": self.gate, "poll_interval": self.poll_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        baked = self.gate.get("bake_seconds", 0) <= 0 or self.gate.get("follower_of") is not None
        while True:
            states = await sync_to_async(read_group_states)(self.dag_id, self.run_id, self.group_id)
            decision, message = decide(states, self.gate, self.final_task_id, self.confirm_task_id)
            if decision == plan.GATE_GO and not baked:
                # Bake time: let the previous batch serve for a while, then decide again.
                self.log.info("previous batch done; baking %.0fs before the next batch", self.gate["bake_seconds"])
                await asyncio.sleep(self.gate["bake_seconds"])
                baked = True
                continue
            if decision != plan.GATE_WAIT:
                yield TriggerEvent({"decision": decision, "message": message})
                return
            await asyncio.sleep(self.poll_interval)
