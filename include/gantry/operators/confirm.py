"""A human decides whether a rollout goes on: between batches, or when the failure threshold
is reached under the ``pause`` policy. Airflow's human-in-the-loop approval, asked only by the
first host of a batch and only when the policy needs it; otherwise it passes at once."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from airflow.providers.standard.operators.hitl import ApprovalOperator

from gantry import plan
from gantry.triggers.batch_gate import read_group_states

if TYPE_CHECKING:
    from airflow.sdk import Context


class BatchConfirmOperator(ApprovalOperator):
    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "host", "app", "version")
    ui_color = "#fff3cd"

    def __init__(self, *, host: Any, app: str, version: str, environment: str, group_id: str, **kwargs) -> None:
        kwargs.setdefault("map_index_template", "{{ task.host['name'] }}")
        super().__init__(subject="Continue the rollout?", fail_on_reject=True, **kwargs)
        self.host, self.app, self.version, self.environment, self.group_id = host, app, version, environment, group_id

    def execute(self, context: Context) -> Any:
        ti = context["ti"]
        reason = plan.needs_confirmation(self.host, read_group_states(ti.dag_id, ti.run_id, self.group_id))
        if reason is None:
            self.log.info("no confirmation needed for %s", self.host["name"])
            return {"chosen_options": [self.APPROVE], "asked": False}
        batch = self.host["batch"] + 1
        self.subject = f"{self.app} {self.version} in {self.environment}: start batch {batch} of {self.host['batches']}?"
        self.body = (f"Rollout of **{self.app} {self.version}** to **{self.environment}**: {reason}.\n\n"
                     f"Approve to start batch {batch} (first host: {self.host['name']}); "
                     "reject to stop here - the remaining hosts stay on their current version, in rotation.")
        self.log.info("asking a human: %s", self.subject)
        return super().execute(context)
