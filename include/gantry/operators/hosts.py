"""Step 1: which hosts, in which batches - from the CMDB for a promotion, and for a rollback the
version the hosts ran before."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from gantry import plan
from gantry.config import AppConfig, load_config
from gantry.operators.host import app_config as _app_config

if TYPE_CHECKING:
    from airflow.sdk import Context

XCOM_CMDB_HOSTS = "cmdb_hosts"


def plan_steps(app: AppConfig, environment: str, version: str, host: dict, artifact: dict) -> list[str]:
    """Every step a host goes through, with the concrete values, for logs and dry runs."""
    member = f"{host['address']}:{app.port}"
    env = load_config().environment(environment)
    pool = env.pool(app.name)
    t = app.timeouts
    registry = {
        "etcd": f"registry (etcd): disable {app.name}/{environment}/{host['name']}",
        "zookeeper": f"registry (ZooKeeper): override disabled=true for {member} in /dubbo/{app.service_name} "
                     f"(group {environment}), until consumers see it gone",
    }[env.registry_of(app.name)]
    load_balancer = {
        "nginx": f"load balancer: mark {member} down in upstream {pool}",
        "haproxy": f"load balancer (HAProxy): drain {member} in backend {pool} until its sessions end, then maint",
    }[env.load_balancer_of(app.name)]
    return [
        f"health pre-check: process ({app.pid_file}) and GET http://{member}{app.health_path}; "
        "an unhealthy host is recorded and skipped",
        f"stage: download {artifact['url']} into {app.install_root}/releases/{version}, verify sha256 {artifact['sha256']}",
        f"silence alerts app={app.name} env={environment} host={host['name']} (ends by itself after {app.silence_minutes} min)",
        registry,
        load_balancer,
        f"drain: wait up to {t.drain:g}s for in-flight connections to {member} to finish",
        f"quiet period: {t.quiet_period:g}s",
        f"restart: `{app.stop_command}` in current release, current -> releases/{version}, `{app.start_command}`",
        f"health: process up, GET http://{member}{app.health_path} = 200, version = {version}, within {t.startup:g}s",
        "online: registry enable, load balancer up, expire silence (on failure: roll back to the previous release first)",
        f"clean up: keep the newest {app.keep_releases} release directories and the previous one",
    ]


def batch_analysis_config(env: Any, override: Any = None) -> Any:
    """The analysis a rollout runs after each batch: the environment's when it is enabled, or
    as the trigger's ``analysis`` says (true runs the environment's, or the defaults when it has
    none; false runs none). None: no analysis, the bake time applies.

    :param env: the environment's configuration.
    :param override: the trigger's ``analysis`` param (None or "": the environment decides).
    """
    import dataclasses

    from gantry.analysis import AnalysisConfig

    if override in (None, "", "None"):
        return env.analysis if env.analysis is not None and env.analysis.enabled else None
    if override in (False, "False", "false"):
        return None
    return dataclasses.replace(env.analysis or AnalysisConfig(), enabled=True)


def describe_analysis(config: Any) -> str:
    """One line for the plan and the dry run: what is measured and what each outcome does."""
    metrics = ", ".join(f"{m.name} {m.count} x {m.interval_seconds:g}s" for m in config.metrics)
    return (f"analysis of the previous batch ({metrics}; canary vs the hosts still on the previous version): "
            f"PASS goes on, FAIL rolls the batch back, marginal {config.on_marginal}, inconclusive "
            f"{config.on_inconclusive}, Prometheus unreachable {config.on_unreachable}; firing alerts stop")


def plan_request(app: str, environment: str, subset: Any = None, batches: Any = None,
                 failure_threshold: Any = None) -> dict[str, Any]:
    """The request checked against the CMDB: every listed host, the chosen ones, the batches, the
    bound on hosts out of rotation and the failure threshold. Raises ``PlanError`` (with the
    CMDB's own data errors) for a request that cannot be planned. An unset override is None or
    "" (the form's empty field); anything else is a value to check."""
    from gantry.adapters import cmdb

    config = load_config()
    env = config.environment(environment)
    listed = cmdb(config, env).hosts(app, env.name)
    hosts = plan.select_hosts(listed, subset)
    batch_plan = env.batches if batches in (None, "") else str(batches)
    planned = plan.parse_batch_plan(batch_plan, len(hosts))
    return {"listed": listed, "hosts": hosts, "batch_plan": batch_plan, "batches": planned,
            "bound": plan.check_plan(planned, len(hosts), env.max_unavailable),
            "threshold": plan.failure_threshold(
                env.failure_threshold if failure_threshold in (None, "") else failure_threshold, len(hosts))}


class ResolveRollbackTargetOperator(BaseOperator):
    """Decides the version a rollback returns to: the requested one, or else the version each
    host ran before its current one (from the release log Gantry keeps on every host). Hosts
    that disagree are reported; the most common previous version wins."""

    template_fields: Sequence[str] = ("app", "version")
    ui_color = "#fde8e8"

    def __init__(self, *, app: str, environment: str, version: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.app, self.environment, self.version = app, environment, version

    def execute(self, context: Context) -> str:
        from collections import Counter

        from gantry import adapters, remote

        if self.version:
            try:
                return plan.validate_version(self.version)
            except plan.PlanError as exc:
                raise AirflowFailException(str(exc)) from exc
        config = load_config()
        app = _app_config(self.app)
        previous: dict[str, str | None] = {}
        for host in adapters.cmdb(config, config.environment(self.environment)).hosts(app.name, self.environment):
            hook = adapters.host_shell(host.address, host.ssh_port)
            try:
                out = hook.run(remote.history_script(app), timeout=app.timeouts.command).stdout.splitlines()
            finally:
                hook.close()
            current = remote.parse_probe(out[0]).get("current") if out else None
            previous[host.name] = remote.previous_version(out[1:], current)
            self.log.info("%s: current %s, previous %s", host.name, current, previous[host.name])
        votes = Counter(v for v in previous.values() if v)
        if not votes:
            raise AirflowFailException(f"no host of {app.name} in {self.environment} has a previous release to "
                                       "return to; give the version explicitly")
        target, _ = votes.most_common(1)[0]
        if len(votes) > 1:
            self.log.warning("hosts disagree on the previous version %s; rolling back to %s", dict(votes), target)
        self.log.info("rolling %s in %s back to %s", app.name, self.environment, target)
        return target


class CollectHostsOperator(BaseOperator):
    """Reads the app's hosts in this environment from the CMDB, applies the requested subset
    and plans the batches. Returns one record per host to map over (empty on a dry run,
    after logging the exact per-host plan)."""

    template_fields: Sequence[str] = ("app", "version", "hosts", "batches", "failure_threshold", "bake_seconds",
                                      "settle_seconds", "analysis",
                                      "confirm_batches", "on_threshold", "dry_run", "artifact")
    ui_color = "#e8f4fd"

    def __init__(self, *, app: str, version: str, environment: str, artifact: Any,
                 hosts: Any = None, batches: Any = None, failure_threshold: Any = None, bake_seconds: Any = None,
                 settle_seconds: Any = None, analysis: Any = None,
                 confirm_batches: Any = None, on_threshold: Any = None, dry_run: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.confirm_batches, self.on_threshold = confirm_batches, on_threshold
        self.failure_threshold, self.bake_seconds = failure_threshold, bake_seconds
        self.settle_seconds, self.analysis = settle_seconds, analysis
        self.app, self.version, self.environment = app, version, environment
        self.artifact, self.hosts, self.batches, self.dry_run = artifact, hosts, batches, dry_run

    def execute(self, context: Context) -> list[dict]:
        config = load_config()
        env = config.environment(self.environment)
        app = _app_config(self.app)
        try:
            request = plan_request(app.name, env.name, self.hosts, self.batches, self.failure_threshold)
        except plan.PlanError as exc:
            raise AirflowFailException(f"{exc}. No host was touched.") from exc
        listed, hosts, batches = request["listed"], request["hosts"], request["batches"]
        batch_plan, bound, threshold = request["batch_plan"], request["bound"], request["threshold"]
        bake = float(env.bake_seconds if self.bake_seconds in (None, "") else self.bake_seconds)
        settle = float(env.settle_seconds if self.settle_seconds in (None, "") else self.settle_seconds)
        confirm = env.confirm_between_batches if self.confirm_batches is None else bool(self.confirm_batches)
        on_threshold = self.on_threshold or env.on_threshold
        self.log.info("batch plan %r: %s; at most %d host(s) out of rotation; failure threshold %d (%s); "
                      "bake %gs; human confirmation between batches: %s", batch_plan, [len(b) for b in batches],
                      bound, threshold, on_threshold, bake, confirm)
        analysis = batch_analysis_config(env, self.analysis)
        policy = {}
        if analysis is not None:
            from gantry.measure import batch_wait_seconds

            # The analysis replaces the fixed bake time: the next batch waits for its intervals.
            policy = {"analysis_seconds": batch_wait_seconds(analysis), "analysis": describe_analysis(analysis)}
            bake = 0.0
            self.log.info("after each batch but the last: %s", policy["analysis"])
        records = plan.assign_batches(hosts, batches, threshold=threshold, bake_seconds=bake, settle_seconds=settle,
                                      confirm=confirm, on_threshold=on_threshold, **policy)
        steps = plan_steps(app, env.name, self.version, {"name": "<host>", "address": "<address>"}, self.artifact)
        self.log.info("%s", plan.render_plan(app.name, env.name, self.version, records, []))
        if self.dry_run:
            for r in records:
                self.log.info("%s (batch %d):\n  %s", r["name"], r["batch"] + 1,
                              "\n  ".join(plan_steps(app, env.name, self.version, r, self.artifact)))
            self.log.info("dry run: nothing was touched")
            return []
        self.log.info("each host: %s", " -> ".join(s.split(":")[0] for s in steps))
        # The report needs every host the CMDB lists, not only the chosen ones: the environment
        # runs the version only when all of them do.
        context["ti"].xcom_push(key=XCOM_CMDB_HOSTS, value=[h.name for h in listed])
        return records
