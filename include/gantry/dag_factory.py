"""Builds one promotion DAG per environment from config/gantry.yaml.

Parse-time cost: reading the YAML config and importing the operator classes; no network,
no hooks (they are imported when a task runs).
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, TriggerRule, task_group

from gantry.config import EnvironmentConfig, GantryConfig
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

from gantry.operators.chain import (
    CheckGatesOperator, ClaimReleaseOperator, EnqueueReleaseOperator, PromoteNextOperator, ReleaseApprovalOperator,
    ReleaseWindowSensor, TakeQueuedReleasesOperator)
from gantry.notify import approval_notifiers, run_notifiers
from gantry.operators.confirm import BatchConfirmOperator
from gantry.operators.release import (
    HOST_GROUP,
    BringOnlineOperator,
    HostPrecheckOperator,
    MigrateDatabaseOperator,
    ReleaseReportOperator,
    ResolveHostsOperator,
    ResolveRollbackTargetOperator,
    RestartAppOperator,
    StagePackageOperator,
    TakeOfflineOperator,
    VerifyArtifactOperator,
)
from gantry.plan import BATCH_PLAN_PATTERN, HOST_NAME_PATTERN, VERSION_PATTERN

AMOUNT_PATTERN = r"^[0-9]+(\.[0-9]+)?%?$"
from gantry.sensors.batch_gate import BatchGateSensor
from gantry.sensors.health import AppHealthSensor

DOC = """
### Promote an app version to **{env}**

Per host (one map index per host, labelled with its name), in batches:
`wait_for_batch` → `precheck` → `stage_package` → `take_offline` (silence, registry, load balancer,
drain, quiet period) → `restart_app` → `await_healthy` → `bring_online` (registry, load balancer,
expire silence; rolls back to the previous release if the new one is unhealthy).

`report` lists every host's outcome. Use **dry_run** to print the exact plan without touching anything.
"""


APPROVAL_BODY = """{% set e = ti.xcom_pull(task_ids='check_gates') %}
**{{ params.app }} {{ params.version }}** to **{{ e.environment }}**, triggered by {{ dag_run.triggering_user_name or 'auto-promotion' }}.

- Running there now: {{ e.running_here or 'nothing recorded' }}{% if e.running_here_since %} (since {{ e.running_here_since }}){% endif %}
{% if e.upstream %}- Upstream evidence: {{ e.upstream.version }} succeeded in {{ e.upstream.environment }} on every host, current there since {{ e.upstream.since }} ({{ e.upstream.soaked_minutes }} min), run {{ e.upstream.run_id }}
{% endif %}{% if params.get('emergency_reason') %}- EMERGENCY OVERRIDE: {{ params.emergency_reason }}
{% endif %}
"""
APPROVE_NOW = "Approve to release; reject to end the run without touching a host."
APPROVE_FOR_WINDOW = ("Approve to queue it for the next release window (the newest approved version is released "
                      "when the window opens); reject to queue nothing.")

# Deferrable gates re-decide from scratch on every try, and their decisions (refuse, stop the
# rollout) raise AirflowFailException, which is never retried. The retries are for one Airflow
# 3.3 scheduler race only: when the trigger fires before the executor has reported the deferring
# try's exit, the resumed try is marked failed ("finished with state success, but the task
# instance's state attribute is queued", apache/airflow#72716); seen in CI on a 5-host run.
# Human-in-the-loop tasks get no retries: a retry would ask the human again after a rejection.
RESUME_RETRIES = {"retries": 2, "retry_delay": dt.timedelta(seconds=2), "retry_exponential_backoff": 0}

ROLLBACK_DOC = """
### Roll an app in **{env}** back to an earlier version

Same graceful per-host lifecycle and batches as a promotion. **version** empty: the version the
hosts ran before their current one (from the release log Gantry keeps on each host).
"""


def dag_defaults(env: EnvironmentConfig) -> dict:
    """What every DAG of an environment shares: no backfill, native templates, its alerts."""
    return dict(start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), catchup=False,
                render_template_as_native_obj=True, **run_notifiers(env.name, env.notify))


def app_param(config: GantryConfig) -> Param:
    apps = sorted(config.apps)
    return Param(apps[0], type="string", enum=apps, title="App", description="The app to release.")


def version_param() -> Param:
    return Param("", type="string", pattern=VERSION_PATTERN, title="Version",
                 description="Version in the artifact repository, e.g. 1.1.0.")


def build_promotion_dag(config: GantryConfig, env: EnvironmentConfig, rollback: bool = False) -> DAG:
    """``gantry_promote_<env>``, or with ``rollback`` ``gantry_rollback_<env>``."""
    params = {
        "app": app_param(config),
        "version": (
            Param(None, type=["null", "string"], pattern=VERSION_PATTERN, title="Version (optional)",
                  description="Version to return to. Empty: the previous version on the hosts.")
            if rollback else version_param()),
        "hosts": Param([], type="array", items={"type": "string", "pattern": HOST_NAME_PATTERN},
                       title="Hosts (optional)",
                       description="Release only these CMDB hosts, one per line. Empty: all hosts."),
        "batches": Param(None, type=["null", "string"], pattern=BATCH_PLAN_PATTERN, title="Batch plan (optional)",
                         description="A batch size (\"2\") or cumulative steps, canary first "
                                     f"(\"1, 25%, 100%\"). Default for {env.name}: {env.batches}."),
        "failure_threshold": Param(None, type=["null", "string"], pattern=AMOUNT_PATTERN,
                                   title="Failure threshold (optional)",
                                   description="Failed hosts (count or %) that halt the rollout. "
                                               f"Default for {env.name}: {env.failure_threshold or 1}."),
        "bake_seconds": Param(None, type=["null", "integer"], minimum=0, maximum=86400,
                              title="Bake time between batches, s (optional)",
                              description=f"Default for {env.name}: {env.bake_seconds:g}."),
        "confirm_batches": Param(None, type=["null", "boolean"], title="Confirm each batch (optional)",
                                 description="A human approves before each batch after the first. "
                                             f"Default for {env.name}: {env.confirm_between_batches}."),
        "on_threshold": Param(None, type=["null", "string"], enum=[None, "halt", "pause"],
                              title="When the failure threshold is reached (optional)",
                              description=f"halt, or pause and ask a human. Default for {env.name}: "
                                          f"{env.on_threshold}."),
        "emergency_reason": Param(None, type=["null", "string"], minLength=10, maxLength=500,
                                  title="Emergency override reason (optional)",
                                  description="Release outside the window or during a freeze. The reason is "
                                              "recorded in the ledger and shown in the run."),
        "auto_promote": Param(None, type=["null", "boolean"], title="Auto-promote on success (optional)",
                              description=f"Start the next environment's promotion after success here; "
                                          f"passed along the chain. Default for {env.name}: {env.auto_promote}."),
        "auto": Param(False, type="boolean", title="Started by auto-promotion",
                      description="Set by Gantry when a success upstream started this run."),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Log the exact per-host plan; touch nothing."),
        "queue_id": Param(None, type=["null", "integer"], minimum=1, title="Queue entry",
                          description="Set by the scheduled window run: the approved queue entry released "
                                      "(its approval is checked in the ledger)."),
    }
    if env.approval and not rollback:
        params["approval_timeout_minutes"] = Param(
            None, type=["null", "number"], exclusiveMinimum=0, maximum=env.approval_timeout_minutes,
            title="Approval deadline, minutes (optional)",
            description=f"Without an answer by then the run ends untouched. Default and maximum for {env.name}: "
                        f"{env.approval_timeout_minutes:g}.")
    version = "{{ ti.xcom_pull(task_ids='resolve_target') }}" if rollback else "{{ params.version }}"
    common = {"app": "{{ params.app }}", "version": version, "environment": env.name}
    kind = "rollback" if rollback else "promote"
    with DAG(
        dag_id=f"gantry_{kind}_{env.name}",
        description=(f"Roll an app in {env.name} back" if rollback else f"Promote an app version to {env.name}"),
        doc_md=(ROLLBACK_DOC if rollback else DOC).format(env=env.name),
        schedule=None,
        max_active_runs=1,
        params=params,
        tags=["gantry", f"env:{env.name}", kind],
        **dag_defaults(env),
        default_args={
            "retries": env.retries,
            "retry_delay": dt.timedelta(seconds=env.retry_delay_seconds),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": dt.timedelta(minutes=2),
            "execution_timeout": dt.timedelta(minutes=10),
        },
    ) as dag:
        claim = ClaimReleaseOperator(task_id="claim_release", kind=kind, hosts="{{ params.hosts }}",
                                     override_reason="{{ params.emergency_reason }}", retries=0, **common)
        window = ReleaseWindowSensor(task_id="release_window", environment=env.name, **RESUME_RETRIES,
                                     override_reason="{{ params.emergency_reason }}",
                                     execution_timeout=dt.timedelta(days=14))
        artifact = VerifyArtifactOperator(task_id="verify_artifact", app="{{ params.app }}", version=version)
        if rollback:
            # Going back is always allowed: no upstream gate, no approval; the window still applies.
            ResolveRollbackTargetOperator(task_id="resolve_target", app="{{ params.app }}",
                                          version="{{ params.version }}", environment=env.name) >> claim
            claim >> window
        else:
            gates = CheckGatesOperator(task_id="check_gates", retries=0, **common)
            claim >> gates
            if env.approval:
                gates >> approval_task(env) >> window
            else:
                gates >> window
        window >> artifact
        # Promotion: the schema goes first (expand), then the hosts. Rollback: check now that the
        # schema can go back, take the hosts back, and only then run the down steps.
        schema = MigrateDatabaseOperator(
            task_id="check_migrations" if rollback else "migrate_database", artifact=artifact.output,
            direction="down" if rollback else "up", check_only=rollback, dry_run="{{ params.dry_run }}",
            **common)
        hosts = ResolveHostsOperator(
            task_id="resolve_hosts", artifact=artifact.output, hosts="{{ params.hosts }}",
            batches="{{ params.batches }}", failure_threshold="{{ params.failure_threshold }}",
            bake_seconds="{{ params.bake_seconds }}", confirm_batches="{{ params.confirm_batches }}",
            on_threshold="{{ params.on_threshold }}", dry_run="{{ params.dry_run }}", **common)

        @task_group(group_id=HOST_GROUP)
        def host_release(host):
            gate = BatchGateSensor(task_id="wait_for_batch", host=host, group_id=HOST_GROUP,
                                   final_task_id=f"{HOST_GROUP}.bring_online",
                                   confirm_task_id=f"{HOST_GROUP}.confirm_batch", **RESUME_RETRIES,
                                   execution_timeout=dt.timedelta(hours=6))
            confirm = BatchConfirmOperator(
                task_id="confirm_batch", host=host, group_id=HOST_GROUP, retries=0, execution_timeout=None,
                response_timeout=dt.timedelta(minutes=env.approval_timeout_minutes),
                assigned_users=[{"id": u, "name": u} for u in env.approvers] or None,
                notifiers=approval_notifiers(env.name, env.notify), **common)
            pre = HostPrecheckOperator(task_id="precheck", host=host, **common)
            stage = StagePackageOperator(task_id="stage_package", host=host, artifact=artifact.output, **common)
            offline = TakeOfflineOperator(task_id="take_offline", host=host, **common)
            restart = RestartAppOperator(task_id="restart_app", host=host, **common)
            healthy = AppHealthSensor(task_id="await_healthy", host=host, retries=0, **common)
            online = BringOnlineOperator(task_id="bring_online", host=host, trigger_rule=TriggerRule.ALL_DONE,
                                         **common)
            gate >> confirm >> pre >> stage >> offline >> restart >> healthy >> online

        schema >> hosts
        released = host_release.expand(host=hosts.output)
        report = ReleaseReportOperator(task_id="report", trigger_rule=TriggerRule.ALL_DONE,
                                       dry_run="{{ params.dry_run }}", **common)
        released >> report
        if rollback:
            report >> MigrateDatabaseOperator(task_id="migrate_database", artifact=artifact.output,
                                              direction="down", dry_run="{{ params.dry_run }}", **common)
        elif (nxt := config.next_environment(env.name)) is not None:
            report >> PromoteNextOperator(
                task_id=f"promote_{nxt.name}", next_environment=nxt.name, default=env.auto_promote,
                queue=nxt.scheduled_release,
                auto_promote="{{ params.auto_promote }}", hosts="{{ params.hosts }}", dry_run="{{ params.dry_run }}",
                app="{{ params.app }}", version="{{ params.version }}")
    return dag


def approval_task(env: EnvironmentConfig, for_window: bool = False) -> ReleaseApprovalOperator:
    """The human approval of a release to ``env`` (only its approvers may answer), now or, with
    ``for_window``, for its next window opening."""
    return ReleaseApprovalOperator(
        task_id="approve_release", environment=env.name, fail_on_reject=True, retries=0, execution_timeout=None,
        subject=f"Release {{{{ params.app }}}} {{{{ params.version }}}} to {env.name}?",
        body=APPROVAL_BODY + (APPROVE_FOR_WINDOW if for_window else APPROVE_NOW),
        assigned_users=[{"id": u, "name": u} for u in env.approvers] or None,
        response_timeout=dt.timedelta(minutes=env.approval_timeout_minutes),
        notifiers=approval_notifiers(env.name, env.notify))


QUEUE_DOC = """
### Queue an app version for the next **{env}** release window

Checks the gates (verified upstream, soak time) and asks for the approval now; the approved
version waits in the ledger's queue. At the next window opening `gantry_scheduled_{env}`
releases the newest approved version of each app (older queued ones are superseded).
"""

SCHEDULED_DOC = """
### Release what is queued for **{env}**, at each window opening

Scheduled by the release window ({window}). Takes the newest approved queued version of each
app and starts `gantry_promote_{env}` for it; the release run checks the window and gates again.
With nothing queued the run does nothing and says so in the `take_queued` log.
"""


def build_window_dags(config: GantryConfig, env: EnvironmentConfig) -> tuple[DAG, DAG]:
    """``gantry_queue_<env>`` and ``gantry_scheduled_<env>`` for an environment with
    ``scheduled_release``."""
    from gantry.timetables import ReleaseWindowTimetable

    common = dag_defaults(env)
    with DAG(
        dag_id=f"gantry_queue_{env.name}", description=f"Approve an app version now, release it at the next "
        f"{env.name} window", doc_md=QUEUE_DOC.format(env=env.name), schedule=None,
        tags=["gantry", f"env:{env.name}", "queue"], **common,
        params={
            "app": app_param(config),
            "version": version_param(),
            "auto": Param(False, type="boolean", title="Started by auto-promotion"),
        },
    ) as queue_dag:
        version = {"app": "{{ params.app }}", "version": "{{ params.version }}", "environment": env.name}
        gates = CheckGatesOperator(task_id="check_gates", retries=0, **version)
        enqueue = EnqueueReleaseOperator(task_id="enqueue", retries=1, **version)
        if env.approval:
            gates >> approval_task(env, for_window=True) >> enqueue
        else:
            gates >> enqueue
    timetable = ReleaseWindowTimetable(env.window, env.name)
    with DAG(
        dag_id=f"gantry_scheduled_{env.name}", description=f"Release the queued versions at each {env.name} "
        "window opening", doc_md=SCHEDULED_DOC.format(env=env.name, window=timetable.window.describe()),
        schedule=timetable, max_active_runs=1, tags=["gantry", f"env:{env.name}", "scheduled"], **common,
    ) as scheduled_dag:
        taken = TakeQueuedReleasesOperator(task_id="take_queued", environment=env.name, retries=0)
        TriggerDagRunOperator.partial(
            task_id="start_release", trigger_dag_id=f"gantry_promote_{env.name}", wait_for_completion=False,
            map_index_template="{{ task.conf['app'] }} {{ task.conf['version'] }}",
        ).expand(conf=taken.output)
    return queue_dag, scheduled_dag

