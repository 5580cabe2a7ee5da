"""Holds a host's lifecycle until its batch may start.

Airflow has no concurrency limit per mapped task group, so batches are enforced by a gate at
the head of each host's group. The first host of a batch (its leader) waits until the previous
batch is back in rotation; the batch's other hosts wait for the leader's confirmation step,
which asks a human when the policy says so. Gates read the states of this run's tasks through
the Task SDK and defer to the triggerer while they wait - a waiting host holds no worker slot.
Reaching the failure threshold fails the gate: the rollout stops there.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from gantry import plan
from gantry.triggers.batch_gate import BatchGateTrigger, decide, gate_spec, read_group_states

if TYPE_CHECKING:
    from airflow.sdk import Context


class BatchGateSensor(BaseSensorOperator):
    template_fields: Sequence[str] = ("host",)
    ui_color = "#eeeeee"

    def __init__(self, *, host: Any, group_id: str, final_task_id: str, confirm_task_id: str,
                 poll_interval: float = 1.0, **kwargs) -> None:
        kwargs.setdefault("map_index_template", "{{ task.host['name'] }}")
        super().__init__(**kwargs)
        self.host, self.group_id = host, group_id
        self.final_task_id, self.confirm_task_id = final_task_id, confirm_task_id
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
        host = self.host
        if host["batch"] == 0:
            self.log.info("%s is in the first batch", host["name"])
            return
        gate = gate_spec(host)
        ti = context["ti"]
        if not gate["bake_seconds"] or gate["follower_of"] is not None:
            states = read_group_states(ti.dag_id, ti.run_id, self.group_id)
            if self._decide(*decide(states, gate, self.final_task_id, self.confirm_task_id)):
                return
        self.log.info("%s (batch %d/%d) waits: %s", host["name"], host["batch"] + 1, host["batches"],
                      "for its batch leader" if gate["follower_of"] is not None
                      else f"for map index(es) {gate['after']}")
        self.defer(
            trigger=BatchGateTrigger(ti.dag_id, ti.run_id, self.group_id, self.final_task_id,
                                     self.confirm_task_id, gate, self.gate_poll_interval),
            method_name="execute_complete", timeout=self.execution_timeout)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        self._decide(event["decision"], event["message"])

    def poke(self, context: Context) -> bool:  # required by BaseSensorOperator; execute() decides
        return False
