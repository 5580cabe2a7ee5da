"""The run report: every host's outcome and step table, and the ledger's record of the release."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from gantry import plan
from gantry.operators.host import XCOM_OUTCOME
from gantry.operators.hosts import XCOM_CMDB_HOSTS
from gantry.rollout import XCOM_REFUSAL

if TYPE_CHECKING:
    from airflow.sdk import Context


def as_list(pulled: Any) -> list:
    """One mapped instance comes back as a single value, several as a list."""
    return [pulled] if isinstance(pulled, dict) else [p for p in (pulled or []) if p]


def step_table(outcomes: Sequence[dict]) -> str:
    """One line per host: its outcome, then the seconds each step took."""
    lines = []
    for o in outcomes:
        steps = "  ".join(f"{s['step']} {s['seconds']:.2f}s" + ("" if s.get("status", "ok") == "ok" else " FAILED")
                          for s in o.get("steps", []))
        lines.append(f"{o['host']:24s} batch {o['batch'] + 1:<3d} {o['outcome']:22s} {o['reason']}"
                     + (f"\n{'':24s} {steps}" if steps else ""))
    return "\n".join(lines)


def batch_verdicts(outcomes: Sequence[dict]) -> str:
    """One line per analysed batch: its verdict, score and what the rollout did (carried by the
    next batch's leader)."""
    rows = sorted((o["analysis"] for o in outcomes if o.get("analysis")), key=lambda a: a["batch"])
    return "\n".join(f"batch {a['batch']:<3d} analysis {a['verdict']:12s} score {a['score']:g}  -> {a['action']}: "
                     f"{a['reason']}" + (f"; alerts: {', '.join(a['alerts'])}" if a.get("alerts") else "")
                     for a in rows)


class ReleaseReportOperator(BaseOperator):
    """Summarises every host's outcome and records the release in the ledger, which must match
    the hosts: ``succeeded`` only when every host the CMDB lists got the version (only then is
    it verified for the next environment); ``partial`` when hosts were left as they were
    (unhealthy, or not in a ``hosts`` subset) - the run ends, the ledger names those hosts, and
    nothing is promoted; ``failed`` (the task fails) when a host failed or no host was released.
    A host that recorded nothing (its task never ran, or died) is reported as not started.

    ``plan_task_id`` returns the planned hosts (and pushes every CMDB host); ``host_task_ids``
    push each host's outcome (the later one wins); ``gate_task_ids`` are the checks before any
    host whose failure means the release was refused rather than failed."""

    template_fields: Sequence[str] = ("app", "version", "dry_run")
    ui_color = "#e8f4fd"

    def __init__(self, *, app: str, version: str, environment: str, plan_task_id: str,
                 host_task_ids: Sequence[str], gate_task_ids: Sequence[str] = (), approval_task_id: str | None = None,
                 dry_run: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.app, self.version, self.environment, self.dry_run = app, version, environment, dry_run
        self.plan_task_id, self.host_task_ids = plan_task_id, list(host_task_ids)
        self.gate_task_ids, self.approval_task_id = list(gate_task_ids), approval_task_id

    def execute(self, context: Context) -> dict:
        ti = context["ti"]
        planned = ti.xcom_pull(task_ids=self.plan_task_id) or []
        recorded: dict[str, dict] = {}
        for task_id in self.host_task_ids:  # later steps override earlier ones
            recorded.update({o["host"]: o for o in as_list(ti.xcom_pull(task_ids=task_id, key=XCOM_OUTCOME))})
        # A batch leader that rolled back the previous batch after a failed analysis carries
        # those hosts' final outcomes.
        for o in list(recorded.values()):
            recorded.update({back["host"]: back for back in o.get("overrides") or ()})
        analyses = batch_verdicts(recorded.values())
        outcomes = [recorded.get(h["name"]) or {"host": h["name"], "batch": h["batch"], "outcome": plan.NOT_STARTED,
                                                "reason": "no step recorded an outcome (not run, or the task died)"}
                    for h in planned]
        approved_by = plan.approver(ti.xcom_pull(task_ids=self.approval_task_id)) if self.approval_task_id else None
        self._decisions(context)
        if self.dry_run and not planned:
            failed = self._failed_before_hosts(context)
            if failed:
                # A dry run exists to find exactly this: it fails, with the refusal as its message.
                message = f"dry run: would be refused at {failed[0]}: {self._reason(context, failed[0])}"
                self._ledger(context, "dry_run", message, [], approved_by)  # a dry run is no attempt
                raise AirflowFailException(f"{self.app} {self.version} in {self.environment}: {message}; "
                                           "nothing was touched")
            self._ledger(context, "dry_run", "dry run: nothing was touched", [], approved_by)
            self.log.info("dry run of %s %s in %s: nothing was touched", self.app, self.version, self.environment)
            return {"status": "dry_run", "dry_run": True, "hosts": []}
        cmdb_hosts = ti.xcom_pull(task_ids=self.plan_task_id, key=XCOM_CMDB_HOSTS) if planned else None
        status, summary, missing = plan.run_verdict(outcomes, cmdb_hosts)
        self.log.info("release %s %s in %s: %s (%s)\n%s", self.app, self.version, self.environment, status, summary,
                      step_table(outcomes))
        if analyses:
            self.log.info("analysis after each batch:\n%s", analyses)
        hosts = [{k: v for k, v in o.items() if k != "steps"} for o in outcomes]
        self._observe(outcomes, context["run_id"])
        if status == plan.SUCCEEDED:
            self._ledger(context, status, summary, hosts, approved_by)
            return {"status": status, "summary": summary, "hosts": outcomes}
        if status == plan.PARTIAL:
            message = (f"{summary}; not on {self.version}: {', '.join(missing)} - the environment does not run "
                       f"{self.version} on every host, so it is not verified for the next environment")
            self._ledger(context, status, message, hosts, approved_by)
            self.log.warning("PARTIAL release: %s", message)
            return {"status": status, "summary": summary, "missing": missing, "hosts": outcomes}
        failed = [] if planned else self._failed_before_hosts(context)
        # Refused when a gate said no; failed when anything else before the hosts did.
        status = "refused" if set(failed) & set(self.gate_task_ids) else plan.FAILED
        message = f"stopped at {failed[0]}: {self._reason(context, failed[0])}" if failed else summary
        self._ledger(context, status, message, hosts, approved_by)
        raise AirflowFailException(f"release of {self.app} {self.version} in {self.environment} did not "
                                   f"complete: {message}")

    def _decisions(self, context: Context) -> list[dict]:
        """Every human decision of the run, logged with who made it (the ledger keeps them)."""
        from gantry import adapters

        decisions = adapters.ledger().decisions(context["dag"].dag_id, context["run_id"])
        if decisions:
            self.log.info("decisions:\n%s", "\n".join(
                f"  {d['decided_at']:%H:%M:%S}  {d['kind']} by {d['decided_by'] or 'nobody'}"
                + (f": {d['detail'].splitlines()[0]}" if d["detail"] else "") for d in decisions))
        return decisions

    def _observe(self, outcomes: Sequence[dict], run_id: str) -> None:
        """What the release saw each host end on, for "what runs where" (drift)."""
        from gantry import adapters

        seen = [{"host": o["host"], "version": o["serving"],
                 "healthy": o["outcome"] in (plan.RELEASED, plan.ROLLED_BACK, plan.RESTORED),
                 "in_rotation": o["outcome"] != plan.LEFT_OUT, "note": o["outcome"]}
                for o in outcomes if o.get("serving")]
        if seen:
            adapters.ledger().observe(self.app, self.environment, seen, observed_by=run_id)

    def _failed_before_hosts(self, context: Context) -> list[str]:
        """The tasks before the hosts (the plan task and everything upstream of it) that failed,
        in run order: one read of the run's task states."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        dag = context["dag"]
        before = dag.get_task(self.plan_task_id).get_flat_relative_ids(upstream=True) | {self.plan_task_id}
        states = RuntimeTaskInstance.get_task_states(dag_id=dag.dag_id, task_ids=sorted(before),
                                                     run_ids=[context["run_id"]]).get(context["run_id"], {})
        # Unmapped tasks: keyed by task_id.
        return [t.task_id for t in dag.topological_sort() if t.task_id in before and states.get(t.task_id) == "failed"]

    def _reason(self, context: Context, task_id: str) -> str:
        """What a failed task said (``record_refusal``)."""
        return context["ti"].xcom_pull(task_ids=task_id, key=XCOM_REFUSAL) or "(no reason recorded; see its log)"

    def _ledger(self, context: Context, status: str, message: str, hosts: list, approved_by: str | None) -> None:
        from gantry import adapters

        adapters.ledger().finish(context["dag"].dag_id, context["run_id"], status, message, hosts, approved_by)
