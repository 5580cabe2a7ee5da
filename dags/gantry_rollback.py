"""Roll an app in an environment back to an earlier version: ``gantry_rollback_<env>`` for each
environment in config/gantry.yaml. The same graceful per-host release as a promotion; going back
is never gated by upstream or approval, but it takes the environment's claim and window."""
import datetime as dt

from airflow.sdk import DAG, TriggerRule, chain

from gantry.config import load_config
from gantry.operators.artifact import VerifyArtifactOperator
from gantry.operators.chain import ClaimReleaseOperator
from gantry.operators.hosts import CollectHostsOperator, ResolveRollbackTargetOperator
from gantry.operators.migrations import MigrateDatabaseOperator
from gantry.operators.report import ReleaseReportOperator
from gantry.params import rollback_params
from gantry.rollout import (
    GATE_TASKS, HOST_TASKS, RESUME_RETRIES, ROLLOUT_PARAMS, VERSION, as_text, dags_to_build, release_dag_args,
    release_each_host)
from gantry.sensors.release_window import ReleaseWindowSensor

DOC = """
### Roll an app in **{env}** back to an earlier version

**version** empty: the version the hosts ran before their current one (from the release log
Gantry keeps on each host). The schema's down steps are checked before any host and run after
the hosts are back on the old release (old code runs on the newer schema under expand/contract).
"""

config = load_config()
for env, dag_id in dags_to_build(config, "rollback"):  # in a task's process: only its own DAG
    release = {"app": "{{ params.app }}", "version": as_text("ti.xcom_pull(task_ids='resolve_target')"),
               "environment": env.name}
    with DAG(dag_id=dag_id, description=f"Roll an app in {env.name} back", doc_md=DOC.format(env=env.name),
             params=rollback_params(config, env), tags=["gantry", f"env:{env.name}", "rollback"],
             **release_dag_args(env, "rollback")) as dag:
        target = ResolveRollbackTargetOperator(task_id="resolve_target", app="{{ params.app }}",
                                               version=VERSION, environment=env.name)
        claim = ClaimReleaseOperator(task_id="claim_release", kind="rollback", hosts="{{ params.hosts }}",
                                     batches="{{ params.batches }}",
                                     failure_threshold="{{ params.failure_threshold }}",
                                     override_reason="{{ params.emergency_reason }}", retries=0, **release)
        window = ReleaseWindowSensor(task_id="release_window", environment=env.name, **RESUME_RETRIES,
                                     override_reason="{{ params.emergency_reason }}",
                                     execution_timeout=dt.timedelta(days=14))
        artifact = VerifyArtifactOperator(task_id="verify_artifact", app="{{ params.app }}",
                                          version=release["version"])
        check_schema = MigrateDatabaseOperator(task_id="check_migrations", artifact=artifact.output,
                                               direction="down", check_only=True, dry_run="{{ params.dry_run }}",
                                               **release)
        hosts = CollectHostsOperator(task_id="collect_hosts", artifact=artifact.output, **ROLLOUT_PARAMS, **release)
        each_host = release_each_host(env, hosts.output, artifact.output, plan_task_id="collect_hosts", **release)
        report = ReleaseReportOperator(
            task_id="report", trigger_rule=TriggerRule.ALL_DONE, dry_run="{{ params.dry_run }}",
            plan_task_id="collect_hosts", host_task_ids=HOST_TASKS, gate_task_ids=GATE_TASKS, **release)
        migrate_down = MigrateDatabaseOperator(task_id="migrate_database", artifact=artifact.output,
                                               direction="down", dry_run="{{ params.dry_run }}", **release)
        # Hosts first, schema last.
        chain(target, claim, window, artifact, check_schema, hosts, each_host, report, migrate_down)
    globals()[dag_id] = dag
