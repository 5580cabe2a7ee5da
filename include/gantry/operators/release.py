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
# Tasks before any host whose failure means the release was refused, not that it failed.
PRE_HOST_GATES = ("claim_release", "check_gates", "approve_release", "release_window", "check_migrations")
XCOM_PRECHECK = "precheck"
XCOM_OFFLINE = "offline"
XCOM_OUTCOME = "outcome"


def _app_config(app: str) -> AppConfig:
    try:
        return load_config().app(app)
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from exc


def _pool(app: str, environment: str) -> str:
    return load_config().environment(environment).pool(app)


def plan_steps(app: AppConfig, environment: str, version: str, host: dict, artifact: dict) -> list[str]:
    """Every step a host goes through, with the concrete values, for logs and dry runs."""
    member = f"{host['address']}:{app.port}"
    pool = _pool(app.name, environment)
    t = app.timeouts
    return [
        f"health pre-check: process ({app.pid_file}) and GET http://{member}{app.health_path}; "
        "an unhealthy host is recorded and skipped",
        f"stage: download {artifact['url']} into {app.install_root}/releases/{version}, verify sha256 {artifact['sha256']}",
        f"silence alerts app={app.name} env={environment} host={host['name']} (ends by itself after {app.silence_minutes} min)",
        f"registry: disable {app.name}/{environment}/{host['name']}",
        f"load balancer: mark {member} down in upstream {pool}",
        f"drain: wait up to {t.drain:g}s for in-flight connections to {member} to finish",
        f"quiet period: {t.quiet_period:g}s",
        f"restart: `{app.stop_command}` in current release, current -> releases/{version}, `{app.start_command}`",
        f"health: process up, GET http://{member}{app.health_path} = 200, version = {version}, within {t.startup:g}s",
        "online: registry enable, load balancer up, expire silence (on failure: roll back to the previous release first)",
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


class MigrateDatabaseOperator(BaseOperator):
    """Runs the app's schema migrations once for the environment, under a lock.

    ``direction="up"`` (promotion, before any host): upgrade to the version's head revision.
    ``direction="down"`` (rollback): downgrade to the target version's head with the down steps of
    the package that brought the current revision - only if that package declares its migrations
    reversible. ``check_only`` decides and refuses without changing anything (run before hosts).
    A failure here is deterministic: the run stops and no host is touched.
    """

    template_fields: Sequence[str] = ("app", "version", "artifact", "dry_run")
    ui_color = "#f3e8fd"

    def __init__(self, *, app: str, version: str, environment: str, artifact: Any, direction: str = "up",
                 check_only: bool = False, dry_run: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.app, self.version, self.environment, self.artifact = app, version, environment, artifact
        self.direction, self.check_only, self.dry_run = direction, check_only, dry_run

    def execute(self, context: Context) -> dict | None:
        from gantry import adapters
        from gantry.hooks.artifacts import ArtifactNotFound
        from gantry.hooks.migrations import (
            SchemaMigrationHook, extract_migrations, scratch_dir, script_has, script_head)

        app = _app_config(self.app)
        if not app.migrations:
            self.log.info("%s declares no schema migrations", app.name)
            return None
        repo = adapters.artifact_repository()
        hook = SchemaMigrationHook(app.migrations.connection_id(app.name, self.environment))
        where = f"{app.name} in {self.environment}"
        with scratch_dir() as tmp:
            try:  # the worker needs the package's migrations: it verifies the package itself
                package = repo.download(app.name, self.version, self.artifact["filename"], self.artifact["sha256"])
            except ArtifactNotFound as exc:
                raise AirflowFailException(f"{exc}. No host was touched.") from exc
            target_dir, _ = extract_migrations(package, app.migrations.path, tmp / "target")
            target = script_head(target_dir)
            with hook.locked(app.name, self.environment) as conn:
                current = hook.current_revision(conn)
                self.log.info("%s: database at revision %s; %s %s expects %s", where, current, app.name,
                              self.version, target)
                if current == target:
                    self.log.info("schema already at %s: nothing to migrate", target)
                    return {"from": current, "to": target}
                if current is None or script_has(target_dir, current):
                    return self._upgrade(hook, conn, target_dir, current, target, context)
                if self.direction == "up":
                    raise AirflowFailException(
                        f"{where}: the database is at revision {current}, newer than {self.version} knows "
                        f"({target}). Use the rollback DAG to go back, or release a version that includes "
                        f"{current}. No host was touched.")
                return self._downgrade(hook, conn, repo, tmp, app, current, target, context)

    def _upgrade(self, hook, conn, script_dir, current, target, context) -> dict:
        if self.dry_run or self.check_only:
            self.log.info("will upgrade %s -> %s%s", current, target, " (dry run)" if self.dry_run else "")
            return {"from": current, "to": target, "applied": False}
        try:
            hook.upgrade(conn, script_dir, target)
        except Exception as exc:
            raise AirflowFailException(
                f"schema migration of {self.app} in {self.environment} to {self.version} failed: {exc}. "
                "The database is left at the last revision that completed; no host was touched.") from exc
        hook.record(conn, self.app, self.environment, self.version, target, "up", context["run_id"])
        self.log.info("upgraded %s -> %s", current, target)
        return {"from": current, "to": target, "applied": True}

    def _downgrade(self, hook, conn, repo, tmp, app, current, target, context) -> dict:
        from gantry.hooks.migrations import extract_migrations

        source = hook.version_with_revision(conn, app.name, self.environment, current)
        if source is None:
            raise AirflowFailException(
                f"{app.name} in {self.environment}: the database is at revision {current}, which no Gantry "
                "release recorded, so its down steps are unknown. Migrate it by hand; no host was touched.")
        filename = app.package_name(source)
        package = repo.download(app.name, source, filename, repo.checksum(app.name, source, filename))
        source_dir, release = extract_migrations(package, app.migrations.path, tmp / "source")
        if not release.get("migrations_reversible", False):
            raise AirflowFailException(
                f"{app.name} {source} declares its migrations irreversible: the database cannot be taken "
                f"from {current} back to {target} automatically. Restore the database from a backup taken "
                f"before {source}, or roll forward with a fix. No host was touched.")
        if self.dry_run or self.check_only:
            self.log.info("will downgrade %s -> %s with the down steps of %s", current, target, source)
            return {"from": current, "to": target, "applied": False}
        hook.downgrade(conn, source_dir, target)
        hook.record(conn, app.name, self.environment, self.version, target, "down", context["run_id"])
        self.log.info("downgraded %s -> %s with the down steps of %s", current, target, source)
        return {"from": current, "to": target, "applied": True}


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
        from gantry.hooks.ssh import GantrySSHHook

        if self.version:
            try:
                return plan.validate_version(self.version)
            except plan.PlanError as exc:
                raise AirflowFailException(str(exc)) from exc
        config = load_config()
        app = _app_config(self.app)
        previous: dict[str, str | None] = {}
        for host in adapters.cmdb(config, config.environment(self.environment)).hosts(app.name, self.environment):
            hook = GantrySSHHook(remote_host=host.address, port=host.ssh_port)
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


class ResolveHostsOperator(BaseOperator):
    """Reads the app's hosts in this environment from the CMDB, applies the requested subset
    and plans the batches. Returns one record per host to map over (empty on a dry run,
    after logging the exact per-host plan)."""

    template_fields: Sequence[str] = ("app", "version", "hosts", "batches", "failure_threshold", "bake_seconds",
                                      "confirm_batches", "on_threshold", "dry_run", "artifact")
    ui_color = "#e8f4fd"

    def __init__(self, *, app: str, version: str, environment: str, artifact: Any,
                 hosts: Any = None, batches: Any = None, failure_threshold: Any = None, bake_seconds: Any = None,
                 confirm_batches: Any = None, on_threshold: Any = None, dry_run: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.confirm_batches, self.on_threshold = confirm_batches, on_threshold
        self.failure_threshold, self.bake_seconds = failure_threshold, bake_seconds
        self.app, self.version, self.environment = app, version, environment
        self.artifact, self.hosts, self.batches, self.dry_run = artifact, hosts, batches, dry_run

    def execute(self, context: Context) -> list[dict]:
        from gantry.adapters import cmdb

        config = load_config()
        env = config.environment(self.environment)
        app = _app_config(self.app)
        try:
            hosts = plan.select_hosts(cmdb(config, env).hosts(app.name, env.name), self.hosts)
            batch_plan = self.batches or env.batches
            batches = plan.parse_batch_plan(batch_plan, len(hosts))
            bound = plan.check_plan(batches, len(hosts), env.max_unavailable)
            threshold = plan.failure_threshold(self.failure_threshold or env.failure_threshold, len(hosts))
        except plan.PlanError as exc:
            raise AirflowFailException(f"{exc}. No host was touched.") from exc
        bake = float(env.bake_seconds if self.bake_seconds in (None, "") else self.bake_seconds)
        confirm = env.confirm_between_batches if self.confirm_batches is None else bool(self.confirm_batches)
        on_threshold = self.on_threshold or env.on_threshold
        self.log.info("batch plan %r: %s; at most %d host(s) out of rotation; failure threshold %d (%s); "
                      "bake %gs; human confirmation between batches: %s", batch_plan, [len(b) for b in batches],
                      bound, threshold, on_threshold, bake, confirm)
        records = plan.assign_batches(hosts, batches, threshold=threshold, bake_seconds=bake, confirm=confirm,
                                      on_threshold=on_threshold)
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
        changed = adapters.load_balancer().disable(_pool(app.name, self.environment), self.host["address"], app.port)
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
            self._cleanup(previous)
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
            self._finish(context, plan.LEFT_OUT, reason)
            raise AirflowFailException(f"{name}: {reason}")
        self._online()
        if outcome == plan.ROLLED_BACK:
            self._finish(context, outcome, reason + ", back in rotation")
            raise AirflowFailException(f"{name}: {reason}; back in rotation on {previous}")
        return self._finish(context, outcome, reason + ", back in rotation")

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
        pool = _pool(app.name, self.environment)
        adapters.load_balancer().enable(pool, self.host["address"], app.port)
        self.log.info("load balancer: %s back in upstream %s", self.member, pool)
        expired = adapters.silencer().unsilence(app.name, self.environment, name)
        self.log.info("expired %d silence(s) for %s", expired, name)

    def _finish(self, context: Context, outcome: str, reason: str) -> dict:
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
        ti = context["ti"]
        pulled = ti.xcom_pull(task_ids=f"{HOST_GROUP}.bring_online", key=XCOM_OUTCOME) or []
        # One mapped instance comes back as a single value, several as a list.
        outcomes = [o for o in ([pulled] if isinstance(pulled, dict) else pulled) if o]
        approved_by = plan.approver(ti.xcom_pull(task_ids="approve_release"))
        if self.dry_run and not outcomes:
            self._ledger(context, "dry_run", "dry run: nothing was touched", [], approved_by)
            self.log.info("dry run of %s %s in %s: nothing was touched", self.app, self.version, self.environment)
            return {"dry_run": True, "hosts": []}
        ok, summary = plan.run_verdict(outcomes)
        lines = [f"{o['host']:24s} batch {o['batch'] + 1:<3d} {o['outcome']:22s} {o['reason']}" for o in outcomes]
        self.log.info("release %s %s in %s: %s\n%s", self.app, self.version, self.environment, summary,
                      "\n".join(lines))
        if ok:
            self._ledger(context, "succeeded", summary, outcomes, approved_by)
            return {"summary": summary, "hosts": outcomes}
        stopped_at = [] if outcomes else self._failed_gates(context)
        status = "refused" if stopped_at else "failed"
        message = f"stopped at {stopped_at[0]}" if stopped_at else summary or "no host was released"
        self._ledger(context, status, message, outcomes, approved_by)
        raise AirflowFailException(f"release of {self.app} {self.version} in {self.environment} did not "
                                   f"complete: {message}")

    @staticmethod
    def _failed_gates(context: Context) -> list[str]:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        gates = [g for g in PRE_HOST_GATES if g in context["dag"].task_ids]
        states = RuntimeTaskInstance.get_task_states(dag_id=context["dag"].dag_id, task_ids=gates,
                                                     run_ids=[context["run_id"]]).get(context["run_id"], {})
        failed = {key for key, state in states.items() if state == "failed"}  # unmapped: keyed by task_id
        return [g for g in gates if g in failed]

    def _ledger(self, context: Context, status: str, message: str, hosts: list, approved_by: str | None) -> None:
        from gantry.hooks.ledger import LedgerHook

        LedgerHook().finish(context["dag"].dag_id, context["run_id"], status, message, hosts, approved_by)
