"""Who may do what in each environment, and how Airflow's FAB auth manager enforces it.

Per environment, config/gantry.yaml says who may ``release`` (trigger a promotion, queue a version
for a window, a dry run), ``rollback``, ``approve``, ``override`` (an emergency release outside the
window or in a freeze) and ``view``, as FAB role names and, for the decisions Gantry takes itself
(approve, override), user names. This module turns that into:

- each Gantry DAG's ``access_control`` (FAB's DAG-level permissions: ``DAGs`` and ``DAG Runs``),
- the FAB roles to create, each with the global permissions it needs to log in and act,
- who may answer an environment's approvals (the HITL ``assigned_users``),
- the emergency-override decision.

How FAB decides (apache-airflow-providers-fab 3.10, ``FabAuthManager.is_authorized_dag``): an
action on a DAG needs the DAG-level permission (``can_read`` for GET, ``can_edit`` for anything
else, on ``DAG:<dag_id>`` or globally on ``DAGs``) *and* the global permission on the sub-entity
(``DAG Runs``, ``Task Instances``, ``HITL Detail``). Triggering a run is ``can_create`` on
``DAG Runs``, granted here per DAG only (``DAG Run:<dag_id>``), never globally: a global one would
let every role that may edit a DAG (an approver answering in it) trigger it too. Answering a
human-in-the-loop request is ``can_edit`` on the DAG plus the global ``can_edit`` on ``HITL Detail``.

Plain Python: no Airflow import at module level (only ``configured_auth_manager`` reads Airflow's
configuration, where it is installed), so DAG files, the fleet and the unit tests use it cheaply.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

if TYPE_CHECKING:
    from gantry.config import EnvironmentConfig, GantryConfig

# The actions of the access section, in the order the README's table lists them.
RELEASE, ROLLBACK, APPROVE, OVERRIDE, VIEW = "release", "rollback", "approve", "override", "view"
ACTIONS = (RELEASE, ROLLBACK, APPROVE, OVERRIDE, VIEW)
# Gantry decides these itself at run time, so they may name users. The others are Airflow
# permissions, which FAB grants to roles only.
USER_ACTIONS = (APPROVE, OVERRIDE)

# The roles Gantry's defaults and the demo use.
VIEWER = "ReleaseViewer"
DEVELOPER = "Developer"
RELEASE_MANAGER = "ReleaseManager"
APPROVER = "Approver"
ON_CALL = "OnCall"
GANTRY_ROLES = (VIEWER, DEVELOPER, RELEASE_MANAGER, APPROVER, ON_CALL)
# FAB's own roles: FAB creates and resets them; Gantry never changes their permissions. Admin holds
# every permission globally, in Airflow and in Gantry's own decisions.
ADMIN = "Admin"
FAB_BUILTIN_ROLES = ("Public", "Viewer", "User", "Op", ADMIN)

# FAB resource and action names (airflow.providers.fab.www.security.permissions).
CAN_READ, CAN_EDIT, CAN_CREATE, CAN_DELETE, CAN_MENU = (
    "can_read", "can_edit", "can_create", "can_delete", "menu_access")
DAGS, DAG_RUNS, TASK_INSTANCES, HITL_DETAIL = "DAGs", "DAG Runs", "Task Instances", "HITL Detail"

Permission = tuple[str, str]  # (action, resource), as FAB names them
AccessControl = dict[str, dict[str, set[str]]]  # role -> {"DAGs" | "DAG Runs": actions}

# FAB's Viewer role (FabAirflowSecurityManagerOverride.VIEWER_PERMISSIONS) without its global
# ``can_read`` on ``DAGs``: with it a role reads every DAG; without it, only the DAGs whose
# access_control grants it. Every Gantry role has these, enough to log in and see the UI.
BASE_PERMISSIONS: frozenset[Permission] = frozenset({
    (CAN_READ, "DAG Dependencies"), (CAN_READ, "DAG Code"), (CAN_READ, DAG_RUNS),
    (CAN_READ, "DAG Versions"), (CAN_READ, "DAG Warnings"), (CAN_READ, "Assets"),
    (CAN_READ, "Asset Aliases"), (CAN_READ, "Backfills"), (CAN_READ, "Cluster Activity"),
    (CAN_READ, "Pools"), (CAN_READ, "ImportError"), (CAN_READ, "Jobs"), (CAN_READ, "My Password"),
    (CAN_EDIT, "My Password"), (CAN_READ, "My Profile"), (CAN_EDIT, "My Profile"),
    (CAN_READ, "SLA Misses"), (CAN_READ, TASK_INSTANCES), (CAN_READ, "Task Logs"), (CAN_READ, "XComs"),
    (CAN_READ, HITL_DETAIL), (CAN_READ, "Website"),
    (CAN_MENU, "Browse"), (CAN_MENU, DAGS), (CAN_MENU, "DAG Dependencies"), (CAN_MENU, DAG_RUNS),
    (CAN_MENU, "Assets"), (CAN_MENU, "Cluster Activity"), (CAN_MENU, "Documentation"), (CAN_MENU, "Docs"),
    (CAN_MENU, "Jobs"), (CAN_MENU, "SLA Misses"), (CAN_MENU, TASK_INSTANCES),
})
# Roles that release or roll back somewhere: mark a run failed, clear a host's task to retry it.
# FAB checks them together with ``can_edit`` on the DAG, so they reach only the DAGs the role may edit.
OPERATE_PERMISSIONS: frozenset[Permission] = frozenset({
    (CAN_EDIT, DAG_RUNS), (CAN_EDIT, TASK_INSTANCES),
})
# Roles that approve somewhere: answer a human-in-the-loop request, and the "Required actions" menu.
ANSWER_PERMISSIONS: frozenset[Permission] = frozenset({
    (CAN_EDIT, HITL_DETAIL), (CAN_MENU, HITL_DETAIL),
})

# Which action starts each per-environment DAG, and which DAGs hold approvals (the release
# approval, the confirmation between batches, the pause at the failure threshold).
TRIGGERED_BY = {"promote": RELEASE, "queue": RELEASE, "scheduled": RELEASE, "rollback": ROLLBACK}
HOLDS_APPROVALS = ("promote", "queue", "rollback")
RECONCILE_DAG_ID = "gantry_reconcile"
# [core] auth_manager of the FAB auth manager (apache-airflow-providers-fab).
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


@dataclass(frozen=True)
class Grant:
    """Who may take one action in one environment.

    ``roles`` hold the permission; ``users``, where given, narrow it to those people (they need one
    of the roles too: Airflow checks the role, Gantry the name).
    """
    roles: tuple[str, ...] = ()
    users: tuple[str, ...] = ()

    def allows(self, user: str, roles: Iterable[str]) -> bool:
        """Whether ``user``, holding ``roles``, may take the action.

        :param user: the Airflow user name.
        :param roles: the user's roles.
        """
        held = set(roles)
        if ADMIN in held:
            return True
        return bool(held & set(self.roles)) and (not self.users or user in self.users)


@dataclass(frozen=True)
class Access:
    """An environment's ``access`` section: one grant per action."""
    release: Grant = field(default_factory=lambda: Grant(roles=(RELEASE_MANAGER,)))
    rollback: Grant = field(default_factory=lambda: Grant(roles=(RELEASE_MANAGER, ON_CALL)))
    approve: Grant = field(default_factory=lambda: Grant(roles=(APPROVER,)))
    override: Grant = field(default_factory=lambda: Grant(roles=(RELEASE_MANAGER,)))
    view: Grant = field(default_factory=lambda: Grant(roles=GANTRY_ROLES))

    def grant(self, action: str) -> Grant:
        """The grant of one action.

        :param action: one of ``ACTIONS``.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
        return getattr(self, action)

    def readers(self) -> tuple[str, ...]:
        """The roles that may see the environment: ``view``, and every role that may act there
        (acting on a DAG needs reading it)."""
        return _unique(role for action in ACTIONS for role in self.grant(action).roles)


# With no access section an environment gets these; a section replaces only the actions it names.
DEFAULT_ACCESS = Access()


def may(access: Access, action: str, user: str, roles: Iterable[str]) -> bool:
    """Whether ``user`` with ``roles`` may take ``action`` in an environment with ``access``.

    :param access: the environment's access section.
    :param action: one of ``ACTIONS``.
    :param user: the Airflow user name.
    :param roles: the user's roles.
    """
    if action == VIEW:
        return ADMIN in set(roles) or bool(set(roles) & set(access.readers()))
    return access.grant(action).allows(user, roles)


def may_override(config: GantryConfig, environment: str, user: str, roles: Iterable[str],
                 kind: str = "promote") -> bool:
    """Whether ``user`` may release (or, for a rollback DAG, roll back) in ``environment`` outside
    its window or in a freeze (the run's ``emergency_reason``). Overriding is acting too: the user
    needs both.

    :param config: Gantry's configuration.
    :param environment: the environment's name.
    :param user: the Airflow user name who triggers the run.
    :param roles: that user's roles.
    :param kind: the DAG's kind (``promote``, ``rollback``, ``queue``, ``scheduled``).
    """
    access = config.environment(environment).access
    roles = tuple(roles)
    return may(access, TRIGGERED_BY.get(kind, RELEASE), user, roles) and may(access, OVERRIDE, user, roles)


def override_refusal(config: GantryConfig, dag_id: str, conf: Mapping, user: str,
                     roles: Iterable[str]) -> str | None:
    """Why ``user`` may not start ``dag_id`` with ``conf``, as a sentence, when ``conf`` asks for an
    emergency override (``emergency_reason``) that the user may not give; None when it may start
    (no override asked, not a per-environment Gantry DAG, or the user may override).

    :param config: Gantry's configuration.
    :param dag_id: the DAG to trigger.
    :param conf: the run's conf as the trigger request gives it.
    :param user: the user triggering it.
    :param roles: that user's roles.
    """
    reason = conf.get("emergency_reason") if isinstance(conf, Mapping) else None
    if not reason:
        return None
    kind, environment = dag_kind_and_environment(dag_id)
    if environment not in config.environments or may_override(config, environment, user, roles, kind):
        return None
    grant = config.environment(environment).access.override
    who = ", ".join(f"role {r}" for r in grant.roles) or "nobody but Admin"
    if grant.users:
        who += f" (only {', '.join(grant.users)})"
    return (f"{user} may not override {environment}'s release window or freeze (emergency_reason): "
            f"overriding there is for {who}. Nothing was started; trigger without emergency_reason to "
            f"wait for the window, or ask someone who may override.")


def visible_environments(config: GantryConfig, readable_dag_ids: Iterable[str] | None) -> set[str] | None:
    """The environments a user may see on the board and in the ledger's REST: those with a DAG
    the user may read (``gantry.access`` grants every reader ``can_read`` on all of an
    environment's DAGs). None (no restriction) when ``readable_dag_ids`` is None.

    :param config: Gantry's configuration.
    :param readable_dag_ids: the DAGs the auth manager lets the user read, or None.
    """
    if readable_dag_ids is None:
        return None
    named = (dag_kind_and_environment(dag_id)[1] for dag_id in readable_dag_ids)
    return {env for env in named if env in config.environments}


def dag_kind_and_environment(dag_id: str) -> tuple[str | None, str | None]:
    """The kind and environment named by a per-environment Gantry DAG's id
    (``gantry_<kind>_<env>``), or ``(None, None)`` for any other DAG.

    :param dag_id: the DAG's id.
    """
    for kind in TRIGGERED_BY:
        prefix = f"gantry_{kind}_"
        if dag_id.startswith(prefix) and len(dag_id) > len(prefix):
            return kind, dag_id[len(prefix):]
    return None, None


def approval_answerers(env: EnvironmentConfig) -> tuple[str, ...]:
    """The users who may answer ``env``'s approvals, for the requests' ``assigned_users``; empty:
    anyone whose role may approve there.

    :param env: the environment.
    """
    return env.access.approve.users


def dag_access_control(access: Access, kind: str) -> AccessControl:
    """FAB's ``access_control`` of one per-environment DAG, ``gantry_<kind>_<env>``.

    Readers get ``can_read``; the roles whose action starts the DAG also ``can_edit`` (pause,
    trigger) and ``can_create`` on its runs; approvers ``can_edit`` on the DAGs holding approvals
    (answering needs it) but never ``can_create``.

    :param access: the environment's access section.
    :param kind: ``promote``, ``rollback``, ``queue`` or ``scheduled``.
    """
    if kind not in TRIGGERED_BY:
        raise ValueError(f"unknown DAG kind {kind!r}; kinds: {', '.join(TRIGGERED_BY)}")
    control: AccessControl = {}
    for role in access.readers():
        _add(control, role, DAGS, CAN_READ)
        _add(control, role, DAG_RUNS, CAN_READ)
    for role in access.grant(TRIGGERED_BY[kind]).roles:
        _add(control, role, DAGS, CAN_EDIT)
        _add(control, role, DAG_RUNS, CAN_CREATE)
    if kind in HOLDS_APPROVALS:
        for role in access.approve.roles:
            _add(control, role, DAGS, CAN_EDIT)
    return _without_builtin(control)


def reconcile_access_control(config: GantryConfig) -> AccessControl:
    """``gantry_reconcile``'s ``access_control``: it sweeps every environment, so every role that
    sees one reads it, and every role that may roll back somewhere may run it (it only puts back
    what a dead run left out and records drift).

    :param config: Gantry's configuration.
    """
    control: AccessControl = {}
    for env in config.environments.values():
        for role in env.access.readers():
            _add(control, role, DAGS, CAN_READ)
            _add(control, role, DAG_RUNS, CAN_READ)
        for role in env.access.rollback.roles:
            _add(control, role, DAGS, CAN_EDIT)
            _add(control, role, DAG_RUNS, CAN_CREATE)
    return _without_builtin(control)


def environment_dag_kinds(env: EnvironmentConfig) -> tuple[str, ...]:
    """The kinds of Gantry DAG an environment has: promote and rollback always, queue and
    scheduled with ``scheduled_release``.

    :param env: the environment.
    """
    return ("promote", "rollback", "queue", "scheduled") if env.scheduled_release else ("promote", "rollback")


def all_access_controls(config: GantryConfig) -> dict[str, AccessControl]:
    """Every Gantry DAG's ``access_control``, by DAG id.

    :param config: Gantry's configuration.
    """
    controls = {f"gantry_{kind}_{env.name}": dag_access_control(env.access, kind)
                for env in config.environments.values() for kind in environment_dag_kinds(env)}
    controls[RECONCILE_DAG_ID] = reconcile_access_control(config)
    return controls


def fab_roles(config: GantryConfig) -> dict[str, frozenset[Permission]]:
    """The FAB roles the configuration names, each with its global permissions: the base to log in
    and see the UI, to operate runs if it releases or rolls back somewhere, to answer approvals if
    it approves somewhere. DAG-level permissions come from the DAGs' ``access_control``. FAB's own
    roles (Admin, Op, User, Viewer, Public) are left as FAB defines them.

    :param config: Gantry's configuration.
    """
    perms: dict[str, set[Permission]] = {}
    for env in config.environments.values():
        for role in env.access.readers():
            perms.setdefault(role, set()).update(BASE_PERMISSIONS)
        for role in (*env.access.release.roles, *env.access.rollback.roles):
            perms[role].update(OPERATE_PERMISSIONS)
        for role in env.access.approve.roles:
            perms[role].update(ANSWER_PERMISSIONS)
    return {role: frozenset(p) for role, p in perms.items() if role not in FAB_BUILTIN_ROLES}


def who_may(config: GantryConfig, action: str) -> dict[str, tuple[str, ...]]:
    """Per environment, the roles that may take ``action`` (for ``view``: every reader).

    :param config: Gantry's configuration.
    :param action: one of ``ACTIONS``.
    """
    return {name: env.access.readers() if action == VIEW else env.access.grant(action).roles
            for name, env in config.environments.items()}


def uses_fab(auth_manager: str) -> bool:
    """Whether ``auth_manager`` (Airflow's ``[core] auth_manager``) is FAB's, the one that enforces
    DAG-level ``access_control``; Airflow's DAG processor syncs DAG permissions on the same test.

    :param auth_manager: the configured auth manager's import path.
    """
    return "FabAuthManager" in auth_manager


def configured_auth_manager() -> str:
    """Airflow's ``[core] auth_manager`` as this process sees it: the environment variable, else
    Airflow's configuration (already loaded wherever DAG files are parsed), else empty."""
    name = os.environ.get("AIRFLOW__CORE__AUTH_MANAGER")
    if name is not None:
        return name
    try:
        from airflow.configuration import conf
    except ImportError:  # no Airflow here (unit tests, the fleet): nothing enforces access_control
        return ""
    return conf.get("core", "auth_manager", fallback="")


def when_enforced(access_control: Callable[[], AccessControl]) -> dict:
    """A DAG's ``access_control`` keyword when Airflow runs the FAB auth manager, which enforces
    it; nothing under any other (the SimpleAuthManager ignores it, and Airflow 3 warns about every
    DAG that sets it). ``access_control`` is computed only when it applies.

    :param access_control: makes the DAG's access_control.
    """
    return {"access_control": access_control()} if uses_fab(configured_auth_manager()) else {}


def access_with(base: Access, changes: Mapping[str, Grant]) -> Access:
    """``base`` with the grants of the actions in ``changes`` replaced (an access section names
    only what differs from the defaults).

    :param base: the defaults.
    :param changes: grant by action.
    """
    return Access(**{action: changes.get(action, base.grant(action)) for action in ACTIONS})


def _add(control: AccessControl, role: str, resource: str, action: str) -> None:
    control.setdefault(role, {}).setdefault(resource, set()).add(action)


def _without_builtin(control: AccessControl) -> AccessControl:
    """FAB never syncs Admin's DAG permissions (it holds them globally) and resets its other
    built-in roles; Gantry's DAGs name only the roles it manages."""
    return {role: value for role, value in control.items() if role not in FAB_BUILTIN_ROLES}


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
