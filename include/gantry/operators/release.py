"""Operators of a promotion: thin, templated wrappers that orchestrate the hooks.

Decisions (plans, gates, outcomes) live in ``gantry.plan``; shell scripts in
``gantry.remote``. Hooks are imported inside ``execute`` so DAG files parse fast.

Failure classes: ``AirflowFailException`` for deterministic faults (unknown version,
checksum mismatch, bad request) - never retried; any other exception is transient
(connection refused, timeout) and Airflow retries it with backoff.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.sdk import BaseOperator

from gantry import plan
from gantry.config import AppConfig, ConfigError, load_config

if TYPE_CHECKING:
    from airflow.sdk import Context

    from gantry.hooks.ssh import GantrySSHHook, RemoteResult

HOST_GROUP = "host_release"
XCOM_PRECHECK = "precheck"
XCOM_OFFLINE = "offline"
XCOM_OUTCOME = "outcome"


def _app_config(app: str) -> AppConfig:
    try:
        return load_config().app(app)
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from exc


def plan_steps(app: AppConfig, environment: str, version: str, host: dict, artifact: dict) -> list[str]:
    """Every step a host goes through, with the concrete values, for logs and dry runs."""
    member = f"{host['address']}:{app.port}"
    t = app.timeouts
    return [
        f"health pre-check: process ({app.pid_file}) and GET http://{member}{app.health_path}; "
        "an unhealthy host is recorded and skipped",
        f"stage: download {artifact['url']} into {app.install_root}/releases/{version}, verify sha256 {artifact['sha256']}",
        f"silence alerts app={app.name} env={environment} host={host['name']} (ends by itself after {app.silence_minutes} min)",
        f"registry: disable {app.name}/{environment}/{host['name']}",
        f"load balancer: mark {member} down in upstream {app.name}",
        f"drain: wait up to {t.drain:g}s for in-flight connections to {member} to finish",
        f"quiet period: {t.quiet_period:g}s",
        f"restart: `{app.stop_command}` in current release, current -> releases/{version}, `{app.start_command}`",
        f"health: process up, GET http://{member}{app.health_path} = 200, version = {version}, within {t.startup:g}s",
        f"online: registry enable, load balancer up, expire silence (on failure: roll back to the previous release first)",
    ]


class VerifyArtifactOperator(BaseOperator):
    """Checks, before any host is touched, that the version exists in the artifact
    repository and its checksum is readable. Returns ``{filename, url, sha256}``."""

    template_fields: Sequence[str] = ("app", "version")
    ui_color = "#e8f4fd"

    def __init__(self, *, app: str, version: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.version = version

    def execute(self, context: Context) -> dict:
        from gantry.adapters import artifact_repository
        from gantry.hooks.artifacts import ArtifactNotFound

        try:
            version = plan.validate_version(self.version)
        except plan.PlanError as exc:
            raise AirflowFailException(str(exc)) from exc
        app = _app_config(self.app)
        filename = app.package_name(version)
        repo = artifact_repository()
        try:
            sha256 = repo.checksum(app.name, version, filename)
        except ArtifactNotFound as exc:
            raise AirflowFailException(f"{exc}. No host was touched.") from exc
        url = repo.package_url(app.name, version, filename)
        self.log.info("artifact %s sha256=%s at %s", filename, sha256, url)
        return {"filename": filename, "url": url, "sha256": sha256}


class ResolveHostsOperator(BaseOperator):
    """Reads the app's hosts in this environment from the CMDB, applies the requested subset
    and plans the batches. Returns one record per host to map over (empty on a dry run,
    after logging the exact per-host plan)."""

    template_fields: Sequence[str] = ("app", "version", "hosts", "batch_size", "dry_run", "artifact")
    ui_color = "#e8f4fd"

    def __init__(self, *, app: str, version: str, environment: str, artifact: Any,
                 hosts: Any = None, batch_size: Any = None, dry_run: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.app, self.version, self.environment = app, version, environment
        self.artifact, self.hosts, self.batch_size, self.dry_run = artifact, hosts, batch_size, dry_run

    def execute(self, context: Context) -> list[dict]:
        from gantry.adapters import cmdb

        config = load_config()
        env = config.environment(self.environment)
        app = _app_config(self.app)
        try:
            hosts = plan.select_hosts(cmdb(config, env).hosts(app.name, env.name), self.hosts)
            batches = plan.plan_batches(len(hosts), int(self.batch_size or env.batch_size))
        except plan.PlanError as exc:
            raise AirflowFailException(str(exc)) from exc
        records = plan.assign_batches(hosts, batches)
        steps = plan_steps(app, env.name, self.version, {"name": "<host>", "address": "<address>"}, self.artifact)
        self.log.info("%s", plan.render_plan(app.name, env.name, self.version, records, []))
        if self.dry_run:
            for r in records:
                self.log.info("%s (batch %d):\n  %s", r["name"], r["batch"] + 1,
                              "\n  ".join(plan_steps(app, env.name, self.version, r, self.artifact)))
            self.log.info("dry run: nothing was touched")
            return []
        self.log.info("each host: %s", " -> ".join(s.split(":")[0] for s in steps))
        return records


class HostStepOperator(BaseOperator):
    """Base of the per-host steps. ``host`` is one record from ResolveHostsOperator."""

    template_fields: Sequence[str] = ("host", "app", "version", "environment")
    ui_color = "#fdf6e3"

    def __init__(self, *, host: Any, app: str, version: str, environment: str, **kwargs) -> None:
        kwargs.setdefault("map_index_template", "{{ task.host['name'] }}")
        super().__init__(**kwargs)
        self.host, self.app, self.version, self.environment = host, app, version, environment

    @property
    def app_config(self) -> AppConfig:
        return _app_config(self.app)

    @property
    def member(self) -> str:
        return f"{self.host['address']}:{self.app_config.port}"

    def ssh(self) -> GantrySSHHook:
        from gantry.hooks.ssh import GantrySSHHook

        if not hasattr(self, "_ssh"):
            self._ssh = GantrySSHHook(remote_host=self.host["address"], port=int(self.host["ssh_port"]))
        return self._ssh

    def remote(self, script: str, timeout: float | None = None) -> RemoteResult:
        return self.ssh().run(script, timeout=timeout or self.app_config.timeouts.command)

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

    def pull(self, context: Context, task: str, key: str) -> Any:
        return context["ti"].xcom_pull(task_ids=f"{HOST_GROUP}.{task}", key=key,
                                       map_indexes=context["ti"].map_index)


class HostPrecheckOperator(HostStepOperator):
    """Step 2: is the service healthy on this host now? An unhealthy host is recorded and
    skipped, not made worse; a host already running the version is skipped as done."""

    def execute(self, context: Context) -> dict:
        probe = self.probe()
        record = {"host": self.host["name"], "current": probe.get("current") or None,
                  "healthy": self.is_healthy(probe), "probe": probe}
        if not record["healthy"]:
            record["skip"] = plan.SKIPPED_UNHEALTHY
            record["reason"] = (f"unhealthy before the release (process={probe.get('process')}, "
                                f"health={probe.get('health')}); left as it was")
        elif record["current"] == self.version:
            record["skip"] = plan.RELEASED
            record["reason"] = f"already running {self.version}"
        context["ti"].xcom_push(key=XCOM_PRECHECK, value=record)
        if record.get("skip"):
            raise AirflowSkipException(f"{self.host['name']}: {record['reason']}")
        self.log.info("%s healthy on %s", self.host["name"], record["current"])
        return record


class StagePackageOperator(HostStepOperator):
    """Step 3: download the package into a new release directory and verify its sha256."""

    template_fields: Sequence[str] = (*HostStepOperator.template_fields, "artifact")

    def __init__(self, *, artifact: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.artifact = artifact

    def execute(self, context: Context) -> None:
        from gantry import remote

        script = remote.stage_script(self.app_config, self.version, self.artifact["url"], self.artifact["sha256"])
        result = self.remote(script)
        if result.exit_code == remote.EXIT_CHECKSUM:
            raise AirflowFailException(
                f"{self.host['name']}: checksum mismatch for {self.artifact['filename']} - tampered or corrupt "
                f"artifact; the host was not taken out of rotation and still runs its previous release")
        if result.exit_code == remote.EXIT_NOT_FOUND:
            raise AirflowFailException(f"{self.host['name']}: {result.stderr.strip()}")
        if not result.ok:
            raise RuntimeError(f"staging failed ({result.exit_code}): {result.stderr.strip()}")


class TakeOfflineOperator(HostStepOperator):
    """Steps 4-5: silence monitoring, leave the registry, leave the load balancer, let
    in-flight requests drain, then a quiet period. Every call is idempotent."""

    def execute(self, context: Context) -> None:
        from gantry import adapters, remote

        app, name = self.app_config, self.host["name"]
        # Recorded before any change, so BringOnlineOperator knows this host may be out.
        context["ti"].xcom_push(key=XCOM_OFFLINE, value={"started": time.time()})
        silence_id = adapters.silencer().silence(
            app.name, self.environment, name, minutes=app.silence_minutes,
            comment=f"gantry: releasing {app.name} {self.version} ({context['run_id']})")
        self.log.info("silenced alerts for %s (silence %s)", name, silence_id)
        adapters.registry().disable(app.name, self.environment, name, reason=f"release {self.version}")
        self.log.info("disabled %s in the registry", name)
        changed = adapters.load_balancer().disable(app.name, self.host["address"], app.port)
        self.log.info("load balancer: %s %s", self.member, "marked down" if changed else "was already down")
        self.remote(remote.drain_script(app, self.host["address"], app.timeouts.drain),
                    timeout=app.timeouts.drain + 30)
        self.log.info("quiet period %.1fs", app.timeouts.quiet_period)
        time.sleep(app.timeouts.quiet_period)


class RestartAppOperator(HostStepOperator):
    """Step 6: stop with the app's stop command, switch ``current``, start with its start command."""

    def execute(self, context: Context) -> None:
        from gantry import remote

        result = self.remote(remote.restart_script(self.app_config, self.version))
        if result.exit_code == remote.EXIT_NOT_FOUND:
            raise AirflowFailException(f"{self.host['name']}: {result.stderr.strip()}")
        if not result.ok:
            raise RuntimeError(f"restart failed ({result.exit_code}): {result.stderr.strip()}")


class BringOnlineOperator(HostStepOperator):
    """Step 7, and the guarantee that no host is left out of rotation.

    Runs whatever happened upstream (trigger rule ``all_done``). If this run took the host
    offline: a healthy new release goes back online; an unhealthy one is rolled back to the
    previous release first and this task then fails with the reason. Pushes the host's
    outcome (``XCOM_OUTCOME``) for the run report.
    """

    def execute(self, context: Context) -> dict:
        pre = self.pull(context, "precheck", XCOM_PRECHECK)
        offline = self.pull(context, "take_offline", XCOM_OFFLINE)
        name = self.host["name"]
        if pre is None:
            return self._finish(context, plan.NOT_STARTED, "not started: an earlier batch failed or the pre-check "
                                                           "could not reach the host")
        if pre.get("skip"):
            return self._finish(context, pre["skip"], pre["reason"])
        if offline is None:
            return self._finish(context, plan.NOT_DRAINED,
                                f"never taken out of rotation; still on {pre['current']}")

        app = self.app_config
        previous = pre["current"]
        probe = self.probe(expect_version=self.version)
        if self.is_healthy(probe, self.version):
            self._online()
            return self._finish(context, plan.RELEASED, f"{previous} -> {self.version}")

        if probe.get("current") == self.version and previous:
            self.log.warning("%s: %s is not healthy (%s); rolling back to %s", name, self.version, probe, previous)
            from gantry import remote
            self.remote(remote.restart_script(app, previous))
            outcome, reason = plan.ROLLED_BACK, (
                f"{self.version} did not become healthy within {app.timeouts.startup:g}s "
                f"(last probe {probe}); rolled back to {previous}")
        else:
            outcome, reason = plan.RESTORED, f"restart to {self.version} did not complete; still on {probe.get('current')}"
            if not self.is_healthy(probe):
                from gantry import remote
                self.remote(remote.restart_script(app, probe.get("current") or previous))

        if not self._wait_healthy(previous, app.timeouts.startup):
            reason += f"; {previous} is not healthy either: LEFT OUT OF ROTATION and silenced, needs a human"
            self._finish(context, plan.LEFT_OUT, reason, push_only=True)
            raise AirflowFailException(f"{name}: {reason}")
        self._online()
        if outcome == plan.ROLLED_BACK:
            self._finish(context, outcome, reason + ", back in rotation", push_only=True)
            raise AirflowFailException(f"{name}: {reason}; back in rotation on {previous}")
        return self._finish(context, outcome, reason + ", back in rotation")

    def _wait_healthy(self, version: str | None, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.is_healthy(self.probe(expect_version=version), version):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)

    def _online(self) -> None:
        from gantry import adapters

        app, name = self.app_config, self.host["name"]
        adapters.registry().enable(app.name, self.environment, name)
        self.log.info("enabled %s in the registry", name)
        adapters.load_balancer().enable(app.name, self.host["address"], app.port)
        self.log.info("load balancer: %s back in upstream %s", self.member, app.name)
        expired = adapters.silencer().unsilence(app.name, self.environment, name)
        self.log.info("expired %d silence(s) for %s", expired, name)

    def _finish(self, context: Context, outcome: str, reason: str, push_only: bool = False) -> dict:
        record = {"host": self.host["name"], "batch": self.host["batch"], "outcome": outcome, "reason": reason}
        context["ti"].xcom_push(key=XCOM_OUTCOME, value=record)
        self.log.info("%s: %s - %s", record["host"], outcome, reason)
        return record


class ReleaseReportOperator(BaseOperator):
    """Summarises every host's outcome and fails the run unless every host was released or
    deliberately skipped as unhealthy."""

    template_fields: Sequence[str] = ("app", "version", "dry_run")
    ui_color = "#e8f4fd"

    def __init__(self, *, app: str, version: str, environment: str, dry_run: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.app, self.version, self.environment, self.dry_run = app, version, environment, dry_run

    def execute(self, context: Context) -> dict:
        pulled = context["ti"].xcom_pull(task_ids=f"{HOST_GROUP}.bring_online", key=XCOM_OUTCOME) or []
        # One mapped instance comes back as a single value, several as a list.
        outcomes = [o for o in ([pulled] if isinstance(pulled, dict) else pulled) if o]
        if self.dry_run and not outcomes:
            self.log.info("dry run of %s %s in %s: nothing was touched", self.app, self.version, self.environment)
            return {"dry_run": True, "hosts": []}
        ok, summary = plan.run_verdict(outcomes)
        lines = [f"{o['host']:24s} batch {o['batch'] + 1:<3d} {o['outcome']:22s} {o['reason']}" for o in outcomes]
        self.log.info("release %s %s in %s: %s\n%s", self.app, self.version, self.environment, summary,
                      "\n".join(lines))
        if not ok:
            raise AirflowFailException(f"release of {self.app} {self.version} in {self.environment} did not "
                                       f"complete: {summary}")
        return {"summary": summary, "hosts": outcomes}
