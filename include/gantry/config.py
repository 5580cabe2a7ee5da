"""Gantry's declarative configuration (config/gantry.yaml): apps and environments.

Plain Python: DAG files read it at parse time (a local file, no network), operators at run time.
"""
from __future__ import annotations

import difflib
import os
import re
import types
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Union, get_args, get_origin, get_type_hints

import yaml

from gantry.access import ACTIONS, APPROVE, DEFAULT_ACCESS, USER_ACTIONS, Access, Grant, access_with
from gantry.analysis import (
    DEFAULT_METRICS, DIRECTIONS, UNDECIDED_ACTIONS, AnalysisConfig, AnalysisError, MetricSpec)

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
    # Versions matching this regular expression (re.fullmatch) are special: their route passes
    # through every optional environment of the chain. A run's `special` param marks one too.
    special_versions: str | None = None
    # The app's RPC service as registries other than etcd name it: a Dubbo interface in
    # ZooKeeper (/dubbo/<rpc_service>/providers). Default: the app's name.
    rpc_service: str | None = None

    @property
    def service_name(self) -> str:
        return self.rpc_service or self.name

    def is_special(self, version: str) -> bool:
        return bool(self.special_versions and re.fullmatch(self.special_versions, version))

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
    cmdb: str = "inventory"                # inventory | http | netbox
    # Which RPC service registry and layer-7 load balancer hold this environment's instances
    # (README, Adapters): one name for every app, or per app {<app>: name, default: name}. Each
    # adapter has its own Airflow Connection.
    registry: str | dict = "etcd"        # etcd | zookeeper
    load_balancer: str | dict = "nginx"  # nginx | haproxy
    # Batch plan: "N" (fixed batches of N) or cumulative steps "1, 10%, 50%, 100%" (canary first).
    batches: str = "1"
    max_unavailable: str | None = None   # count or % of hosts out of rotation at once
    failure_threshold: str | None = None  # failed hosts (count or %) that halt the rollout; default 1
    bake_seconds: float = 0              # pause after each batch before the next one starts
    # After a host is back online, how long its new release must stay healthy before it counts:
    # a build that passes its health check and then crashes is taken out and rolled back.
    settle_seconds: float = 0
    lb_pool: str = "{app}-{env}"         # the app's pool (nginx upstream) in this environment
    # The Celery queue of this environment's release tasks: the workers that serve it sit in the
    # network zone that reaches its hosts (README, Scale-out). None: Airflow's default queue.
    queue: str | None = None
    confirm_between_batches: bool = False  # a human confirms before each batch after the first
    on_threshold: str = "halt"           # failure threshold reached: "halt" or "pause" (ask a human)
    # Airflow users who may answer; empty: any user whose role may approve. The short form of
    # access.approve.users, and always equal to it once loaded.
    approvers: tuple[str, ...] = ()
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
    # Only special versions must pass here; ordinary ones skip it (their gates and auto-promotion
    # go to the next environment of the chain), though one may still be released here by hand.
    optional: bool = False
    notify: tuple[str, ...] = ()         # addresses alerted on failure, success and waiting approvals
    retries: int = 2
    retry_delay_seconds: float = 5
    # Verifying a release from metrics (README, Analysis); None: not configured.
    analysis: AnalysisConfig | None = None
    # Who may release, roll back, approve, override and view (gantry.access; README, Who may do what).
    access: Access = DEFAULT_ACCESS
    description: str = ""

    def pool(self, app: str) -> str:
        return self.lb_pool.format(app=app, env=self.name)

    def registry_of(self, app: str) -> str:
        return adapter_of(self.registry, app, "etcd")

    def load_balancer_of(self, app: str) -> str:
        return adapter_of(self.load_balancer, app, "nginx")


def adapter_of(choice: str | dict, app: str, fallback: str) -> str:
    """An environment's ``registry`` or ``load_balancer`` for one app: the name, or the app's
    entry of a per-app mapping, else its ``default``, else ``fallback``."""
    if isinstance(choice, str):
        return choice
    return choice.get(app, choice.get("default", fallback))


@dataclass(frozen=True)
class GantryConfig:
    apps: dict[str, AppConfig]
    environments: dict[str, EnvironmentConfig]
    inventory_path: Path

    def next_environment(self, name: str) -> EnvironmentConfig | None:
        """Where a success in ``name`` is promoted next, if anywhere."""
        target = self.environments[name].promote_to
        return self.environments.get(target) if target else None

    def chain(self, name: str) -> tuple[str, ...]:
        """The promotion chain (``promote_to`` links, first to last) that ``name`` is on; an
        environment outside every chain is a chain of its own."""
        targets = {e.promote_to for e in self.environments.values() if e.promote_to}
        for head in (n for n, e in self.environments.items() if e.promote_to and n not in targets):
            chain, here = [], head
            while here is not None:
                chain.append(here)
                here = self.environments[here].promote_to
            if name in chain:
                return tuple(chain)
        return (name,)

    def route(self, name: str, special: bool) -> tuple[str, ...]:
        """The environments of ``name``'s chain a version must pass: all of them for a special
        version, all but the optional ones for an ordinary one."""
        return tuple(e for e in self.chain(name) if special or not self.environments[e].optional)

    def gate_environment(self, name: str, special: bool) -> str | None:
        """Where a version must have succeeded (and soaked) before it may enter ``name``: its
        ``upstream``, or, for an ordinary version whose upstream is optional, the nearest
        environment up the ``upstream`` links that is on its route. None: no gate."""
        here = self.environments[name].upstream
        while here is not None and self.environments[here].optional and not special:
            here = self.environments[here].upstream
        return here

    def next_on_route(self, name: str, special: bool) -> str | None:
        """Where a success in ``name`` auto-promotes this version: the next environment of the
        chain on its route."""
        here = self.environments[name].promote_to
        while here is not None and self.environments[here].optional and not special:
            here = self.environments[here].promote_to
        return here

    def promotion_targets(self, name: str) -> list[str]:
        """Every environment a success in ``name`` may auto-promote to, whatever the version:
        the next one and, while that is optional, the one after it."""
        targets, here = [], self.environments[name].promote_to
        while here is not None:
            targets.append(here)
            if not self.environments[here].optional:
                break
            here = self.environments[here].promote_to
        return targets

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


# Names become DAG ids, Connection ids, URL paths and registry keys.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
TOP_LEVEL_KEYS = ("apps", "environments", "inventory")
WINDOW_KEYS = ("timezone", "days", "hours", "freeze", "outside")
CMDB_ADAPTERS = ("inventory", "http", "netbox")
REGISTRY_ADAPTERS = ("etcd", "zookeeper")
LOAD_BALANCER_ADAPTERS = ("nginx", "haproxy")
# What each required app key is for: a missing one is named with its purpose.
REQUIRED_APP_KEYS = {
    "package": "the package's file name in the artifact repository, e.g. demo-{version}.tar.gz",
    "install_root": "the absolute directory on each host that holds releases/ and current",
    "port": "the TCP port the app serves on (health checks, load balancer, drain)",
    "start_command": "the command, run in the release directory, that starts the app",
    "stop_command": "the command, run in the release directory, that stops the app gracefully",
    "pid_file": "the file the app writes its process id to (health checks)",
}
# Numbers that must be above zero, or at least zero.
POSITIVE = {"port", "startup", "command", "silence_minutes", "keep_releases", "approval_timeout_minutes",
            "interval_seconds", "count", "weight"}
NOT_NEGATIVE = {"drain", "quiet_period", "settle_seconds", "bake_seconds", "soak_minutes", "retries", "retry_delay_seconds",
                "min_requests", "failure_limit", "inconclusive_limit", "max_increase"}


def _mapping(raw: Any, where: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__} {raw!r}")
    return raw


def _check_keys(raw: dict, known: Iterable[str], where: str) -> None:
    known = list(known)
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(known))}"
            raise ConfigError(f"{where}: unknown key {key!r}; {hint}")


def _fits(value: Any, hint: Any) -> bool:
    if get_origin(hint) in (Union, types.UnionType):
        return any(_fits(value, h) for h in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if get_origin(hint) is tuple:
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    if hint is dict or get_origin(hint) is dict:
        return isinstance(value, dict)
    return True  # nested sections are checked on their own


def _describe(hint: Any) -> str:
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_describe(h) for h in get_args(hint))
    return {type(None): "empty", bool: "true or false", int: "a whole number", float: "a number",
            str: "text", dict: "a mapping"}.get(hint, "a list of text" if get_origin(hint) is tuple else str(hint))


def _check_values(raw: dict, cls: type, where: str) -> None:
    """Types from the dataclass's annotations, and the ranges numbers must be in."""
    hints = get_type_hints(cls)
    for key, value in raw.items():
        if not _fits(value, hints[key]):
            raise ConfigError(f"{where}.{key}: {value!r} is not {_describe(hints[key])}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if key in POSITIVE and value <= 0 or key in NOT_NEGATIVE and value < 0:
                raise ConfigError(f"{where}.{key}: {value!r} must be {'above' if key in POSITIVE else 'at least'} 0")
    if "port" in raw and not raw["port"] < 65536:
        raise ConfigError(f"{where}.port: {raw['port']!r} is not a TCP port (1-65535)")


def _section(raw: Any, cls: type, where: str, exclude: tuple[str, ...] = ()) -> dict:
    raw = _mapping(raw, where)
    _check_keys(raw, (f.name for f in fields(cls) if f.name not in exclude), where)
    _check_values(raw, cls, where)
    return dict(raw)


def _template(text: str, where: str, **names: str) -> None:
    """A setting with placeholders must name only the ones it is given."""
    try:
        text.format(**names)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{where}: {text!r} may use only {', '.join('{%s}' % n for n in names)} "
                          f"as placeholders ({type(exc).__name__}: {exc})") from None


def _name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"{where}: name {name!r} must be up to 64 letters, digits, '_' or '-', "
                          "starting with a letter or digit")
    return name


def _app(name: str, raw: Any) -> AppConfig:
    where = f"apps.{name}"
    raw = _mapping(raw, where)
    _check_keys(raw, (f.name for f in fields(AppConfig) if f.name != "name"), where)
    nested = {key: raw.get(key) for key in ("timeouts", "migrations")}
    raw = {k: v for k, v in raw.items() if k not in nested}
    _check_values(raw, AppConfig, where)
    for key, purpose in REQUIRED_APP_KEYS.items():
        if key not in raw:
            raise ConfigError(f"{where}: {key} is missing: {purpose}")
        if isinstance(raw[key], str) and not raw[key].strip():
            raise ConfigError(f"{where}.{key} is empty: {purpose}")
    timeouts = Timeouts(**_section(nested["timeouts"], Timeouts, f"{where}.timeouts"))
    migrations = nested["migrations"]
    if migrations is not None:
        migrations = Migrations(**_section(migrations, Migrations, f"{where}.migrations"))
        _template(migrations.connection, f"{where}.migrations.connection", app=name, env="test")
    _template(raw["package"], f"{where}.package", version="1.0.0")
    if raw.get("special_versions") is not None:
        try:
            re.compile(raw["special_versions"])
        except re.error as exc:
            raise ConfigError(f"{where}.special_versions: {raw['special_versions']!r} is not a regular "
                              f"expression ({exc})") from None
    cfg = AppConfig(name=name, timeouts=timeouts, migrations=migrations, **raw)
    cfg.package_kind  # validate early
    if not cfg.install_root.startswith("/") or "'" in cfg.install_root:
        raise ConfigError(f"app {name}: install_root must be an absolute path")
    return cfg


def _window(raw: Any, where: str) -> dict | None:
    """A release window, refused when it is not one ``gantry.windows`` reads as meant."""
    from gantry.windows import DAYS, ReleaseWindow, WindowError

    if raw is None:
        return None
    raw = _mapping(raw, where)
    _check_keys(raw, WINDOW_KEYS, where)
    for key in ("days", "hours", "freeze"):
        if key in raw and not isinstance(raw[key], list):
            raise ConfigError(f"{where}.{key}: expected a list, got {raw[key]!r}")
        if key in ("days", "hours") and key in raw and not raw[key]:
            raise ConfigError(f"{where}.{key} is empty: the window would never open")
    for day in raw.get("days", []):
        if not isinstance(day, str) or day.strip().lower()[:3] not in DAYS or len(day.strip()) < 3:
            raise ConfigError(f"{where}.days: {day!r} is not a weekday ({', '.join(DAYS)})")
    for hours in raw.get("hours", []):
        if not isinstance(hours, str) or hours.count("-") != 1:
            raise ConfigError(f"{where}.hours: {hours!r} is not a time range like \"10:00-16:00\"")
    try:
        ReleaseWindow.from_config(raw)
    except (WindowError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return raw


def _metric(raw: Any, where: str) -> MetricSpec:
    """A metric of an analysis. One named like a default metric (error_ratio, latency_p99) takes
    the default's settings for every key it leaves out; any other needs its own query."""
    raw = _mapping(raw, where)
    _check_keys(raw, (f.name for f in fields(MetricSpec)), where)
    _check_values(raw, MetricSpec, where)
    name = raw.get("name")
    _name(name, where)
    defaults = {m.name: m for m in DEFAULT_METRICS}
    base = {f.name: getattr(defaults[name], f.name) for f in fields(MetricSpec)} if name in defaults else {}
    if not base and not raw.get("query"):
        raise ConfigError(f"{where} ({name}): query is missing: the PromQL template giving the metric's value "
                          f"(defaults exist for {', '.join(defaults)})")
    merged = {**base, **raw}
    where = f"{where} ({name})"
    if merged.get("direction", "increase") not in DIRECTIONS:
        raise ConfigError(f"{where}.direction must be one of {', '.join(DIRECTIONS)}, not {merged['direction']!r}")
    if merged.get("min_requests", MetricSpec.min_requests) > 0 and not merged.get("requests_query"):
        raise ConfigError(f"{where}: min_requests needs requests_query (the PromQL template counting the "
                          "requests of a measurement), or set min_requests: 0")
    if merged.get("min") is not None and merged.get("max") is not None and merged["min"] > merged["max"]:
        raise ConfigError(f"{where}: min {merged['min']!r} is above max {merged['max']!r}: no value could pass")
    try:
        return MetricSpec(**merged)
    except AnalysisError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _analysis(raw: Any, where: str) -> AnalysisConfig:
    """An environment's analysis; an empty mapping is the defaults (README, Analysis)."""
    raw = dict(_mapping(raw, where))
    _check_keys(raw, (f.name for f in fields(AnalysisConfig)), where)
    metrics = raw.pop("metrics", None)
    _check_values(raw, AnalysisConfig, where)
    for key in ("pass_score", "marginal_score"):
        if key in raw and not 0 <= raw[key] <= 100:
            raise ConfigError(f"{where}.{key}: {raw[key]!r} is not a score from 0 to 100")
    if raw.get("marginal_score", 75) > raw.get("pass_score", 95):
        raise ConfigError(f"{where}.marginal_score {raw.get('marginal_score', 75)!r} is above pass_score "
                          f"{raw.get('pass_score', 95)!r}: a marginal score lies below the passing one")
    if "significance" in raw and not 0 < raw["significance"] < 1:
        raise ConfigError(f"{where}.significance: {raw['significance']!r} is not a p-value between 0 and 1 "
                          "(0.05: 95 % confidence)")
    for key in ("on_marginal", "on_inconclusive", "on_unreachable"):
        if key in raw and raw[key] not in UNDECIDED_ACTIONS:
            raise ConfigError(f"{where}.{key} must be ask or halt, not {raw[key]!r}")
    if metrics is not None:
        if not isinstance(metrics, list) or not metrics:
            raise ConfigError(f"{where}.metrics: expected a list of metrics, got {metrics!r}")
        specs = tuple(_metric(m, f"{where}.metrics[{i}]") for i, m in enumerate(metrics))
        names = [m.name for m in specs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"{where}.metrics: {twice[0]!r} is named twice; each metric needs a name of its own")
        raw["metrics"] = specs
    return AnalysisConfig(**raw)


# An access entry's names: FAB role names and Airflow user names (FAB allows 64 characters).
MAX_NAME_LENGTH = 64


def _names(raw: Any, where: str) -> tuple[str, ...]:
    """A list of role or user names, each once, in the given order."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of names, got {raw!r}")
    for name in raw:
        if not isinstance(name, str) or not name.strip() or name != name.strip() or len(name) > MAX_NAME_LENGTH:
            raise ConfigError(f"{where}: {name!r} is not a name (text of 1 to {MAX_NAME_LENGTH} characters, "
                              "without spaces around it)")
    return tuple(dict.fromkeys(raw))


def _grant(raw: Any, action: str, where: str) -> Grant:
    """One action's grant: a list of role names, or ``{roles: [...], users: [...]}``. A mapping
    without ``roles`` keeps the action's default roles and narrows them to its users."""
    if isinstance(raw, list):
        raw = {"roles": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a list of role names or a mapping with roles and users, got {raw!r}")
    _check_keys(raw, ("roles", "users"), where)
    if raw.get("users") and action not in USER_ACTIONS:
        raise ConfigError(f"{where}.users: Airflow grants {action} to roles only (FAB's DAG permissions), so name "
                          f"a role here; users may be listed under {' and '.join(USER_ACTIONS)}")
    roles = _names(raw["roles"], f"{where}.roles") if "roles" in raw else DEFAULT_ACCESS.grant(action).roles
    return Grant(roles=roles, users=_names(raw.get("users"), f"{where}.users"))


def _access(raw: Any, where: str) -> Access:
    """An environment's access section; each action it names replaces that action's default."""
    raw = _mapping(raw, where)
    _check_keys(raw, ACTIONS, where)
    return access_with(DEFAULT_ACCESS, {action: _grant(value, action, f"{where}.{action}")
                                        for action, value in raw.items()})


def _with_approvers(access: Access, approvers: tuple[str, ...], raw_access: Any, where: str) -> Access:
    """``approvers`` is the short form of ``access.approve.users``: one of the two names them."""
    if not approvers:
        return access
    approve = raw_access.get(APPROVE) if isinstance(raw_access, dict) else None
    if isinstance(approve, dict) and approve.get("users"):
        raise ConfigError(f"{where}: approvers and access.approve.users both name who may approve; keep one "
                          "(approvers is the short form of access.approve.users)")
    return access_with(access, {APPROVE: Grant(roles=access.approve.roles, users=approvers)})


def _environment(name: str, raw: Any) -> EnvironmentConfig:
    from gantry.plan import PlanError, validate_amount, validate_batch_plan

    where = f"environments.{name}"
    e = _mapping(raw, where)
    _check_keys(e, (f.name for f in fields(EnvironmentConfig) if f.name != "name"), where)
    # YAML reads `batches: 2` as a number; the plan is text either way.
    e = {k: (str(v) if k in ("batches", "max_unavailable", "failure_threshold") and isinstance(v, int)
             and not isinstance(v, bool) else v) for k, v in e.items()}
    _check_values(e, EnvironmentConfig, where)
    try:
        if "batches" in e:
            validate_batch_plan(e["batches"])
        for key in ("max_unavailable", "failure_threshold"):
            if e.get(key) is not None:
                validate_amount(e[key], key)
    except PlanError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    for key in ("approvers", "notify"):
        if key in e:
            e[key] = tuple(e[key] or ())
    if e.get("on_threshold", "halt") not in ("halt", "pause"):
        raise ConfigError(f"{where}.on_threshold must be 'halt' or 'pause', not {e['on_threshold']!r}")
    if e.get("cmdb", "inventory") not in CMDB_ADAPTERS:
        raise ConfigError(f"{where}.cmdb must be one of {', '.join(CMDB_ADAPTERS)}, not {e['cmdb']!r}")
    for key, known in (("registry", REGISTRY_ADAPTERS), ("load_balancer", LOAD_BALANCER_ADAPTERS)):
        choices = e[key] if isinstance(e.get(key), dict) else {"": e[key]} if key in e else {}
        for app, choice in choices.items():
            if choice not in known:
                at = f"{where}.{key}.{app}" if app else f"{where}.{key}"
                raise ConfigError(f"{at} must be one of {', '.join(known)}, not {choice!r}")
    if "lb_pool" in e:
        _template(e["lb_pool"], f"{where}.lb_pool", app="demo", env=name)
    if e.get("queue") is not None and not NAME_PATTERN.fullmatch(e["queue"]):
        raise ConfigError(f"{where}.queue {e['queue']!r}: a queue name is letters, digits, '-' and '_' "
                          "(it names a Celery queue and a worker's --queues)")
    e["window"] = _window(e.get("window"), f"{where}.window")
    if "analysis" in e:
        e["analysis"] = _analysis(e["analysis"], f"{where}.analysis")
    raw_access = e.get("access")
    access = _access(raw_access, f"{where}.access")
    e["access"] = _with_approvers(access, e.get("approvers", ()), raw_access, where)
    e["approvers"] = e["access"].approve.users
    return EnvironmentConfig(name=name, **e)


def _check_chain(envs: dict[str, EnvironmentConfig]) -> None:
    """References name configured environments, and never lead back where they started: a cycle of
    promote_to would promote forever, one of upstream could never be entered."""
    for e in envs.values():
        for ref in ("upstream", "promote_to"):
            target = getattr(e, ref)
            if target is not None and target not in envs:
                raise ConfigError(f"environments.{e.name}.{ref}: unknown environment {target!r}; "
                                  f"configured: {', '.join(envs)}")
        if e.auto_promote and not e.promote_to:
            raise ConfigError(f"environments.{e.name}: auto_promote needs promote_to (where to promote next)")
        if e.scheduled_release and not e.window:
            raise ConfigError(f"environments.{e.name}: scheduled_release needs a window to open")
    _check_optional(envs)
    for ref in ("promote_to", "upstream"):
        for first in envs:
            path, here = [first], getattr(envs[first], ref)
            while here is not None:
                path.append(here)
                if here == first:
                    raise ConfigError(f"environments: {ref} forms a cycle: {' -> '.join(path)}")
                if path.count(here) > 1:
                    break  # a cycle that does not pass through ``first``: reported from its own members
                here = getattr(envs[here], ref)


def _check_optional(envs: dict[str, EnvironmentConfig]) -> None:
    """An optional environment sits inside a chain: ordinary versions skip it, so it needs an
    environment before it (that promotes to it) and one after it (that the skip lands on)."""
    promoted_to = {e.promote_to: e.name for e in envs.values() if e.promote_to}
    for e in envs.values():
        if not e.optional:
            continue
        if e.name not in promoted_to:
            raise ConfigError(f"environments.{e.name}: optional, but no environment promotes to it (promote_to): "
                              "an optional environment cannot be the first of a chain, or no version would "
                              "ever be routed through it")
        if not e.promote_to:
            raise ConfigError(f"environments.{e.name}: optional, but it promotes nowhere (promote_to): an optional "
                              "environment cannot be the last of a chain, or ordinary versions, which skip it, "
                              "would have nowhere to go")


def _check_upstream_order(envs: dict[str, EnvironmentConfig]) -> None:
    """A gate names an environment before it on its chain: one after it could never be passed
    first, and the environment would be unreachable."""
    config = GantryConfig(apps={}, environments=envs, inventory_path=Path("."))
    for e in envs.values():
        chain = config.chain(e.name)
        if e.upstream in chain and e.name in chain and chain.index(e.upstream) > chain.index(e.name):
            raise ConfigError(f"environments.{e.name}.upstream: {e.upstream} comes after {e.name} on the chain "
                              f"{' -> '.join(chain)}: no version could pass it first, so {e.name} "
                              "would be unreachable")


def parse_config(raw: Any, base_dir: Path) -> GantryConfig:
    raw = _mapping(raw, "top level")
    _check_keys(raw, TOP_LEVEL_KEYS, "top level")
    apps = {_name(name, "apps"): _app(name, a) for name, a in _mapping(raw.get("apps"), "apps").items()}
    envs = {_name(name, "environments"): _environment(name, e)
            for name, e in _mapping(raw.get("environments"), "environments").items()}
    if not apps or not envs:
        raise ConfigError("configuration needs at least one app (apps:) and one environment (environments:)")
    _check_chain(envs)
    _check_upstream_order(envs)
    for env in envs.values():
        for key in ("registry", "load_balancer"):
            unknown = sorted(set(getattr(env, key)) - set(apps) - {"default"}) if isinstance(getattr(env, key), dict) else []
            if unknown:
                raise ConfigError(f"environments.{env.name}.{key}: {unknown[0]!r} is not a configured app "
                                  f"(keys are app names or 'default'; apps: {sorted(apps)})")
    if not isinstance(raw.get("inventory", ""), str):
        raise ConfigError(f"inventory: {raw['inventory']!r} is not a file name")
    # GANTRY_INVENTORY: an inventory file kept elsewhere (the local fleet writes its own).
    inventory = os.environ.get("GANTRY_INVENTORY") or base_dir / raw.get("inventory", "inventory.yaml")
    return GantryConfig(apps=apps, environments=envs, inventory_path=Path(inventory))


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> GantryConfig:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    try:
        return parse_config(raw, p.parent)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def load_config(path: str | os.PathLike | None = None) -> GantryConfig:
    """The configuration, read again when the file changes. Every mistake in it is a ConfigError
    naming the file and the key: a DAG file that loads it fails to import, and no run starts."""
    p = Path(path or os.environ.get("GANTRY_CONFIG") or DEFAULT_PATH)
    try:
        mtime = p.stat().st_mtime
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such configuration file (GANTRY_CONFIG names another one)") from None
    return _load(str(p), mtime)
