"""Schema migrations, once per environment, under a lock: up before any host on a promotion,
checked before and run after the hosts on a rollback (expand/contract)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from gantry.operators.host import app_config as _app_config

if TYPE_CHECKING:
    from airflow.sdk import Context


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
        from gantry.hooks.migrations import extract_migrations, scratch_dir, script_has, script_head

        app = _app_config(self.app)
        if not app.migrations:
            self.log.info("%s declares no schema migrations", app.name)
            return None
        repo = adapters.artifact_repository()
        hook = adapters.schema_migrations(app.migrations.connection_id(app.name, self.environment))
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
