"""The DAG files import cleanly, fast, without network, and have the promised shape."""
import time
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

REPO = Path(__file__).resolve().parents[3]


def test_no_import_errors_and_parse_time_is_measured(record_property):
    started = time.perf_counter()
    bag = DagBag(str(REPO / "dags"))
    elapsed = time.perf_counter() - started
    record_property("dagbag_fill_seconds", round(elapsed, 3))
    for f in bag.dagbag_stats:
        record_property(f"parse_seconds:{Path(f.file).name}", f.duration.total_seconds())
    assert bag.import_errors == {}
    assert "gantry_promote_test" in bag.dags


def test_promotion_dag_shape():
    dag = DagBag(str(REPO / "dags")).dags["gantry_promote_test"]
    runbook = ["claim_release", "check_gates", "release_window", "verify_artifact", "migrate_database",
               "collect_hosts", "host.precheck_and_stage", "host.offline_restart_online", "report"]
    for a, b in zip(runbook, runbook[1:]):
        assert b in dag.get_task(a).downstream_task_ids, (a, b)
    assert dag.get_task("report").trigger_rule == "all_done"
    for t in ("host.precheck_and_stage", "host.offline_restart_online"):
        assert dag.get_task(t).map_index_template == "{{ task.host['name'] }}"
    # A host waiting for its batch starts in the triggerer: no worker, no task process.
    release = dag.get_task("host.offline_restart_online")
    assert release.start_from_trigger and release.start_trigger_args.next_method == "after_gate"
    assert release.start_trigger_args.trigger_kwargs["prepare_task_id"] == "host.precheck_and_stage"
    assert dag.max_active_runs == 1
    rollback = DagBag(str(REPO / "dags")).dags["gantry_rollback_test"]
    assert rollback.get_task("report").downstream_task_ids == {"migrate_database"}
    params = dag.params
    assert params.get_param("app").schema["enum"] == ["demo"]
    assert "pattern" in params.get_param("version").schema


def test_a_task_process_builds_only_its_own_dag(monkeypatch):
    """Airflow sets the parsing context in a task's process: the DAG files then build one DAG."""
    from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID

    monkeypatch.setenv(_AIRFLOW_PARSING_CONTEXT_DAG_ID, "gantry_promote_perf")
    assert sorted(DagBag(str(REPO / "dags")).dags) == ["gantry_promote_perf"]


def test_gates_retry_only_the_resume_race_and_human_decisions_never_retry():
    """Deferrable gates get a retry for Airflow's resume-after-defer race; their own refusals are
    AirflowFailException (never retried). A retried human decision would ask again after a
    rejection, so human-in-the-loop tasks have none."""

    bag = DagBag(str(REPO / "dags"))
    beta = bag.dags["gantry_promote_beta"]
    for dag in (bag.dags["gantry_promote_test"], beta):
        assert dag.get_task("release_window").retries >= 1
        for task_id in ("claim_release", "check_gates"):
            assert dag.get_task(task_id).retries == 0, task_id
    assert beta.get_task("approve_release").retries == 0


def test_window_released_environment_has_queue_and_scheduled_dags():
    """prod is released at window openings: auto-promotion from beta queues the version (gates and
    approval now) instead of releasing it; the scheduled DAG runs on the window timetable."""
    from gantry.timetables import ReleaseWindowTimetable

    bag = DagBag(str(REPO / "dags"))
    assert bag.dags["gantry_promote_beta"].get_task("promote_prod").trigger_dag_id == "gantry_queue_prod"
    assert bag.dags["gantry_promote_test"].get_task("promote_staging").trigger_dag_id == "gantry_promote_staging"
    queue = bag.dags["gantry_queue_prod"]
    assert queue.get_task("check_gates").downstream_task_ids == {"approve_release"}
    assert queue.get_task("approve_release").downstream_task_ids == {"enqueue"}
    scheduled = bag.dags["gantry_scheduled_prod"]
    assert isinstance(scheduled.timetable, ReleaseWindowTimetable)
    assert scheduled.timetable.environment == "prod" and scheduled.max_active_runs == 1
    assert scheduled.get_task("start_release").partial_kwargs["trigger_dag_id"] == "gantry_promote_prod"
    assert "gantry_queue_beta" not in bag.dags and "gantry_scheduled_test" not in bag.dags


def test_the_reconciler_runs_every_few_minutes_and_on_demand_only_when_told(monkeypatch):
    import datetime as dt

    monkeypatch.delenv("GANTRY_RECONCILE_EVERY_MINUTES", raising=False)
    dag = DagBag(str(REPO / "dags")).dags["gantry_reconcile"]
    assert dag.timetable.delta == dt.timedelta(minutes=5)
    assert [t.task_id for t in dag.topological_sort()] == ["observe_hosts", "reconcile_host", "report"]
    assert dag.get_task("report").trigger_rule == "all_done"
    monkeypatch.setenv("GANTRY_RECONCILE_EVERY_MINUTES", "0")
    assert type(DagBag(str(REPO / "dags")).dags["gantry_reconcile"].timetable).__name__ == "NullTimetable"


@pytest.mark.parametrize("version", ["1.10", "2", "1.1.0", "2.0.0-rc.1", "007"])
def test_a_version_reaches_the_operators_as_the_same_string_under_native_rendering(version):
    """The DAGs render natively (objects, not strings); a bare "{{ params.version }}" would turn
    "1.10" into the float 1.1 and "2" into the integer 2."""
    from airflow.sdk.definitions._internal.templater import NativeEnvironment

    from gantry.rollout import VERSION, as_text

    dag = DagBag(str(REPO / "dags")).dags["gantry_promote_test"]
    assert dag.render_template_as_native_obj and dag.get_task("claim_release").version == VERSION
    env = NativeEnvironment()
    assert env.from_string(VERSION).render(params={"version": version}) == version
    assert env.from_string(VERSION).render(params={"version": None}) == ""
    assert env.from_string(as_text("v")).render(v=version) == version


def test_every_task_of_an_environment_with_a_queue_runs_on_it():
    """beta and prod name the `prod-zone` queue: every task of their release DAGs goes to the
    workers placed there (README, Scale-out); other environments use the default queue."""
    bag = DagBag(str(REPO / "dags"))
    for dag_id in ("gantry_promote_prod", "gantry_rollback_prod", "gantry_queue_prod", "gantry_scheduled_prod",
                   "gantry_promote_beta", "gantry_rollback_beta"):
        assert {t.queue for t in bag.dags[dag_id].tasks} == {"prod-zone"}, dag_id
    for dag_id in ("gantry_promote_test", "gantry_rollback_staging", "gantry_promote_dev", "gantry_reconcile"):
        assert {t.queue for t in bag.dags[dag_id].tasks} == {"default"}, dag_id


def test_auto_promotion_starts_the_next_promotion_and_passes_the_choice_along():
    """The next environment's run gets the version and this run's auto_promote choice; one
    released at its window openings gets the version queued instead (and no choice to pass)."""
    bag = DagBag(str(REPO / "dags"))
    to_staging = bag.dags["gantry_promote_test"].get_task("promote_staging")
    assert (to_staging.trigger_dag_id, to_staging.enqueue, to_staging.queue) == (
        "gantry_promote_staging", False, "default")
    to_prod = bag.dags["gantry_promote_beta"].get_task("promote_prod")
    assert (to_prod.trigger_dag_id, to_prod.enqueue, to_prod.queue) == ("gantry_queue_prod", True, "prod-zone")


def test_an_environment_before_an_optional_one_has_a_promotion_task_for_each_route():
    """dev promotes a special version to project and an ordinary one to test: one task each, and
    at run time the one not on the version's route skips, saying why."""
    bag = DagBag(str(REPO / "dags"))
    dev = bag.dags["gantry_promote_dev"]
    targets = {t.task_id: t.trigger_dag_id for t in dev.tasks if t.task_id.startswith("promote_")}
    assert targets == {"promote_project": "gantry_promote_project", "promote_test": "gantry_promote_test"}
    staging = bag.dags["gantry_promote_staging"]
    assert {t.task_id: t.trigger_dag_id for t in staging.tasks if t.task_id.startswith("promote_")} == {
        "promote_beta": "gantry_promote_beta", "promote_prod": "gantry_queue_prod"}
    assert dev.params.get_param("special").schema["type"] == ["null", "boolean"]


def test_under_fab_every_gantry_dag_carries_its_access_control_and_otherwise_none(monkeypatch):
    """The FAB auth manager enforces DAG-level access_control; the SimpleAuthManager demo gets
    DAGs without it, as before."""
    from gantry.access import FAB_AUTH_MANAGER, all_access_controls
    from gantry.config import load_config

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER",
                       "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager")
    assert all(dag.access_control is None for dag in DagBag(str(REPO / "dags")).dags.values())

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", FAB_AUTH_MANAGER)
    bag = DagBag(str(REPO / "dags"))
    assert bag.import_errors == {}
    expected = all_access_controls(load_config())
    assert {dag_id: dag.access_control for dag_id, dag in bag.dags.items()} == expected
    prod = bag.dags["gantry_promote_prod"].access_control
    assert prod["OnCall"] == {"DAGs": {"can_read"}, "DAG Runs": {"can_read"}}
    assert prod["ReleaseManager"] == {"DAGs": {"can_read", "can_edit"}, "DAG Runs": {"can_read", "can_create"}}
