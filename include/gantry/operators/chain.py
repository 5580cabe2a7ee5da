"""The promotion chain around a release: the ledger claim, gates between environments,
release windows and auto-promotion. Decisions are plain Python (``gantry.windows``, the
ledger's queries); these operators are thin wrappers that orchestrate the ledger hook."""
from __future__ import annotations

import datetime as dt
import json
import time
from typing import TYPE_CHECKING, Any, Sequence

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from gantry import plan
from gantry.config import load_config
from gantry.hitl import ask_and_wait

if TYPE_CHECKING:
    from airflow.sdk import Context



# How long a release waits for a reconciler pass that holds its environment.
RECONCILER_WAIT_SECONDS = 120


def _ledger():
    from gantry import adapters

    return adapters.ledger()


def run_context(context: Context) -> dict:
    """Who started this run and how, from the run itself."""
    dag_run = context["dag_run"]
    conf = dag_run.conf or {}
    by = getattr(dag_run, "triggering_user_name", None)
    auto = bool(conf.get("auto"))
    if conf.get("queue_id"):
        by = f"gantry-release-window (queue entry {conf['queue_id']})"
    return {"triggered_by": ("gantry-auto-promotion" if auto else by) or "scheduler", "auto": auto}


class ClaimReleaseOperator(BaseOperator):
    """Opens this release in the ledger. Only one release per app and environment runs at a time:
    while another one runs, this one is refused with who and what holds the environment."""

    template_fields: Sequence[str] = ("app", "version", "hosts", "batches", "failure_threshold", "override_reason")
    ui_color = "#e0f0e0"

    def __init__(self, *, app: str, version: Any, environment: str, kind: str, hosts: Any = None,
                 batches: Any = None, failure_threshold: Any = None, override_reason: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.app, self.version, self.environment, self.kind = app, version, environment, kind
        self.hosts, self.batches, self.failure_threshold = hosts, batches, failure_threshold
        self.override_reason = override_reason

    def execute(self, context: Context) -> dict:
        from gantry.hooks.cmdb import CmdbUnavailable
        from gantry.hooks.ledger import ReleaseInProgress
        from gantry.operators.hosts import plan_request

        # A request that cannot be planned (hosts the CMDB does not list, a plan beyond
        # max_unavailable, bad CMDB data) is refused before the environment is claimed.
        # collect_hosts plans again from the CMDB of the moment the hosts are released.
        try:
            plan_request(self.app, self.environment, self.hosts, self.batches, self.failure_threshold)
        except plan.PlanError as exc:
            raise AirflowFailException(f"refused before claiming {self.environment}: {exc}. Nothing was "
                                       "touched.") from exc
        except CmdbUnavailable as exc:  # transient: collect_hosts retries it
            self.log.warning("the CMDB is unavailable (%s); the hosts are checked again before any is touched", exc)
        ledger = _ledger()
        current = ledger.current(self.app, self.environment)
        previous = current[0].version if current else None
        who = run_context(context)
        deadline = time.monotonic() + RECONCILER_WAIT_SECONDS
        while True:
            try:
                ledger.claim(app=self.app, environment=self.environment, kind=self.kind,
                             version=self.version or None, dag_id=context["dag"].dag_id, run_id=context["run_id"],
                             triggered_by=who["triggered_by"], scope="partial" if self.hosts else "full",
                             auto=who["auto"], override_reason=self.override_reason or None,
                             previous_version=previous)
                break
            except ReleaseInProgress as exc:
                # The reconciler holds an environment for seconds while it puts hosts back: wait
                # for it rather than refuse. Another release is a refusal.
                if exc.holder.get("kind") != "reconcile" or time.monotonic() > deadline:
                    raise AirflowFailException(str(exc)) from exc
                self.log.info("the reconciler is putting hosts back in %s; waiting for it", self.environment)
                time.sleep(2)
        run = {"app": self.app, "environment": self.environment, "dag_id": context["dag"].dag_id,
               "run_id": context["run_id"]}
        ledger.decide(**run, kind="triggered", by=who["triggered_by"],
                      detail=f"{self.kind} {self.version or '(previous version)'}"
                             + (f" on {', '.join(self.hosts)}" if self.hosts else ""))
        if self.override_reason:
            self.log.warning("EMERGENCY OVERRIDE by %s: %s", who["triggered_by"], self.override_reason)
            ledger.decide(**run, kind="override", by=who["triggered_by"], detail=self.override_reason)
        self.log.info("%s of %s %s in %s opened in the ledger (running now: %s, triggered by %s)", self.kind,
                      self.app, self.version, self.environment, previous, who["triggered_by"])
        return {"previous_version": previous, **who}


class CheckGatesOperator(BaseOperator):
    """Gates between environments, decided before anything is touched:

    - the version's route: special versions pass every optional environment of the chain,
      ordinary ones skip them (fixed at the version's first promotion, recorded in the ledger);
    - verified upstream: the version succeeded on every host of the nearest environment before
      this one on its route (the ``upstream``, or for an ordinary version past an optional one,
      that one's upstream) and is still what runs there (a version rolled back upstream does
      not pass, nor one that a host was seen drifting from since - by the reconciler or a later
      partial release);
    - soak time: it has been running there for at least ``soak_minutes``;
    - auto-promotion never re-releases a version that was deliberately rolled back here.
    Returns the evidence, which the approver sees."""

    template_fields: Sequence[str] = ("app", "version", "special")
    ui_color = "#e0f0e0"

    def __init__(self, *, app: str, version: str, environment: str, special: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.app, self.version, self.environment, self.special = app, version, environment, special

    def execute(self, context: Context) -> dict:
        config = load_config()
        env = config.environment(self.environment)
        ledger = _ledger()
        here = ledger.current(self.app, env.name)
        evidence: dict[str, Any] = {"app": self.app, "version": self.version, "environment": env.name,
                                    "running_here": here[0].version if here else None,
                                    "running_here_since": str(here[0].since) if here else None}
        on_chain = len(config.chain(env.name)) > 1
        recorded = ledger.route(self.app, self.version) if on_chain else None
        try:
            special, why = plan.version_is_special(
                self.app, self.version, recorded, None if self.special in (None, "") else bool(self.special),
                config.app(self.app).is_special(self.version))
        except plan.PlanError as exc:
            raise AirflowFailException(str(exc)) from exc
        route = config.route(env.name, special)
        evidence.update(special=special, route=list(route), route_reason=why)
        if env.optional and not special:
            self.log.info("%s is optional and %s %s is an ordinary version: released here by hand, which is "
                          "allowed; its route (%s) does not change", env.name, self.app, self.version,
                          " -> ".join(route))
        if run_context(context)["auto"] and (rb := ledger.rolled_back(self.app, env.name, self.version)):
            raise AirflowFailException(
                f"{self.app} {self.version} was rolled back in {env.name} (run {rb['run_id']}, {rb['ended_at']}); "
                "auto-promotion will not undo that. Release it by hand to bring it back.")
        if upstream := config.gate_environment(env.name, special):
            on_route = f"its route: {' -> '.join(route)}" + (
                "; a special version passes every optional environment" if special else "")
            up = ledger.current(self.app, upstream)
            if not up or up[0].version != self.version:
                raise AirflowFailException(
                    f"{self.app} {self.version} has not passed {upstream}: it must succeed there on every "
                    f"host first (running in {upstream}: {up[0].version if up else 'nothing recorded'}; {on_route})")
            drifted = [h for h in ledger.hosts(self.app, upstream) if h["observed_at"] >= up[0].since
                       and (h["version"] != self.version or h["healthy"] is False or h["in_rotation"] is False)]
            if drifted:
                raise AirflowFailException(
                    f"{self.app} {self.version} no longer runs on every host of {upstream}: " + "; ".join(
                        f"{h['host']} seen {h['observed_at']:%Y-%m-%d %H:%M:%S} on {h['version']} "
                        f"(healthy={h['healthy']}, in rotation={h['in_rotation']})" for h in drifted))
            soaked = dt.datetime.now(dt.timezone.utc) - up[0].since
            need = dt.timedelta(minutes=env.soak_minutes)
            if soaked < need:
                raise AirflowFailException(
                    f"{self.app} {self.version} has run in {upstream} for {soaked.total_seconds() / 60:.1f} min; "
                    f"{env.name} needs a soak time of {env.soak_minutes:g} min (ready after "
                    f"{(up[0].since + need).isoformat(timespec='seconds')})")
            evidence["upstream"] = {"environment": upstream, "version": up[0].version,
                                    "since": up[0].since.isoformat(timespec="seconds"), "run_id": up[0].run_id,
                                    "soaked_minutes": round(soaked.total_seconds() / 60, 1)}
            soak_config = config.environment(upstream).analysis
            if soak_config is not None and soak_config.enabled:
                evidence["upstream"]["analysis"] = self.soak_analysis(
                    context, ledger, soak_config, env, upstream, up[0].since, need)
        if on_chain and recorded is None:
            # The first promotion that passed its gates fixes the route (a refused one does not).
            held = ledger.record_route(app=self.app, version=self.version, special=special, route=list(route),
                                       marked_by=why, environment=env.name, run_id=context["run_id"])
            if held["special"] != special:  # another environment's first promotion got there first
                raise AirflowFailException(
                    f"{self.app} {self.version} was just recorded as {'special' if held['special'] else 'ordinary'} "
                    f"by {held['environment']} (run {held['run_id']}); trigger again without `special`")
        self.log.info("gates passed: %s", json.dumps(evidence))
        return evidence

    def soak_analysis(self, context: Context, ledger: Any, analysis: Any, env: Any, upstream: str,
                      since: dt.datetime, soak: dt.timedelta) -> dict:
        """The upstream environment's soak, verified from its metrics (``gantry.measure``): every
        host there is measured over the last intervals of the soak time; a failed analysis
        refuses the version with the numbers, an undecided one halts or asks this environment's
        approvers, as the upstream's analysis says. Returns the evidence."""
        from gantry import adapters
        from gantry.access import approval_answerers
        from gantry.analysis import Action
        from gantry.hooks.prometheus import MetricsQueryRejected, MetricsUnavailable
        from gantry.measure import soak_analysis, soak_measured_at

        what = f"{self.app} {self.version}"
        ready = soak_measured_at(analysis, since.timestamp(), soak.total_seconds())
        if time.time() < ready:
            raise AirflowFailException(
                f"the soak analysis of {what} in {upstream} measures until "
                f"{dt.datetime.fromtimestamp(ready, dt.timezone.utc).isoformat(timespec='seconds')} "
                f"(its metrics' intervals x count); trigger {env.name} again after that")
        hosts = [h["host"] for h in ledger.hosts(self.app, upstream)]
        try:
            outcome = soak_analysis(adapters.metrics().value, analysis, app=self.app, env=upstream,
                                    version=self.version, hosts=hosts, since=since.timestamp(),
                                    soak_seconds=soak.total_seconds(), unavailable=(MetricsUnavailable,))
        except MetricsQueryRejected as exc:
            raise AirflowFailException(f"the soak analysis of {upstream} cannot run: {exc}") from exc
        table = outcome.table()
        self.log.info("::group::soak analysis of %s in %s\n%s\n::endgroup::", what, upstream, table)
        evidence = outcome.evidence()
        if outcome.action is Action.PROCEED:
            self.log.info("soak analysis of %s in %s passed: %s", what, upstream, outcome.score.reason)
            return evidence
        if outcome.action is Action.ASK:
            event = ask_and_wait(
                context, subject=f"{what}: its soak analysis in {upstream} is {outcome.score.verdict.value}",
                body=(f"Before **{env.name}**: {what} has soaked in **{upstream}**, and its metrics did not "
                      f"show it good ({outcome.score.reason}).\n\n```\n{table}\n```\n\nApprove to let it "
                      f"into {env.name} anyway; reject to refuse it."),
                options=["Approve", "Reject"],
                assigned_users=[{"id": u, "name": u} for u in approval_answerers(env)] or None,
                timeout=dt.timedelta(minutes=env.approval_timeout_minutes), log=self.log)
            record_answer(context, env.name, event, question=f"soak analysis of {what} in {upstream}\n{table}",
                          yes="soak_accepted", no="soak_rejected")
            who = (event.get("responded_by_user") or {}).get("name")
            if event.get("chosen_options") == ["Approve"]:
                self.log.warning("%s let %s in despite its soak analysis in %s", who, what, upstream)
                return {**evidence, "accepted_by": who}
            raise AirflowFailException(
                f"{what}: its soak analysis in {upstream} is {outcome.score.verdict.value} "
                f"({outcome.score.reason}), and "
                + ("nobody answered in time" if "error" in event or not who else f"{who} rejected it"))
        verb = "failed" if outcome.action is Action.ROLL_BACK else f"is {outcome.score.verdict.value}, which halts"
        raise AirflowFailException(
            f"{what} {verb} its soak analysis in {upstream}: {outcome.score.reason}; {env.name} refuses it. "
            f"The measurements:\n{table}")


class PromoteNextOperator(TriggerDagRunOperator):
    """After a full, successful release, starts the next environment's promotion of the same
    version, when ``next_environment`` is the next one on the version's route (an environment
    followed by an optional one has a task for each, and all but one skip). The next run checks
    its own gates (and will not undo a deliberate rollback).
    ``report_task_id`` returns the release's ledger status: only ``succeeded`` (every CMDB host
    runs the version) promotes."""

    template_fields: Sequence[str] = (*TriggerDagRunOperator.template_fields, "app", "version", "auto_promote",
                                      "hosts", "dry_run")

    def __init__(self, *, app: str, version: str, environment: str, next_environment: str, default: bool,
                 auto_promote: Any = None,
                 hosts: Any = None, dry_run: Any = False, enqueue: bool = False, report_task_id: str = "report",
                 gates_task_id: str = "check_gates", **kwargs) -> None:
        # An environment released at its window openings gets the version queued (after its
        # gates and approval), not released at once. (Not `queue`: that is the Celery queue the
        # task runs on, BaseOperator's.)
        self.enqueue = enqueue
        super().__init__(trigger_dag_id=f"gantry_{'queue' if enqueue else 'promote'}_{next_environment}",
                         wait_for_completion=False, **kwargs)
        self.app, self.version, self.environment, self.next_environment = app, version, environment, next_environment
        self.default, self.auto_promote, self.hosts, self.dry_run = default, auto_promote, hosts, dry_run
        self.report_task_id, self.gates_task_id = report_task_id, gates_task_id

    def execute(self, context: Context) -> Any:
        enabled = self.default if self.auto_promote is None else bool(self.auto_promote)
        report = context["ti"].xcom_pull(task_ids=self.report_task_id) or {}
        gates = context["ti"].xcom_pull(task_ids=self.gates_task_id) or {}
        special = bool(gates.get("special"))
        route_next = load_config().next_on_route(self.environment, special)
        if enabled and route_next != self.next_environment:
            why = (f"{self.next_environment} is not on the route of {self.app} {self.version} "
                   f"({' -> '.join(gates.get('route') or [])}): it goes to {route_next or 'nowhere'} next")
            self.log.info("no auto-promotion to %s: %s", self.next_environment, why)
            raise AirflowSkipException(f"no auto-promotion: {why}")
        why_not = ("disabled for this environment/run" if not enabled else "dry run" if self.dry_run
                   else "only some hosts were released" if self.hosts
                   else f"the release here is {report.get('status', 'unknown')}"
                   + (f" ({', '.join(report['missing'])} did not get {self.version})" if report.get("missing") else "")
                   if report.get("status") != plan.SUCCEEDED else None)
        if why_not:
            self.log.info("no auto-promotion to %s: %s", self.next_environment, why_not)
            raise AirflowSkipException(f"no auto-promotion: {why_not}")
        self.conf = {"app": self.app, "version": self.version, "auto": True}
        if not self.enqueue:
            self.conf["auto_promote"] = self.auto_promote
        self.log.info("auto-promoting %s %s to %s%s", self.app, self.version, self.next_environment,
                      " (queued for its next release window)" if self.enqueue else "")
        return super().execute(context)


def record_answer(context: Context, environment: str, event: dict, *, question: str, yes: str, no: str) -> None:
    """A human's answer in the ledger: who, what, and the question as they saw it."""
    chosen = event.get("chosen_options") or []
    who = (event.get("responded_by_user") or {}).get("name")
    kind = "no_answer" if "error" in event or not who else yes if chosen == ["Approve"] else no
    _ledger().decide(app=context["params"]["app"], environment=environment, dag_id=context["dag"].dag_id,
                     run_id=context["run_id"], kind=kind, by=who, detail=question)


class ReleaseApprovalOperator(ApprovalOperator):
    """Airflow's human approval, except for a release started at a window opening from the queue:
    that version was approved when it was queued, and the approval is checked in the ledger
    instead of asked again. A queue entry that does not match this run refuses the release."""

    def __init__(self, *, environment: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.environment = environment

    def execute(self, context: Context) -> Any:
        queue_id = (context["dag_run"].conf or {}).get("queue_id")
        if not queue_id:
            asked = context["params"].get("approval_timeout_minutes")
            if asked and self.response_timeout and dt.timedelta(minutes=asked) < self.response_timeout:
                # A run may ask for a shorter deadline than the environment's, never a longer one.
                self.response_timeout = dt.timedelta(minutes=asked)
            self.log.info("approval expires after %s; without an answer the run ends and no host is touched",
                          self.response_timeout)
            # Waits in this process, not parked: see gantry.hitl for the answer Airflow would lose.
            event = ask_and_wait(context, subject=self.subject, body=self.body, options=self.options,
                                 assigned_users=self.assigned_users, timeout=self.response_timeout, log=self.log,
                                 notifiers=self.notifiers, defaults=self.defaults, multiple=self.multiple,
                                 params=self.serialized_params)
            record_answer(context, self.environment, event, question=f"{self.subject}\n\n{self.body}",
                          yes="approved", no="rejected")
            return self.execute_complete(context, event)
        params = context["params"]
        entry = _ledger().queue_entry(int(queue_id))
        if (not entry or entry["status"] != "dispatched" or not entry["approved_by"]
                or (entry["app"], entry["environment"], entry["version"])
                != (params["app"], self.environment, params["version"])):
            raise AirflowFailException(
                f"queue entry {queue_id} does not approve {params['app']} {params['version']} here: {entry}")
        self.log.info("%s %s was approved by %s when it was queued (%s, queue entry %s)", entry["app"],
                      entry["version"], entry["approved_by"], entry["queued_at"], queue_id)
        return {"chosen_options": [self.APPROVE], "params_input": {},
                "responded_by_user": {"id": entry["approved_by"], "name": entry["approved_by"]}}


class EnqueueReleaseOperator(BaseOperator):
    """Queues an approved version for the environment's next window opening (in the ledger).
    ``approval_task_id`` names the approval whose answer is recorded (None: no approval)."""

    template_fields: Sequence[str] = ("app", "version")
    ui_color = "#e0f0e0"

    def __init__(self, *, app: str, version: str, environment: str, approval_task_id: str | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.app, self.version, self.environment = app, version, environment
        self.approval_task_id = approval_task_id

    def execute(self, context: Context) -> int:
        from gantry.windows import ReleaseWindow

        approved_by = (plan.approver(context["ti"].xcom_pull(task_ids=self.approval_task_id))
                       if self.approval_task_id else None)
        entry = _ledger().enqueue(app=self.app, environment=self.environment, version=self.version,
                                  queued_by=run_context(context)["triggered_by"], approved_by=approved_by,
                                  dag_id=context["dag"].dag_id, run_id=context["run_id"])
        window = ReleaseWindow.from_config(load_config().environment(self.environment).window)
        opening = window.next_opening(dt.datetime.now(dt.timezone.utc))
        self.log.info("%s %s (approved by %s) is queue entry %s of %s; it is released at the next window "
                      "opening, %s, unless a newer approved version is queued before then", self.app, self.version,
                      approved_by or "nobody: no approval configured", entry, self.environment,
                      opening.isoformat() if opening else "never (no opening ahead)")
        return entry


class TakeQueuedReleasesOperator(BaseOperator):
    """At a window opening: one release per app, of its newest approved queued version. With
    nothing queued the run ends here and says so."""

    ui_color = "#e0f0e0"

    def __init__(self, *, environment: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.environment = environment

    def execute(self, context: Context) -> list[dict]:
        entries = _ledger().take_queued(self.environment, context["run_id"])
        if not entries:
            self.log.info("nothing is queued for %s: this window opening releases nothing", self.environment)
            return []
        for e in entries:
            self.log.info("releasing %s %s in %s (queue entry %s, approved by %s)", e["app"], e["version"],
                          self.environment, e["id"], e["approved_by"])
        return [{"app": e["app"], "version": e["version"], "queue_id": e["id"], "auto_promote": False}
                for e in entries]

