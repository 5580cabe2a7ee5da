"""The per-host release, in two task instances per host.

``PrecheckAndStageOperator`` does, for every host at once and before any host leaves rotation,
what needs no downtime: the health pre-check and the staging of the verified package (as
CodeDeploy does before it takes an instance out of service). ``OfflineRestartOnlineOperator``
then takes one host through the downtime, batch by batch: silence monitoring, offline
(registry, load balancer, drain), quiet period and restart, online (health, registry, load
balancer, monitoring back) - or a rollback to the previous release when the new one is not
healthy. Every step is a headed, timed section of the host's log and a row of the host's step
table in the run report.

Why two tasks and not one per step: every task instance here costs a process, a DAG parse and
several API round trips (about 1 s wall and 0.3-2 CPU-s on this machine), and a step boundary
inside the downtime would add that to every batch's time out of rotation. The two boundaries
kept are the ones a user acts on: staging may be retried on its own and never touches
rotation; the release is what a batch waits for.
"""
from __future__ import annotations

import contextlib
import copy
import time
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.triggers.base import StartTriggerArgs

from gantry import plan
from gantry.config import AppConfig, ConfigError, load_config

if TYPE_CHECKING:
    from airflow.sdk import Context

    from gantry.hooks.ssh import RemoteResult
    from gantry.interfaces import HostShell

XCOM_OUTCOME = "outcome"


def app_config(app: str) -> AppConfig:
    try:
        return load_config().app(app)
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from exc


class OnlineIncomplete(RuntimeError):
    """Some of registry, load balancer and monitoring could not be put back (retryable)."""


class StepLog:
    """Headed, timed sections of a host's log (folded per step in the Airflow UI), and the
    step table the run report prints."""

    def __init__(self, log) -> None:
        self.log = log
        self.table: list[dict] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.log.info("::group::%s", name)
        started, at = time.monotonic(), time.time()
        status = "failed"
        try:
            yield
            status = "ok"
        finally:
            seconds = round(time.monotonic() - started, 3)
            self.table.append({"step": name, "at": round(at, 3), "seconds": seconds, "status": status})
            self.log.info("::endgroup::")
            self.log.info("%s: %s in %.2fs", name, status, seconds)


class HostOperator(BaseOperator):
    """Base of the per-host tasks. ``host`` is one record of the rollout plan."""

    template_fields: Sequence[str] = ("host", "app", "version")
    ui_color = "#fdf6e3"

    def __init__(self, *, host: Any, app: str, version: str, environment: str, **kwargs) -> None:
        kwargs.setdefault("map_index_template", "{{ task.host['name'] }}")
        super().__init__(**kwargs)
        self.host, self.app, self.version, self.environment = host, app, version, environment

    @property
    def app_config(self) -> AppConfig:
        return app_config(self.app)

    @property
    def member(self) -> str:
        return f"{self.host['address']}:{self.app_config.port}"

    @property
    def lb_pool(self) -> str:
        return load_config().environment(self.environment).pool(self.app)

    def registry(self):
        from gantry import adapters

        return adapters.registry(load_config().environment(self.environment), self.app)

    def load_balancer(self):
        from gantry import adapters

        return adapters.load_balancer(load_config().environment(self.environment), self.app)

    @property
    def instance(self) -> dict:
        """The instance as the registry names it: host name, and its address and port."""
        return {"address": self.host["address"], "port": self.app_config.port}

    def shell(self) -> HostShell:
        from gantry import adapters

        if getattr(self, "_shell", None) is None:
            self._shell = adapters.host_shell(self.host["address"], int(self.host["ssh_port"]))
        return self._shell

    def remote(self, script: str, timeout: float | None = None) -> RemoteResult:
        return self.shell().run(script, timeout=timeout or self.app_config.timeouts.command)

    def probe(self, expect_version: str | None = None) -> dict[str, str]:
        from gantry import remote

        result = self.remote(remote.probe_script(self.app_config, self.host["address"], expect_version))
        if not result.ok:
            raise RuntimeError(f"probe failed on {self.host['name']}: {result.stderr.strip()}")
        return remote.parse_probe(result.stdout)

    @staticmethod
    def is_healthy(probe: dict[str, str], version: str | None = None) -> bool:
        ok = probe.get("process") == "up" and probe.get("health") == "200"
        if version is not None:
            ok = ok and probe.get("current") == version and probe.get("served", version) == version
        return ok

    def outcome(self, context: Context, outcome: str, reason: str, steps: StepLog,
                serving: str | None = None) -> dict:
        """The host's line in the run report (pushed before the task ends, whatever its state);
        ``serving`` is the release the host runs now, as far as this step knows."""
        record = {"host": self.host["name"], "batch": self.host["batch"], "outcome": outcome, "reason": reason,
                  "serving": serving, "steps": steps.table}
        # A batch leader carries the analysis of the previous batch (the report's per-batch
        # verdict) and the outcomes of the hosts it rolled back after a failed one.
        record.update({k: v for k, v in getattr(self, "_analysis_record", {}).items() if v})
        context["ti"].xcom_push(key=XCOM_OUTCOME, value=record)
        self.log.info("%s: %s - %s", record["host"], outcome, reason)
        return record


class PrecheckAndStageOperator(HostOperator):
    """Steps 2-3, before any host leaves rotation: is the service healthy here (an unhealthy
    host is recorded and skipped, not made worse), then download the package into a new
    release directory and verify its sha256. A host whose staging fails is never taken offline."""

    template_fields: Sequence[str] = (*HostOperator.template_fields, "artifact")

    def __init__(self, *, artifact: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.artifact = artifact

    def execute(self, context: Context) -> dict:
        from gantry import remote

        step = StepLog(self.log)
        name = self.host["name"]
        with step("pre-check"):
            probe = self.probe()
            self.log.info("probe: %s", probe)
        current = probe.get("current") or None
        if not self.is_healthy(probe):
            self.outcome(context, plan.SKIPPED_UNHEALTHY, f"unhealthy before the release (process="
                         f"{probe.get('process')}, health={probe.get('health')}); left as it was", step, serving=current)
            raise AirflowSkipException(f"{name}: unhealthy before the release; left as it was")
        artifact = self.artifact
        try:
            with step("stage package"):
                script = remote.stage_script(self.app_config, self.version, artifact["url"], artifact["sha256"])
                result = self.remote(script)
                self.log.info("%s", (result.stdout or result.stderr).strip())
                if result.exit_code == remote.EXIT_CHECKSUM:
                    raise AirflowFailException(
                        f"{name}: checksum mismatch for {artifact['filename']} - tampered or corrupt artifact; "
                        "the host was not taken out of rotation and still runs its previous release")
                if result.exit_code == remote.EXIT_NOT_FOUND:
                    raise AirflowFailException(f"{name}: {result.stderr.strip()}")
                if not result.ok:
                    raise RuntimeError(f"staging failed ({result.exit_code}): {result.stderr.strip()}")
        except Exception as exc:
            self.outcome(context, plan.NOT_STAGED, f"staging failed, never taken out of rotation: {exc}", step,
                         serving=current)
            raise
        return {"current": current, "steps": step.table}



class OfflineRestartOnlineOperator(HostOperator):
    """Steps 4-7 for one host, once its batch may go, and the guarantee that no host is left
    out of rotation.

    The task starts in the triggerer: ``BatchGateTrigger`` holds it (no worker, no process)
    until the previous batch is back in rotation, and fails it when the rollout stopped. When
    the batch needs a human's go-ahead (confirmation between batches, or the failure threshold
    under the ``pause`` policy), the batch's first host asks through Airflow's human-in-the-loop
    approval; a rejection skips it and stops the rollout. Then: silence, offline, drain, quiet
    period, restart, health, online. A release that does not become healthy is rolled back to
    the previous release and put back, and the task fails with the reason.
    """

    ui_color = "#fdebd0"

    def __init__(self, *, plan_task_id: str, prepare_task_id: str, approvers: Sequence[str] = (),
                 approval_timeout: Any = None, notifiers: Sequence = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.plan_task_id, self.prepare_task_id = plan_task_id, prepare_task_id
        self.approvers, self.approval_timeout, self.notifiers = list(approvers), approval_timeout, list(notifiers)
        # Where the task starts: the batch gate in the triggerer, resuming in ``after_gate``.
        self.start_from_trigger = True
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls="gantry.triggers.batch_gate.BatchGateTrigger",
            trigger_kwargs={"group_id": self.task_group_id, "plan_task_id": plan_task_id,
                            "prepare_task_id": prepare_task_id, "release_task_id": self.task_id},
            next_method="after_gate", next_kwargs=None, timeout=None)

    # ------------------------------------------------------------------ the gate
    def execute(self, context: Context) -> dict:
        """Started on a worker (a retry, or no triggerer start): decide now, or wait deferred."""
        from gantry.triggers.batch_gate import BatchGateTrigger, read_group_states

        ti = context["ti"]
        decision, message = plan.batch_gate(self.host, read_group_states(ti.dag_id, ti.run_id, self.task_group_id),
                                            self.prepare_task_id, self.task_id)
        from gantry.triggers.batch_gate import analysis_wait

        # A leader whose previous batch must bake or be analysed waits in the triggerer, which
        # knows since when the previous batch is back.
        if decision == plan.GATE_WAIT or (decision == plan.GATE_GO and plan.is_batch_leader(self.host)
                                          and analysis_wait(self.host)):
            self.log.info("%s (batch %d/%d) waits: %s", self.host["name"], self.host["batch"] + 1,
                          self.host["batches"], message)
            self.defer(trigger=BatchGateTrigger(
                group_id=self.task_group_id, plan_task_id=self.plan_task_id, prepare_task_id=self.prepare_task_id,
                release_task_id=self.task_id, dag_id=ti.dag_id, run_id=ti.run_id, map_index=ti.map_index),
                method_name="after_gate")
        return self.after_gate(context, {"decision": decision, "message": message})

    @property
    def task_group_id(self) -> str:
        return self.task_id.rpartition(".")[0]

    def after_gate(self, context: Context, event: dict[str, Any]) -> dict:
        step = StepLog(self.log)
        name, batch = self.host["name"], f"batch {self.host['batch'] + 1}/{self.host['batches']}"
        if event["decision"] == plan.GATE_FAIL:
            self.outcome(context, plan.NOT_STARTED, f"not started: {event['message']}", step)
            raise AirflowFailException(f"{name}: not started, {event['message']}")
        self.log.info("%s (%s) may go: %s", name, batch, event["message"])
        if event.get("analysis_since") is not None:
            asked = self.analyse_previous_batch(context, float(event["analysis_since"]), step)
            if asked:
                return self.ask_human(context, asked)
        if plan.is_batch_leader(self.host) and self.host["batch"] > 0:
            from gantry.triggers.batch_gate import read_group_states

            ti = context["ti"]
            reason = plan.needs_confirmation(self.host, read_group_states(ti.dag_id, ti.run_id, self.task_group_id))
            if reason:
                return self.ask_human(context, reason)
        return self.release(context, step)

    # ------------------------------------------------------- analysis of the previous batch
    def analyse_previous_batch(self, context: Context, since: float, step: StepLog) -> str | None:
        """The previous batch measured against the hosts still on the previous version, over the
        intervals since it was back (``gantry.measure``), and the firing alerts. PASS returns None
        (this batch goes); FAIL rolls the analysed batch back and fails; HALT fails; ASK returns
        the question for the environment's approvers. The evidence goes into the ledger and the log.

        :param context: the task's context.
        :param since: when the previous batch was back in rotation (Unix seconds; the gate's).
        :param step: this task's step log.
        """
        from gantry import adapters
        from gantry.analysis import Action, blocking_alerts, select_hosts
        from gantry.hooks.prometheus import MetricsUnavailable
        from gantry.measure import batch_analysis, host_rows, unreachable
        from gantry.operators.hosts import batch_analysis_config
        from gantry.triggers.batch_gate import read_plan

        ti = context["ti"]
        analysed = self.host["batch"]  # the previous batch, counted from 1
        config = batch_analysis_config(load_config().environment(self.environment),
                                       (context.get("params") or {}).get("analysis"))
        records = read_plan(ti.dag_id, ti.run_id, self.plan_task_id)
        released = {r["index"]: ti.xcom_pull(task_ids=self.task_id, key=XCOM_OUTCOME, map_indexes=r["index"])
                    for r in records if r["index"] < self.host["batch_start"]}
        staged = {r["index"]: ti.xcom_pull(task_ids=self.prepare_task_id, map_indexes=r["index"]) for r in records}
        rows = host_rows(records, {i: o for i, o in released.items() if o}, {i: s for i, s in staged.items() if s})
        previous = (staged.get(self.host["index"]) or {}).get("current") or next(
            (s.get("current") for i, s in staged.items() if s and i in self.host["after"]), None)
        hosts = select_hosts(rows, batch=analysed - 1, version=self.version, previous_version=previous)
        with step(f"analysis of batch {analysed}"):
            try:
                monitoring = adapters.silencer()
                ours = [s["id"] for s in monitoring.active(self.app, self.environment)]
                alerts = blocking_alerts(monitoring.alerts(self.app, self.environment), app=self.app,
                                         environment=self.environment, gantry_silence_ids=ours,
                                         offline_hosts=[r.name for r in rows if not r.in_rotation])
            except Exception as exc:  # noqa: BLE001 - unknown alerts are never a pass
                outcome = unreachable(config, hosts, f"Alertmanager: {type(exc).__name__}: {exc}")
            else:
                outcome = batch_analysis(adapters.metrics().value, config, app=self.app, env=self.environment,
                                         version=self.version, hosts=hosts, since=since, alerts=alerts,
                                         unavailable=(MetricsUnavailable,))
            table = outcome.table()
            # Every measurement, folded under one heading in the UI.
            self.log.info("::group::analysis of batch %d of %s %s\n%s\n::endgroup::", analysed, self.app,
                          self.version, table)
            evidence = outcome.evidence()
            adapters.ledger().record_analysis(app=self.app, environment=self.environment, version=self.version,
                                              dag_id=ti.dag_id, run_id=ti.run_id, batch=analysed, evidence=evidence)
        verdict = outcome.score.verdict.value
        summary = {"batch": analysed, "verdict": verdict, "score": evidence["score"], "action": evidence["action"],
                   "reason": outcome.score.reason, "alerts": [a["alertname"] for a in evidence["alerts"]]}
        self._analysis_record = {"analysis": summary}
        what = f"analysis of batch {analysed}: {verdict} ({outcome.score.reason})"
        if evidence["alerts"]:
            what += "; alerts firing: " + ", ".join(a["alertname"] for a in evidence["alerts"])
            self.log.warning("alerts firing for %s in %s: %s", self.app, self.environment, evidence["alerts"])
        if outcome.action is Action.PROCEED:
            self.log.info("%s: batch %d goes", what, analysed + 1)
            return None
        if outcome.action is Action.ASK:
            return f"the {what}\n\n```\n{table}\n```"
        if outcome.action is Action.ROLL_BACK:
            back = [self._roll_back_analysed(context, r, previous)
                    for r in records if r["name"] in hosts.canary]
            self._analysis_record["overrides"] = back
            self.outcome(context, plan.NOT_STARTED, f"not started: the {what}; batch {analysed} rolled back to "
                         f"{previous}", step)
            raise AirflowFailException(f"{self.app} {self.version}: the {what}; batch {analysed} "
                                       f"({', '.join(hosts.canary)}) rolled back to {previous}; the rollout stops")
        self.outcome(context, plan.NOT_STARTED, f"not started: the {what}; halted, nothing rolled back", step)
        raise AirflowFailException(f"{self.app} {self.version}: the {what}; the rollout halts here (nothing is "
                                   "rolled back: the evidence does not show the version bad)")

    def _roll_back_analysed(self, context: Context, record: dict, previous: str | None) -> dict:
        """An analysed host back to ``previous`` by the graceful path of a release (silence,
        offline, drain, quiet period, restart, health, online). Returns its line for the report."""
        from gantry import adapters, remote

        # The same operator's steps on the other host (its shell, registry and pool member);
        # plain attribute writes: the operator's own setattr hooks are for DAG authoring.
        other = copy.copy(self)
        object.__setattr__(other, "host", record)
        object.__setattr__(other, "_shell", None)
        app, name = self.app_config, record["name"]
        step = StepLog(self.log)
        why = "rolled back after the analysis of its batch failed"
        try:
            with step(f"{name}: silence monitoring"):
                adapters.silencer().silence(app.name, self.environment, name, minutes=app.silence_minutes,
                                            comment=f"gantry: rolling back {app.name} {self.version} "
                                                    f"({context['run_id']})")
            with step(f"{name}: offline"):
                other.registry().disable(app.name, self.environment, name, reason=why, **other.instance)
                other.load_balancer().disable(other.lb_pool, record["address"], app.port)
                out = other.remote(remote.drain_script(app, record["address"], app.timeouts.drain),
                                   timeout=app.timeouts.drain + 30)
                self.log.info("%s", (out.stdout + out.stderr).strip())
            with step(f"{name}: quiet period"):
                time.sleep(app.timeouts.quiet_period)
            with step(f"{name}: roll back to {previous}"):
                result = other.remote(remote.restart_script(app, previous))
                self.log.info("%s", (result.stdout + result.stderr).strip())
                healthy = other._wait_healthy(previous, app.timeouts.startup)
            if not healthy:
                return {"host": name, "batch": record["batch"], "outcome": plan.LEFT_OUT, "serving": previous,
                        "reason": f"{why}; {previous} is not healthy either: LEFT OUT OF ROTATION and silenced, "
                                  "needs a human", "steps": step.table}
            with step(f"{name}: online"):
                other._online()
        except Exception as exc:  # noqa: BLE001 - the other hosts of the batch are still rolled back
            self.log.error("%s: could not roll back: %s", name, exc)
            return {"host": name, "batch": record["batch"], "outcome": plan.UNREACHABLE, "serving": None,
                    "reason": f"{why}, but the rollback failed ({exc}): the reconciler puts it back once it is "
                              "healthy", "steps": step.table}
        return {"host": name, "batch": record["batch"], "outcome": plan.ROLLED_BACK, "serving": previous,
                "reason": f"{why}; on {previous}, back in rotation", "steps": step.table}

    # ------------------------------------------------------------ human go-ahead
    def ask_human(self, context: Context, reason: str) -> dict:
        from gantry.hitl import ask_and_wait

        batch = self.host["batch"] + 1
        subject = f"{self.app} {self.version} in {self.environment}: start batch {batch} of {self.host['batches']}?"
        body = (f"Rollout of **{self.app} {self.version}** to **{self.environment}**: {reason}.\n\n"
                f"Approve to start batch {batch} (first host: {self.host['name']}); "
                "reject to stop here - the remaining hosts stay on their current version, in rotation.")
        self.subject, self.body = subject, body  # the approval mail renders them
        # Waits in this process, not parked: see gantry.hitl for the answer Airflow would lose.
        event = ask_and_wait(context, subject=subject, body=body, options=["Approve", "Reject"],
                             assigned_users=[{"id": u, "name": u} for u in self.approvers] or None,
                             timeout=self.approval_timeout, log=self.log, notifiers=self.notifiers)
        from gantry.operators.chain import record_answer

        record_answer(context, self.environment, event, question=f"{subject}\n\n{body}", yes="batch_go_ahead",
                      no="batch_stopped")
        return self.after_human(context, event)

    def after_human(self, context: Context, event: dict[str, Any]) -> dict:
        step = StepLog(self.log)
        chosen = event.get("chosen_options") or []
        who = (event.get("responded_by_user") or {}).get("name")
        if "error" in event or chosen != ["Approve"]:
            why = "no answer in time" if "error" in event else f"rejected by {who}"
            self.outcome(context, plan.NOT_STARTED, f"not started: {why}; the rollout stops here", step)
            raise AirflowSkipException(f"{self.host['name']}: {why}; the rollout stops here")
        self.log.info("%s approved the next batch", who)
        return self.release(context, step)

    # ---------------------------------------------------------------- the release
    def release(self, context: Context, step: StepLog) -> dict:
        from gantry import adapters, remote

        app, name = self.app_config, self.host["name"]
        staged = context["ti"].xcom_pull(task_ids=self.prepare_task_id, map_indexes=context["ti"].map_index) or {}
        previous = staged.get("current")
        with step("pre-check again"):
            try:
                probe = self.probe(expect_version=self.version)
            except Exception as exc:
                later_try = context["ti"].try_number > 1
                self.outcome(context, plan.UNREACHABLE if later_try else plan.NOT_STARTED, f"cannot check the host: "
                             f"{exc}; " + ("an earlier try may have left it out of rotation: the reconciler puts "
                                           "it back once it is healthy" if later_try else "not taken out of rotation"),
                             step)
                raise
        if self.is_healthy(probe, self.version):
            # Already on the version (a retry, or released before): only make sure it is back.
            with step("online"):
                self._online()
            return self.outcome(context, plan.RELEASED, f"already running {self.version}, in rotation", step,
                                serving=self.version)
        if not self.is_healthy(probe):
            if context["ti"].try_number == 1:
                return self.outcome(context, plan.SKIPPED_UNHEALTHY, f"became unhealthy before its batch "
                                    f"({probe}); left as it was", step, serving=probe.get("current") or None)
            # A later try: an earlier one may have died between offline and online. Every step
            # below is idempotent, so the cycle runs again and ends with the host back in rotation.
            self.log.warning("%s is unhealthy on try %d: running the whole cycle again", name,
                             context["ti"].try_number)
        try:
            with step("silence monitoring"):
                silence = adapters.silencer().silence(
                    app.name, self.environment, name, minutes=app.silence_minutes,
                    comment=f"gantry: releasing {app.name} {self.version} ({context['run_id']})")
                self.log.info("silenced alerts for %s (silence %s)", name, silence)
            with step("offline: registry"):
                self.registry().disable(app.name, self.environment, name, reason=f"release {self.version}",
                                        **self.instance)
            with step("offline: load balancer"):
                changed = self.load_balancer().disable(self.lb_pool, self.host["address"], app.port)
                self.log.info("%s %s in %s", self.member, "marked down" if changed else "was already down", self.lb_pool)
            with step("offline: drain"):
                out = self.remote(remote.drain_script(app, self.host["address"], app.timeouts.drain),
                                  timeout=app.timeouts.drain + 30)
                self.log.info("%s", (out.stdout + out.stderr).strip())
            with step("quiet period"):
                time.sleep(app.timeouts.quiet_period)
            with step("restart"):
                result = self.remote(remote.restart_script(app, self.version))
                self.log.info("%s", (result.stdout + result.stderr).strip())
                if not result.ok:
                    raise RuntimeError(f"restart failed ({result.exit_code}): {result.stderr.strip()}")
            with step("health check"):
                healthy = self._wait_healthy(self.version, app.timeouts.startup)
        except Exception as exc:
            self.log.error("%s: %s; restoring the host before failing", name, exc)
            return self._restore(context, step, previous, f"{type(exc).__name__}: {exc}")
        if not healthy:
            return self._restore(context, step, previous, f"{self.version} did not become healthy within "
                                 f"{app.timeouts.startup:g}s")
        with step("online"):
            self._online()
        settle = float(self.host.get("settle_seconds") or 0)
        if settle:
            with step("settle"):
                steady = self._stays_healthy(self.version, settle)
            if not steady:
                # Flapping: out again before it fails more requests, then back to the previous release.
                why = f"{self.version} stopped being healthy within {settle:g}s of going online"
                with step("offline again"):
                    self.registry().disable(app.name, self.environment, name, reason=why, **self.instance)
                    self.load_balancer().disable(self.lb_pool, self.host["address"], app.port)
                return self._restore(context, step, previous, why)
        with step("clean up old releases"):
            self._cleanup(previous)
        return self.outcome(context, plan.RELEASED, f"{previous} -> {self.version}", step, serving=self.version)

    def _restore(self, context: Context, step: StepLog, previous: str | None, why: str) -> dict:
        """Back to the previous release and into rotation; the task then fails with the reason."""
        from gantry import remote

        name, app = self.host["name"], self.app_config
        try:
            with step("roll back"):
                probe = self.probe()
                running = probe.get("current") or previous
                target = previous if running == self.version else running
                if running == self.version or not self.is_healthy(probe):
                    self.log.warning("%s: %s; rolling back to %s", name, why, target)
                    self.remote(remote.restart_script(app, target))
                healthy = self._wait_healthy(target, app.timeouts.startup)
        except Exception as exc:
            # Cannot even look (SSH gone): leave it out - it may be mid-restart - and say so.
            self.outcome(context, plan.UNREACHABLE, f"{why}; could not check or roll back the host ({exc}): out of "
                         "rotation and silenced; the reconciler puts it back once it is healthy", step)
            raise
        outcome = plan.ROLLED_BACK if running == self.version else plan.RESTORED
        if not healthy:
            reason = f"{why}; {target} is not healthy either: LEFT OUT OF ROTATION and silenced, needs a human"
            self.outcome(context, plan.LEFT_OUT, reason, step, serving=target)
            raise AirflowFailException(f"{name}: {reason}")
        try:
            with step("online"):
                self._online()
        except OnlineIncomplete as exc:
            # Retried: every step is idempotent, and the reconciler puts back what stays out.
            self.outcome(context, outcome, f"{why}; on {target}, but {exc}", step, serving=target)
            raise
        self.outcome(context, outcome, f"{why}; {'rolled back to' if outcome == plan.ROLLED_BACK else 'still on'} "
                     f"{target}, back in rotation", step, serving=target)
        if outcome == plan.ROLLED_BACK:  # the new release itself is bad: retrying would not help
            raise AirflowFailException(f"{name}: {why}; rolled back, back in rotation on {target}")
        # Never switched (a transient fault before the restart): back in rotation, and Airflow's
        # retry runs the whole cycle again.
        raise RuntimeError(f"{name}: {why}; back in rotation on {target}")

    def _wait_healthy(self, version: str | None, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            probe = self.probe(expect_version=version)
            if self.is_healthy(probe, version):
                self.log.info("healthy: %s", probe)
                return True
            if time.monotonic() > deadline:
                self.log.warning("not healthy after %.0fs: %s", timeout, probe)
                return False
            time.sleep(0.25)

    def _stays_healthy(self, version: str, seconds: float) -> bool:
        """Healthy on ``version`` at every probe for ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            probe = self.probe(expect_version=version)
            if not self.is_healthy(probe, version):
                self.log.warning("no longer healthy: %s", probe)
                return False
            time.sleep(0.25)
        return True

    def _online(self) -> None:
        """Registry, load balancer, monitoring - each attempted even when another fails (a
        registry outage must not leave the host silenced, nor out of the load balancer); the
        failures are raised together afterwards."""
        from gantry import adapters

        app, name = self.app_config, self.host["name"]
        failures = []
        for what, put_back in (
                ("registry", lambda: self.registry().enable(app.name, self.environment, name, **self.instance)),
                ("load balancer", lambda: self.load_balancer().enable(self.lb_pool, self.host["address"], app.port)),
                ("monitoring", lambda: adapters.silencer().unsilence(app.name, self.environment, name))):
            try:
                result = put_back()
                self.log.info("%s: %s back%s", what, name, f" ({result} silence(s) expired)" if what == "monitoring"
                              else "")
            except Exception as exc:  # noqa: BLE001 - the others must still be tried
                self.log.error("%s: could not put %s back: %s", what, name, exc)
                failures.append(f"{what}: {type(exc).__name__}: {exc}")
        if failures:
            raise OnlineIncomplete(f"{name} is not fully back in rotation: " + "; ".join(failures))

    def _cleanup(self, previous: str | None) -> None:
        """Keep the newest ``keep_releases`` release directories (and always the previous one,
        the rollback target). Best effort: a failed cleanup never fails a release."""
        from gantry import remote

        try:
            result = self.remote(remote.cleanup_script(self.app_config, self.app_config.keep_releases, [previous]))
            if not result.ok:
                self.log.warning("release cleanup failed: %s", result.stderr.strip())
        except Exception as exc:  # noqa: BLE001
            self.log.warning("release cleanup failed: %s", exc)
