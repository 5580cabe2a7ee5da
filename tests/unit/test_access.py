"""Who may do what per environment (gantry.access): the DAGs' FAB access_control, the roles to
create, who answers approvals, and the emergency override, from the repository's config and from
small configs of their own. No Airflow needed (one test compares with the installed FAB provider)."""
from pathlib import Path

import yaml

from gantry import access
from gantry.access import (
    ANSWER_PERMISSIONS, APPROVER, BASE_PERMISSIONS, DEVELOPER, ON_CALL, OPERATE_PERMISSIONS, RELEASE_MANAGER,
    VIEWER, Access, Grant, all_access_controls, approval_answerers, dag_access_control, fab_roles, may,
    may_override, override_refusal, who_may)
from gantry.config import load_config

REPO = Path(__file__).resolve().parents[2]
CONFIG = load_config(REPO / "config" / "gantry.yaml")
CONTROLS = all_access_controls(CONFIG)
# The demo users' roles (fleet/fleetctl.py DEMO_USERS).
ROLES_OF = {"victor": [VIEWER], "dana": [DEVELOPER], "rita": [RELEASE_MANAGER], "alice": [APPROVER],
            "oscar": [ON_CALL], "admin": ["Admin"]}


def can_trigger(role: str, dag_id: str) -> bool:
    """What FAB requires to trigger a run of ``dag_id``: can_edit on the DAG and can_create on its runs."""
    control = CONTROLS[dag_id].get(role, {})
    return "can_edit" in control.get("DAGs", set()) and "can_create" in control.get("DAG Runs", set())


def can_answer(role: str, dag_id: str) -> bool:
    """What FAB requires to answer a human-in-the-loop request in ``dag_id``: can_edit on the DAG
    and the global can_edit on HITL Detail."""
    return ("can_edit" in CONTROLS[dag_id].get(role, {}).get("DAGs", set())
            and ("can_edit", "HITL Detail") in fab_roles(CONFIG)[role])


def test_the_on_call_role_may_roll_back_prod_but_not_release_it():
    assert can_trigger(ON_CALL, "gantry_rollback_prod")
    assert not can_trigger(ON_CALL, "gantry_promote_prod")
    assert not can_trigger(ON_CALL, "gantry_queue_prod")
    assert may(CONFIG.environment("prod").access, "rollback", "oscar", ROLES_OF["oscar"])
    assert not may(CONFIG.environment("prod").access, "release", "oscar", ROLES_OF["oscar"])


def test_a_developer_may_release_dev_and_test_only():
    releasable = sorted(dag_id for dag_id in CONTROLS if dag_id.startswith("gantry_promote_")
                        and can_trigger(DEVELOPER, dag_id))
    assert releasable == ["gantry_promote_dev", "gantry_promote_test"]
    assert who_may(CONFIG, "release")["prod"] == (RELEASE_MANAGER,)


def test_a_viewer_has_no_can_create_and_no_can_edit_anywhere():
    for dag_id, control in CONTROLS.items():
        if dag_id.endswith("_scale"):  # release engineering's rehearsal: viewers do not see it
            assert VIEWER not in control and DEVELOPER not in control, dag_id
            continue
        assert control[VIEWER] == {"DAGs": {"can_read"}, "DAG Runs": {"can_read"}}, dag_id
    assert not fab_roles(CONFIG)[VIEWER] & (OPERATE_PERMISSIONS | ANSWER_PERMISSIONS)
    assert not any(action in ("can_create", "can_edit", "can_delete") and resource not in ("My Password", "My Profile")
                   for action, resource in fab_roles(CONFIG)[VIEWER])


def test_the_release_manager_releases_everywhere_and_overrides_but_answers_no_approval():
    for dag_id in CONTROLS:
        if dag_id.startswith(("gantry_promote_", "gantry_rollback_", "gantry_queue_")):
            assert can_trigger(RELEASE_MANAGER, dag_id), dag_id
    assert may_override(CONFIG, "prod", "rita", ROLES_OF["rita"])
    assert not can_answer(RELEASE_MANAGER, "gantry_promote_prod")


def test_an_approver_answers_prod_approvals_but_cannot_trigger_anything():
    assert can_answer(APPROVER, "gantry_promote_prod")
    assert can_answer(APPROVER, "gantry_queue_prod")
    assert not any(can_trigger(APPROVER, dag_id) for dag_id in CONTROLS)
    # Approving is not operating: no marking runs or clearing tasks.
    assert not fab_roles(CONFIG)[APPROVER] & OPERATE_PERMISSIONS


def test_nobody_gets_can_create_on_runs_globally():
    """A global can_create on DAG Runs would let an approver (can_edit on the DAG) trigger it."""
    for role, permissions in fab_roles(CONFIG).items():
        assert ("can_create", "DAG Runs") not in permissions, role
        assert ("can_read", "DAGs") not in permissions, role  # each role reads only what it is granted
        assert ("can_edit", "DAGs") not in permissions, role


def test_only_the_approvers_may_answer_and_approvers_is_the_short_form_of_approve_users():
    prod = CONFIG.environment("prod")
    assert approval_answerers(prod) == prod.approvers == ("alice",)
    assert approval_answerers(CONFIG.environment("dev")) == ()
    assert may(prod.access, "approve", "alice", [APPROVER])
    assert not may(prod.access, "approve", "bob", [APPROVER])  # the role, but not one of the named users
    assert not may(prod.access, "approve", "alice", [VIEWER])  # named, but without the role


def test_an_emergency_override_needs_both_release_and_override():
    prod = CONFIG.environment("prod")
    assert not may_override(CONFIG, "prod", "oscar", [ON_CALL])
    assert not may_override(CONFIG, "prod", "dana", [DEVELOPER])
    assert may_override(CONFIG, "prod", "admin", ["Admin"])
    # Override granted to a role that may not release: still refused.
    narrowed = Access(release=Grant(roles=(RELEASE_MANAGER,)), override=Grant(roles=(ON_CALL,)))
    assert may(narrowed, "override", "oscar", [ON_CALL])
    assert not may(narrowed, "release", "oscar", [ON_CALL])
    assert prod.access.override.roles == (RELEASE_MANAGER,)


def test_a_trigger_asking_for_an_override_is_refused_in_a_sentence_unless_the_user_may_override():
    reason = {"app": "demo", "version": "1.2.0", "emergency_reason": "incident 42: hotfix now"}
    refusal = override_refusal(CONFIG, "gantry_promote_dev", reason, "dana", ROLES_OF["dana"])
    assert refusal.startswith("dana may not override dev's release window or freeze")
    assert "role ReleaseManager" in refusal and "Nothing was started" in refusal
    assert override_refusal(CONFIG, "gantry_promote_dev", reason, "rita", ROLES_OF["rita"]) is None
    assert override_refusal(CONFIG, "gantry_promote_prod", reason, "admin", ["Admin"]) is None
    # Without a reason there is nothing to override; other DAGs are not Gantry's to judge.
    assert override_refusal(CONFIG, "gantry_promote_dev", {"app": "demo"}, "dana", ROLES_OF["dana"]) is None
    assert override_refusal(CONFIG, "gantry_promote_dev", {"emergency_reason": ""}, "dana", ROLES_OF["dana"]) is None
    assert override_refusal(CONFIG, "gantry_reconcile", reason, "dana", ROLES_OF["dana"]) is None
    assert override_refusal(CONFIG, "gantry_promote_nowhere", reason, "dana", ROLES_OF["dana"]) is None
    # A rollback's override needs the rollback permission with the override one: on-call has
    # the first, not the second.
    assert "oscar may not override prod" in override_refusal(CONFIG, "gantry_rollback_prod", reason, "oscar",
                                                             ROLES_OF["oscar"])
    assert override_refusal(CONFIG, "gantry_rollback_prod", reason, "rita", ROLES_OF["rita"]) is None


def test_an_override_narrowed_to_users_names_them_in_its_refusal(tmp_path):
    cfg = _config(tmp_path, prod={"access": {"override": {"users": ["rita"]}}})
    refusal = override_refusal(cfg, "gantry_promote_prod", {"emergency_reason": "incident 42: hotfix"}, "ralph",
                               [RELEASE_MANAGER])
    assert "role ReleaseManager (only rita)" in refusal


def test_users_see_the_environments_whose_dags_they_may_read():
    from gantry.access import visible_environments

    readable = {dag_id for dag_id, control in CONTROLS.items() if VIEWER in control}
    shown = visible_environments(CONFIG, readable)
    assert "scale" not in shown and {"dev", "test", "staging", "prod"} <= shown
    assert visible_environments(CONFIG, {"gantry_rollback_prod", "gantry_reconcile", "other_dag"}) == {"prod"}
    assert visible_environments(CONFIG, None) is None


def test_approvals_are_assigned_by_user_name_under_fab():
    """FAB's user id is a row number; Gantry's requests name their approvers, and the auth manager
    matches the name."""
    from gantry.auth_manager import GantryFabAuthManager, is_assigned

    assert is_assigned({"alice"}, "alice") and not is_assigned({"alice"}, "rita")
    assert not is_assigned({"3"}, "alice")

    from airflow.providers.fab.auth_manager.models import User

    manager = GantryFabAuthManager()
    alice, rita = User(id=3, username="alice"), User(id=4, username="rita")
    assert alice.get_id() == "3", "FAB's id is the row id: Airflow's own check would need it"
    assert manager.is_authorized_hitl_task(assigned_users={"alice"}, user=alice)
    assert not manager.is_authorized_hitl_task(assigned_users={"alice"}, user=rita)
    assert not manager.is_authorized_hitl_task(assigned_users={"4"}, user=rita), "names, not row ids"


def test_override_narrowed_to_users(tmp_path):
    cfg = _config(tmp_path, prod={"access": {"override": {"users": ["rita"]}}})
    assert cfg.environment("prod").access.override == Grant(roles=(RELEASE_MANAGER,), users=("rita",))
    assert may_override(cfg, "prod", "rita", [RELEASE_MANAGER])
    assert not may_override(cfg, "prod", "ralph", [RELEASE_MANAGER])


def test_every_gantry_dag_gets_access_control_and_only_known_resources_and_actions():
    expected = {f"gantry_{kind}_{env}" for env in CONFIG.environments for kind in ("promote", "rollback")}
    expected |= {f"gantry_{kind}_{env.name}" for env in CONFIG.environments.values() if env.scheduled_release
                 for kind in ("queue", "scheduled")}
    assert set(CONTROLS) == expected | {"gantry_reconcile"}
    # FAB's RESOURCE_DETAILS_MAP: the only DAG-level resources and their actions.
    allowed = {"DAGs": {"can_read", "can_edit", "can_delete"},
               "DAG Runs": {"can_read", "can_create", "can_delete", "menu_access"}}
    for control in CONTROLS.values():
        for resources in control.values():
            for resource, actions in resources.items():
                assert actions <= allowed[resource]
        assert "Admin" not in control


def test_the_reconcile_sweep_is_run_by_whoever_may_roll_back_somewhere():
    assert can_trigger(ON_CALL, "gantry_reconcile")
    assert can_trigger(DEVELOPER, "gantry_reconcile")
    assert not can_trigger(APPROVER, "gantry_reconcile")
    assert CONTROLS["gantry_reconcile"][VIEWER] == {"DAGs": {"can_read"}, "DAG Runs": {"can_read"}}


def test_a_role_that_may_act_may_see_even_when_view_leaves_it_out(tmp_path):
    cfg = _config(tmp_path, prod={"access": {"view": [VIEWER]}})
    control = dag_access_control(cfg.environment("prod").access, "rollback")
    assert control[ON_CALL]["DAGs"] == {"can_read", "can_edit"}
    assert DEVELOPER not in control  # neither views nor acts in prod


def test_an_action_left_out_keeps_its_default_and_fab_builtin_roles_are_left_alone(tmp_path):
    cfg = _config(tmp_path, prod={"access": {"release": ["Op", "Deployer"]}})
    prod = cfg.environment("prod").access
    assert prod.rollback.roles == (RELEASE_MANAGER, ON_CALL)
    control = dag_access_control(prod, "promote")
    assert "Op" not in control and control["Deployer"]["DAG Runs"] == {"can_read", "can_create"}
    assert "Op" not in fab_roles(cfg) and OPERATE_PERMISSIONS <= fab_roles(cfg)["Deployer"]


def test_base_permissions_are_fabs_viewer_without_reading_every_dag():
    from airflow.providers.fab.auth_manager.security_manager.override import (
        FabAirflowSecurityManagerOverride as Fab)

    assert set(BASE_PERMISSIONS) == set(Fab.VIEWER_PERMISSIONS) - {("can_read", "DAGs")}
    assert OPERATE_PERMISSIONS | ANSWER_PERMISSIONS <= set(Fab.USER_PERMISSIONS) | set(Fab.OP_PERMISSIONS)
    assert set(access.FAB_BUILTIN_ROLES) == {r["role"] for r in Fab.ROLE_CONFIGS}


def _config(tmp_path, **env_changes):
    """A small valid config (dev -> prod) with ``env_changes`` merged into its environments."""
    raw = {"apps": {"demo": {"package": "demo-{version}.tar.gz", "install_root": "/srv/demo", "port": 9000,
                             "start_command": "bin/start.sh", "stop_command": "bin/stop.sh",
                             "pid_file": "/srv/demo/app.pid"}},
           "environments": {"dev": {"promote_to": "prod"}, "prod": {"upstream": "dev"}}}
    for env, changes in env_changes.items():
        raw["environments"][env].update(changes)
    path = tmp_path / "gantry.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)
