"""Gantry's declarative configuration (config/gantry.yaml): apps and environments.

Plain Python: DAG files read it at parse time (a local file, no network), operators at run time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "config" / "gantry.yaml"


class ConfigError(ValueError):
    """The configuration or a request is inconsistent with it."""


@dataclass(frozen=True)
class Timeouts:
    startup: float = 60
    drain: float = 30
    quiet_period: float = 5
    command: float = 120


@dataclass(frozen=True)
class Migrations:
    """Schema migrations an app ships in its package (Alembic script directory)."""
    path: str = "migrations"                 # inside the package
    connection: str = "gantry_db_{app}_{env}"  # Airflow Connection of the environment's database

    def connection_id(self, app: str, env: str) -> str:
        return self.connection.format(app=app, env=env)


@dataclass(frozen=True)
class AppConfig:
    name: str
    package: str
    install_root: str
    port: int
    start_command: str
    stop_command: str
    pid_file: str
    health_path: str = "/health"
    version_path: str | None = "/version"
    timeouts: Timeouts = field(default_factory=Timeouts)
    silence_minutes: int = 60
    keep_releases: int = 5
    description: str = ""
    migrations: Migrations | None = None

    def package_name(self, version: str) -> str:
        return self.package.format(version=version)

    @property
    def package_kind(self) -> str:
        for kind in ("tar.gz", "tgz", "jar", "war"):
            if self.package.endswith("." + kind):
                return "tar.gz" if kind == "tgz" else kind
        raise ConfigError(f"app {self.name}: package {self.package!r} is not a .tar.gz, .jar or .war")


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    cmdb: str = "inventory"
    # Batch plan: "N" (fixed batches of N) or cumulative steps "1, 10%, 50%, 100%" (canary first).
    batches: str = "1"
    max_unavailable: str | None = None   # count or % of hosts out of rotation at once
    failure_threshold: str | None = None  # failed hosts (count or %) that halt the rollout; default 1
    bake_seconds: float = 0              # pause after each batch before the next one starts
    lb_pool: str = "{app}-{env}"         # the app's pool (nginx upstream) in this environment
    confirm_between_batches: bool = False  # a human confirms before each batch after the first
    on_threshold: str = "halt"           # failure threshold reached: "halt" or "pause" (ask a human)
    approvers: tuple[str, ...] = ()      # Airflow users who may answer; empty: any user with access
    approval_timeout_minutes: float = 60
    upstream: str | None = None          # a version must have succeeded there first (verified upstream)
    soak_minutes: float = 0              # ... and been current there for at least this long
    approval: bool = False               # a human approves the release before any host
    auto_promote: bool = False           # a success here starts the next environment's promotion
    promote_to: str | None = None        # ... this one
    window: dict | None = None           # release window and freezes (gantry.windows)
    # Releases start when the window opens: approved versions wait in the ledger's queue
    # (gantry_queue_<env>) and gantry_scheduled_<env> releases the newest one per app.
    scheduled_release: bool = False
    notify: tuple[str, ...] = ()         # addresses alerted on failure, success and waiting approvals
    retries: int = 2
    retry_delay_seconds: float = 5
    description: str = ""

    def pool(self, app: str) -> str:
        return self.lb_pool.format(app=app, env=self.name)


@dataclass(frozen=True)
class GantryConfig:
    apps: dict[str, AppConfig]
    environments: dict[str, EnvironmentConfig]
    inventory_path: Path

    def next_environment(self, name: str) -> EnvironmentConfig | None:
        """Where a success in ``name`` is promoted next, if anywhere."""
        target = self.environments[name].promote_to
        return self.environments.get(target) if target else None

    def app(self, name: str) -> AppConfig:
        try:
            return self.apps[name]
        except KeyError:
            raise ConfigError(f"unknown app {name!r}; configured: {sorted(self.apps)}") from None

    def environment(self, name: str) -> EnvironmentConfig:
        try:
            return self.environments[name]
        except KeyError:
            raise ConfigError(f"unknown environment {name!r}; configured: {sorted(self.environments)}") from None


def _app(name: str, raw: dict[str, Any]) -> AppConfig:
    raw = dict(raw)
    timeouts = Timeouts(**raw.pop("timeouts", {}))
    migrations = raw.pop("migrations", None)
    cfg = AppConfig(name=name, timeouts=timeouts, migrations=Migrations(**migrations) if migrations else None, **raw)
    cfg.package_kind  # validate early
    if not cfg.install_root.startswith("/") or "'" in cfg.install_root:
        raise ConfigError(f"app {name}: install_root must be an absolute path")
    return cfg


def parse_config(raw: dict[str, Any], base_dir: Path) -> GantryConfig:
    apps = {name: _app(name, a) for name, a in (raw.get("apps") or {}).items()}
    envs = {}
    for name, e in (raw.get("environments") or {}).items():
        e = {k: (str(v) if k in ("batches", "max_unavailable", "failure_threshold") and v is not None else v)
             for k, v in (e or {}).items()}
        for key in ("approvers", "notify"):
            if key in e:
                e[key] = tuple(e[key] or ())
        if e.get("on_threshold", "halt") not in ("halt", "pause"):
            raise ConfigError(f"environment {name}: on_threshold must be 'halt' or 'pause'")
        envs[name] = EnvironmentConfig(name=name, **e)
    if not apps or not envs:
        raise ConfigError("configuration needs at least one app and one environment")
    for e in envs.values():
        for ref in ("upstream", "promote_to"):
            if getattr(e, ref) and getattr(e, ref) not in envs:
                raise ConfigError(f"environment {e.name}: unknown {ref} {getattr(e, ref)!r}")
        if e.scheduled_release and not e.window:
            raise ConfigError(f"environment {e.name}: scheduled_release needs a window to open")
        from gantry.windows import ReleaseWindow, WindowError
        try:
            ReleaseWindow.from_config(e.window)
        except WindowError as exc:
            raise ConfigError(f"environment {e.name}: window: {exc}") from exc
    # GANTRY_INVENTORY: an inventory file kept elsewhere (the local fleet writes its own).
    inventory = os.environ.get("GANTRY_INVENTORY") or base_dir / raw.get("inventory", "inventory.yaml")
    return GantryConfig(apps=apps, environments=envs, inventory_path=Path(inventory))


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> GantryConfig:
    p = Path(path)
    return parse_config(yaml.safe_load(p.read_text()) or {}, p.parent)


def load_config(path: str | os.PathLike | None = None) -> GantryConfig:
    p = Path(path or os.environ.get("GANTRY_CONFIG") or DEFAULT_PATH)
    return _load(str(p), p.stat().st_mtime)
