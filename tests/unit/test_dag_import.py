"""The DAG files import cleanly, fast, without network, and have the promised shape."""
import time
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

REPO = Path(__file__).resolve().parents[2]


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
    order = ["wait_for_batch", "confirm_batch", "precheck", "stage_package", "take_offline", "restart_app", "await_healthy",
             "bring_online"]
    for a, b in zip(order, order[1:]):
        assert f"host_release.{b}" in dag.get_task(f"host_release.{a}").downstream_task_ids
    assert dag.get_task("host_release.bring_online").trigger_rule == "all_done"
    assert dag.get_task("report").trigger_rule == "all_done"
    for t in order:
        assert dag.get_task(f"host_release.{t}").map_index_template == "{{ task.host['name'] }}"
    assert dag.max_active_runs == 1
    assert "gantry_rollback_test" in DagBag(str(REPO / "dags")).dags
    params = dag.params
    assert params.get_param("app").schema["enum"] == ["demo"]
    assert "pattern" in params.get_param("version").schema


def test_gates_retry_only_the_resume_race_and_human_decisions_never_retry():
    """Deferrable gates get a retry for Airflow's resume-after-defer race; their own refusals are
    AirflowFailException (never retried). A retried human decision would ask again after a
    rejection, so human-in-the-loop tasks have none."""

    bag = DagBag(str(REPO / "dags"))
    beta = bag.dags["gantry_promote_beta"]
    for dag in (bag.dags["gantry_promote_test"], beta):
        for task_id in ("release_window", "host_release.wait_for_batch"):
            assert dag.get_task(task_id).retries >= 1, task_id
        for task_id in ("host_release.confirm_batch", "claim_release", "check_gates"):
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
