"""What the release DAGs share: their defaults, the human approval, and the per-host rolling
release that promotion and rollback both run.

Parse-time cost: the config and the operator classes; no network, no hooks (they are imported
when a task runs).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

from airflow.sdk import get_parsing_context, task_group

from gantry.access import dag_access_control, when_enforced
from gantry.config import EnvironmentConfig, GantryConfig
from gantry.notify import approval_notifiers, run_notifiers
from gantry.operators.chain import ReleaseApprovalOperator
from gantry.operators.host import OfflineRestartOnlineOperator, PrecheckAndStageOperator



def as_text(expression: str) -> str:
    """A template of ``expression`` that renders to the same string under the DAGs' native
    rendering, which otherwise reads its output as a Python literal: version "1.10" would arrive
    as the float 1.1 and "2" as the integer 2. The JSON string literal reads back as itself."""
    return "{{ (%s) | tojson }}" % expression


# The trigger form's version, as the operators take it (rollback: empty for "the previous one").
VERSION = as_text("params.version or ''")

HOSTS_GROUP = "host"
PRECHECK_AND_STAGE = f"{HOSTS_GROUP}.precheck_and_stage"
OFFLINE_RESTART_ONLINE = f"{HOSTS_GROUP}.offline_restart_online"
# The per-host tasks that record each host's outcome, earlier first.
HOST_TASKS = (PRECHECK_AND_STAGE, OFFLINE_RESTART_ONLINE)
# The trigger form's rollout policy, as the plan task takes it.
ROLLOUT_PARAMS = {name: "{{ params.%s }}" % name for name in (
    "hosts", "batches", "failure_threshold", "bake_seconds", "settle_seconds", "analysis", "confirm_batches", "on_threshold",
    "dry_run")}
# Tasks before any host whose failure means the release was refused, not that it failed.
GATE_TASKS = ("claim_release", "check_gates", "approve_release", "release_window", "check_migrations")

# Deferrable gates re-decide from scratch on every try, and their decisions (refuse, stop the
# rollout) raise AirflowFailException, which is never retried. The retries are for one Airflow
# 3.3 scheduler race only: when the trigger fires before the executor has reported the deferring
# try's exit, the resumed try is marked failed ("finished with state success, but the task
# instance's state attribute is queued", apache/airflow#72716); seen in CI on a 5-host run.
# Human-in-the-loop tasks get no retries: a retry would ask the human again after a rejection.
RESUME_RETRIES = {"retries": 2, "retry_delay": dt.timedelta(seconds=2), "retry_exponential_backoff": 0}

APPROVAL_BODY = """{% set e = ti.xcom_pull(task_ids=gates_task_id) %}
**{{ params.app }} {{ params.version }}** to **{{ e.environment }}**, triggered by {{ dag_run.triggering_user_name or 'auto-promotion' }}.

- Running there now: {{ e.running_here or 'nothing recorded' }}{% if e.running_here_since %} (since {{ e.running_here_since }}){% endif %}
{% if e.upstream %}- Upstream evidence: {{ e.upstream.version }} succeeded in {{ e.upstream.environment }} on every host, current there since {{ e.upstream.since }} ({{ e.upstream.soaked_minutes }} min), run {{ e.upstream.run_id }}
{% if e.upstream.get('analysis') %}- Soak analysis in {{ e.upstream.environment }}: {{ e.upstream.analysis.verdict }} ({{ e.upstream.analysis.reason }}){% if e.upstream.analysis.get('accepted_by') %}, let in by {{ e.upstream.analysis.accepted_by }}{% endif %}
{% endif %}{% endif %}{% if params.get('emergency_reason') %}- EMERGENCY OVERRIDE: {{ params.emergency_reason }}
{% endif %}
"""
APPROVE_NOW = "Approve to release; reject to end the run without touching a host."
APPROVE_FOR_WINDOW = ("Approve to queue it for the next release window (the newest approved version is released "
                      "when the window opens); reject to queue nothing.")


def dags_to_build(config: GantryConfig, kind: str) -> Iterator[tuple[EnvironmentConfig, str]]:
    """``(environment, dag_id)`` for the ``gantry_<kind>_<env>`` DAGs this process should build:
    all of them, or in a task's process (Airflow sets its parsing context) only its own."""
    wanted = get_parsing_context().dag_id
    for env in config.environments.values():
        dag_id = f"gantry_{kind}_{env.name}"
        if not wanted or wanted == dag_id:
            yield env, dag_id


def access_control_args(env: EnvironmentConfig, kind: str) -> dict:
    """The DAG's ``access_control`` (who may see, trigger and answer it; gantry.access) when
    Airflow runs the FAB auth manager; nothing under any other.

    :param env: the environment.
    :param kind: ``promote``, ``rollback``, ``queue`` or ``scheduled``.
    """
    return when_enforced(lambda: dag_access_control(env.access, kind))


def dag_defaults(env: EnvironmentConfig, kind: str) -> dict:
    """What every DAG of an environment shares: no backfill, native templates, its alerts, who
    may do what with it (under FAB), and its workers: with a ``queue`` in the config every task
    runs on the workers of that queue, the ones placed where the environment's hosts, load
    balancer, registry and database can be reached (README, Scale-out).

    :param env: the environment.
    :param kind: the DAG's kind: ``promote``, ``rollback``, ``queue`` or ``scheduled``.
    """
    return dict(start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), catchup=False,
                render_template_as_native_obj=True, **run_notifiers(env.name, env.notify),
                **access_control_args(env, kind), default_args={"queue": env.queue} if env.queue else {})


# Where a failed task leaves its reason, for the report (a dry run that would be refused says why).
XCOM_REFUSAL = "refusal"


def record_refusal(context: dict) -> None:
    """A failed task's reason, as an XCom the report reads: the run's summary and a dry run's
    refusal quote it instead of pointing at a log."""
    exception = context.get("exception")
    if exception is not None:
        context["ti"].xcom_push(key=XCOM_REFUSAL, value=str(exception)[:2000])


def release_dag_args(env: EnvironmentConfig, kind: str) -> dict:
    """A release DAG's defaults: one run at a time, retries with backoff for transient faults.

    :param env: the environment.
    :param kind: ``promote`` or ``rollback``.
    """
    defaults = dag_defaults(env, kind)
    task_defaults = defaults.pop("default_args")
    return dict(schedule=None, max_active_runs=1, **defaults, default_args={
        **task_defaults,
        "on_failure_callback": [record_refusal],
        "retries": env.retries,
        "retry_delay": dt.timedelta(seconds=env.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(minutes=2),
        "execution_timeout": dt.timedelta(minutes=10),
    })


def approval_task(env: EnvironmentConfig, for_window: bool = False,
                  gates_task_id: str = "check_gates") -> ReleaseApprovalOperator:
    """The human approval of a release to ``env`` (only its approvers may answer), now or, with
    ``for_window``, for its next window opening. The body shows the evidence ``gates_task_id``
    returned."""
    return ReleaseApprovalOperator(
        task_id="approve_release", environment=env.name, fail_on_reject=True, retries=0, execution_timeout=None,
        subject=f"Release {{{{ params.app }}}} {{{{ params.version }}}} to {env.name}?",
        body=APPROVAL_BODY.replace("gates_task_id", repr(gates_task_id))
        + (APPROVE_FOR_WINDOW if for_window else APPROVE_NOW),
        assigned_users=[{"id": u, "name": u} for u in env.approvers] or None,
        response_timeout=dt.timedelta(minutes=env.approval_timeout_minutes),
        notifiers=approval_notifiers(env.name, env.notify))


def release_each_host(env: EnvironmentConfig, hosts: Any, artifact: Any, plan_task_id: str, **common):
    """The seed's per-host lifecycle, one map index per host, labelled with its name.

    precheck_and_stage (all hosts at once, nothing leaves rotation):
        2. pre-check the service (an unhealthy host is recorded and skipped)
        3. stage the package: download, verify sha256, unpack into releases/<version>
    offline_restart_online (batch by batch; starts in the triggerer and waits there for its batch):
        4. silence monitoring
        5. offline: registry, load balancer, drain in-flight requests
        6. quiet period, then restart with the app's stop/start commands
        7. online: health check, registry, load balancer, monitoring back
           (a release that is not healthy is rolled back to the previous one first)
    """
    @task_group(group_id=HOSTS_GROUP)
    def each_host(host):
        staged = PrecheckAndStageOperator(task_id="precheck_and_stage", host=host, artifact=artifact,
                                          priority_weight=1, weight_rule="absolute", **common)
        released = OfflineRestartOnlineOperator(
            task_id="offline_restart_online", host=host, plan_task_id=plan_task_id,
            prepare_task_id=PRECHECK_AND_STAGE, approvers=env.approvers, approval_timeout=dt.timedelta(minutes=env.approval_timeout_minutes),
            notifiers=approval_notifiers(env.name, env.notify),
            # Waiting for its batch (and a human's go-ahead) counts against it: hours, not minutes.
            execution_timeout=dt.timedelta(hours=6),
            # A host whose batch may go runs before any staging still queued (absolute weights on
            # both: Airflow's default adds downstream weights, which ranks staging first): on 200
            # hosts the canary otherwise waited 77-97 s behind the other hosts' staging.
            priority_weight=100, weight_rule="absolute", **common)
        staged >> released

    return each_host.expand(host=hosts)
