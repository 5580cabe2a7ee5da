"""Holds a host's lifecycle until the previous batch is back in rotation.

Airflow has no concurrency limit per mapped task group, so batches are enforced by a gate
at the head of each host's group: it reads the states of the previous batch's tasks in the
same run (Task SDK) and defers to the triggerer while it waits - a waiting host holds no
worker slot. Any failure in the previous batch fails the gate: the rollout stops there.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk import BaseSensorOperator

from gantry import plan
from gantry.triggers.batch_gate import BatchGateTrigger, read_group_states

if TYPE_CHECKING:
    from airflow.sdk import Context


class BatchGateSensor(BaseSensorOperator):
    template_fields: Sequence[str] = ("host",)
    ui_color = "#eeeeee"

    def __init__(self, *, host: Any, group_id: str, final_task_id: str, poll_interval: float = 1.0,
                 **kwargs) -> None:
        kwargs.setdefault("map_index_template", "{{ task.host['name'] }}")
        super().__init__(**kwargs)
        self.host, self.group_id, self.final_task_id = host, group_id, final_task_id
        self.gate_poll_interval = poll_interval

    def _decide(self, decision: str, message: str) -> bool:
        if decision == plan.GATE_FAIL:
            raise AirflowFailException(f"{self.host['name']}: not started, {message}")
        if decision == plan.GATE_GO:
            self.log.info("%s (batch %d/%d): %s", self.host["name"], self.host["batch"] + 1,
                          self.host["batches"], message)
            return True
        return False

    def execute(self, context: Context) -> None:
        after = self.host["after"]
        if not after:
            self.log.info("%s is in the first batch", self.host["name"])
            return
        ti = context["ti"]
        host = self.host
        if not host.get("bake_seconds"):
            states = read_group_states(ti.dag_id, ti.run_id, self.group_id)
            if self._decide(*plan.gate_decision(states, self.final_task_id, after, host["batch_start"],
                                                host.get("threshold", 1))):
                return
        self.log.info("%s (batch %d/%d) waits for map index(es) %s", self.host["name"], self.host["batch"] + 1,
                      self.host["batches"], after)
        self.defer(
            trigger=BatchGateTrigger(ti.dag_id, ti.run_id, self.group_id, self.final_task_id, after,
                                     host["batch_start"], host.get("threshold", 1), host.get("bake_seconds", 0),
                                     self.gate_poll_interval),
            method_name="execute_complete", timeout=self.execution_timeout)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        self._decide(event["decision"], event["message"])

    def poke(self, context: Context) -> bool:  # required by BaseSensorOperator; execute() decides
        return False
