"""Builds one promotion DAG per environment from config/gantry.yaml.

Parse-time cost: reading the YAML config and importing the operator classes; no network,
no hooks (they are imported when a task runs).
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, TriggerRule, task_group

from gantry.config import EnvironmentConfig, GantryConfig
from gantry.operators.release import (
    HOST_GROUP,
    BringOnlineOperator,
    HostPrecheckOperator,
    ReleaseReportOperator,
    ResolveHostsOperator,
    RestartAppOperator,
    StagePackageOperator,
    TakeOfflineOperator,
    VerifyArtifactOperator,
)
from gantry.plan import HOST_NAME_PATTERN, VERSION_PATTERN
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


def build_promotion_dag(config: GantryConfig, env: EnvironmentConfig) -> DAG:
    apps = sorted(config.apps)
    params = {
        "app": Param(apps[0], type="string", enum=apps, title="App", description="The app to release."),
        "version": Param("", type="string", pattern=VERSION_PATTERN, title="Version",
                         description="Version in the artifact repository, e.g. 1.1.0."),
        "hosts": Param([], type="array", items={"type": "string", "pattern": HOST_NAME_PATTERN},
                       title="Hosts (optional)",
                       description="Release only these CMDB hosts, one per line. Empty: all hosts."),
        "batch_size": Param(None, type=["null", "integer"], minimum=1, title="Batch size (optional)",
                            description=f"Hosts per batch. Default for {env.name}: {env.batch_size}."),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Log the exact per-host plan; touch nothing."),
    }
    common = {"app": "{{ params.app }}", "version": "{{ params.version }}", "environment": env.name}
    with DAG(
        dag_id=f"gantry_promote_{env.name}",
        description=f"Promote an app version to {env.name}",
        doc_md=DOC.format(env=env.name),
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        catchup=False,
        max_active_runs=1,
        params=params,
        render_template_as_native_obj=True,
        tags=["gantry", f"env:{env.name}"],
        default_args={
            "retries": env.retries,
            "retry_delay": dt.timedelta(seconds=env.retry_delay_seconds),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": dt.timedelta(minutes=2),
            "execution_timeout": dt.timedelta(minutes=10),
        },
    ) as dag:
        artifact = VerifyArtifactOperator(task_id="verify_artifact", app="{{ params.app }}",
                                          version="{{ params.version }}")
        hosts = ResolveHostsOperator(
            task_id="resolve_hosts", artifact=artifact.output, hosts="{{ params.hosts }}",
            batch_size="{{ params.batch_size }}", dry_run="{{ params.dry_run }}", **common)

        @task_group(group_id=HOST_GROUP)
        def host_release(host):
            gate = BatchGateSensor(task_id="wait_for_batch", host=host, group_id=HOST_GROUP,
                                   final_task_id=f"{HOST_GROUP}.bring_online", retries=0,
                                   execution_timeout=dt.timedelta(hours=6))
            pre = HostPrecheckOperator(task_id="precheck", host=host, **common)
            stage = StagePackageOperator(task_id="stage_package", host=host, artifact=artifact.output, **common)
            offline = TakeOfflineOperator(task_id="take_offline", host=host, **common)
            restart = RestartAppOperator(task_id="restart_app", host=host, **common)
            healthy = AppHealthSensor(task_id="await_healthy", host=host, retries=0, **common)
            online = BringOnlineOperator(task_id="bring_online", host=host, trigger_rule=TriggerRule.ALL_DONE,
                                         **common)
            gate >> pre >> stage >> offline >> restart >> healthy >> online

        released = host_release.expand(host=hosts.output)
        report = ReleaseReportOperator(task_id="report", trigger_rule=TriggerRule.ALL_DONE,
                                       dry_run="{{ params.dry_run }}", **common)
        released >> report
    return dag
