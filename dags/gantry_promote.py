"""Promote an app version to an environment: ``gantry_promote_<env>`` for each environment in
config/gantry.yaml. Read top to bottom, it is the release runbook."""
import datetime as dt

from airflow.sdk import DAG, TriggerRule, chain

from gantry.config import load_config
from gantry.operators.artifact import VerifyArtifactOperator
from gantry.operators.chain import CheckGatesOperator, ClaimReleaseOperator, PromoteNextOperator
from gantry.operators.hosts import CollectHostsOperator
from gantry.operators.migrations import MigrateDatabaseOperator
from gantry.operators.report import ReleaseReportOperator
from gantry.params import promotion_params
from gantry.rollout import (
    GATE_TASKS, HOST_TASKS, RESUME_RETRIES, ROLLOUT_PARAMS, VERSION, approval_task, dags_to_build,
    release_dag_args, release_each_host)
from gantry.sensors.release_window import ReleaseWindowSensor

DOC = """
### Promote an app version to **{env}**

Claim the environment → gates (verified upstream, soak) → approval → release window →
verify the artifact → migrate the database → collect the hosts from the CMDB → per host, one map
index each, labelled with its name: **precheck_and_stage** (all hosts at once: health pre-check,
download + sha256 + unpack) → **offline_restart_online** (batch by batch: silence monitoring,
registry / load balancer offline, drain, quiet period, restart, health check, online) → report.

Each host's log has one headed, timed section per step; `report` prints every host's step table.
Use **dry_run** to print the exact plan without touching anything.
"""

config = load_config()
for env, dag_id in dags_to_build(config, "promote"):  # in a task's process: only its own DAG
    release = {"app": "{{ params.app }}", "version": VERSION, "environment": env.name}
    with DAG(dag_id=dag_id, description=f"Promote an app version to {env.name}", doc_md=DOC.format(env=env.name),
             params=promotion_params(config, env), tags=["gantry", f"env:{env.name}", "promote"],
             **release_dag_args(env, "promote")) as dag:
        claim = ClaimReleaseOperator(task_id="claim_release", kind="promote", hosts="{{ params.hosts }}",
                                     batches="{{ params.batches }}",
                                     failure_threshold="{{ params.failure_threshold }}",
                                     override_reason="{{ params.emergency_reason }}", retries=0, **release)
        gates = CheckGatesOperator(task_id="check_gates", special="{{ params.special }}", retries=0, **release)
        window = ReleaseWindowSensor(task_id="release_window", environment=env.name, **RESUME_RETRIES,
                                     override_reason="{{ params.emergency_reason }}",
                                     execution_timeout=dt.timedelta(days=14))
        artifact = VerifyArtifactOperator(task_id="verify_artifact", app="{{ params.app }}",
                                          version=VERSION)
        migrate = MigrateDatabaseOperator(task_id="migrate_database", artifact=artifact.output, direction="up",
                                          dry_run="{{ params.dry_run }}", **release)
        hosts = CollectHostsOperator(task_id="collect_hosts", artifact=artifact.output, **ROLLOUT_PARAMS, **release)
        each_host = release_each_host(env, hosts.output, artifact.output, plan_task_id="collect_hosts", **release)
        report = ReleaseReportOperator(
            task_id="report", trigger_rule=TriggerRule.ALL_DONE, dry_run="{{ params.dry_run }}",
            plan_task_id="collect_hosts", host_task_ids=HOST_TASKS, gate_task_ids=GATE_TASKS,
            approval_task_id="approve_release" if env.approval else None, **release)

        approve = [approval_task(env)] if env.approval else []
        # The schema goes first (expand), then the hosts.
        chain(claim, gates, *approve, window, artifact, migrate, hosts, each_host, report)
        # Auto-promotion: to the next environment on the version's route (an optional one
        # only for special versions), each candidate its own task.
        for target in config.promotion_targets(env.name):
            report >> PromoteNextOperator(
                task_id=f"promote_{target}", environment=env.name, next_environment=target,
                default=env.auto_promote, enqueue=config.environments[target].scheduled_release,
                auto_promote="{{ params.auto_promote }}", hosts="{{ params.hosts }}", dry_run="{{ params.dry_run }}",
                app="{{ params.app }}", version=VERSION)
    globals()[dag_id] = dag
