"""Batch plans, max-unavailable, failure thresholds, automatic and on-demand rollback and
schema migrations, on the 20 `perf` hosts of the local fleet, through the real scheduler."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from support import (
    LoadGenerator, RotationSampler, assert_all_in_rotation, back_in_rotation_at, fleet_state, host_outcomes,
    left_rotation_at, per_host, run_dag)

pytestmark = pytest.mark.e2e
ENV = "perf"
PROMOTE, ROLLBACK = "gantry_promote_perf", "gantry_rollback_perf"
BASELINE = "1.0.0"


@pytest.fixture
def perf(fleet, airflow):
    fleet.reset(BASELINE, ENV)
    airflow.wait_for_dag(PROMOTE)
    airflow.wait_for_dag(ROLLBACK)
    state = fleet_state(env=ENV)
    assert len(state["hosts"]) == 20 and set(state["versions"].values()) == {BASELINE}
    assert_all_in_rotation(state)
    return state


def db():
    import fleetctl

    return sa.create_engine(f"postgresql+psycopg2://demo:demo@127.0.0.1:{fleetctl.PG_PORT}/demo_perf",
                            poolclass=sa.pool.NullPool)


def schema():
    with db().connect() as c:
        insp = sa.inspect(c)
        revision = c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() \
            if insp.has_table("alembic_version") else None
        columns = {col["name"] for col in insp.get_columns("greetings")} if insp.has_table("greetings") else set()
        return revision, columns, set(insp.get_table_names())


run = run_dag
outcomes = host_outcomes


def test_batched_rollout_respects_max_unavailable_and_the_failure_threshold_then_rollback_returns_everything(
        perf, airflow, fleet):
    """One 20-host rollout for the batch plan, max-unavailable under load, a failure below the
    threshold (perf-demo-03 never becomes healthy: rolled back, the rollout goes on), the schema
    going up first - and the rollback DAG returning every host and the schema."""
    import artifacts

    version = "1.1.1-flaky03"  # ships migrations 0001 and 0002, as 1.1.0 does
    artifacts.publish_demo(fleet.STATE / "artifacts", version, never_healthy_on=("perf-demo-03",))
    with LoadGenerator(env=ENV, threads=3) as load, RotationSampler(env=ENV) as sampler:
        run_id, state, tis = run(airflow, PROMOTE, {"app": "demo", "version": version, "failure_threshold": "2"})
    assert state == "failed", "a host failed, so the run reports failure"
    records = outcomes(airflow, PROMOTE, run_id, tis)
    assert records["perf-demo-03"]["outcome"] == "rolled_back"
    assert sorted(h for h, o in records.items() if o["outcome"] == "released") == sorted(
        f"perf-demo-{i:02d}" for i in range(1, 21) if i != 3)
    after = fleet_state(env=ENV)
    assert after["versions"].pop("perf-demo-03") == BASELINE, "the failed host serves its old release"
    assert set(after["versions"].values()) == {version}
    assert_all_in_rotation(after)
    assert "below the threshold" in airflow.log(PROMOTE, run_id, "host.offline_restart_online", 5)
    # Plan "1, 25%, 50%, 100%" of 20 hosts: batches of 1, 4, 5, 10; max_unavailable 50% = 10.
    batches = sorted(o["batch"] for o in records.values())
    assert [batches.count(b) for b in range(4)] == [1, 4, 5, 10]
    assert sampler.samples > 100
    assert 2 <= sampler.max_lb_down <= 10 and sampler.max_registry_disabled <= 10
    assert load.total >= 2000 and load.failures == [], load.failures[:5]
    # The canary was back in rotation before any other host left it; every host staged first.
    canary_back = back_in_rotation_at(records["perf-demo-01"])
    others_left = [left_rotation_at(o) for h, o in records.items() if h != "perf-demo-01"]
    assert None not in others_left and min(others_left) > canary_back
    staged = [dt.datetime.fromisoformat(ti["end_date"]).timestamp()
              for ti in per_host(tis, "precheck_and_stage").values()]
    assert max(staged) < min(left_rotation_at(o) for o in records.values() if o["batch"] == 1)
    # The schema went up first.
    revision, columns, _ = schema()
    assert revision == "0002" and "language" in columns
    migrate = tis[("migrate_database", -1)]
    assert migrate["end_date"] < min(ti["start_date"] for ti in per_host(tis, "precheck_and_stage").values())

    # Roll back without naming a version: the hosts' previous release, 1.0.0, and its schema
    # (perf-demo-03 never left it and says so; the others outvote it).
    run_id, state, tis = run(airflow, ROLLBACK, {"app": "demo", "batches": "50%"})
    assert state == "success", "rollback failed"
    assert airflow.xcom(ROLLBACK, run_id, "resolve_target") == BASELINE
    after = fleet_state(env=ENV)
    assert set(after["versions"].values()) == {BASELINE}
    assert_all_in_rotation(after)
    revision, columns, _ = schema()
    assert revision == "0001" and "language" not in columns
    # Hosts first, schema last: old code runs on the expanded schema while hosts go back.
    down = tis[("migrate_database", -1)]
    assert down["start_date"] > max(ti["end_date"] for ti in per_host(tis, "offline_restart_online").values())


def test_a_canary_that_never_becomes_healthy_is_rolled_back_and_halts_the_rollout(perf, airflow, fleet):
    import artifacts

    artifacts.publish_demo(fleet.STATE / "artifacts", "2.0.0-broken", never_healthy=True)
    with LoadGenerator(env=ENV, threads=2) as load:
        run_id, state, tis = run(airflow, PROMOTE, {"app": "demo", "version": "2.0.0-broken"})
    assert state == "failed"
    record = outcomes(airflow, PROMOTE, run_id, tis)["perf-demo-01"]
    assert record["outcome"] == "rolled_back"
    assert "did not become healthy" in record["reason"] and "rolled back to 1.0.0" in record["reason"]
    assert per_host(tis, "offline_restart_online")["perf-demo-01"]["state"] == "failed"
    assert load.failures == [] and load.ok > 0
    left = [h for h, o in outcomes(airflow, PROMOTE, run_id, tis).items() if left_rotation_at(o)]
    assert left == ["perf-demo-01"], "no host beyond the canary may leave rotation"
    after = fleet_state(env=ENV)
    assert set(after["versions"].values()) == {BASELINE}
    assert_all_in_rotation(after)


def test_a_plan_beyond_max_unavailable_is_refused_before_anything_starts(perf, airflow):
    run_id, state, tis = run(airflow, PROMOTE, {"app": "demo", "version": "1.1.0", "batches": "1, 100%"})
    assert state == "failed"
    assert tis[("claim_release", -1)]["state"] == "failed", "refused before the environment is claimed"
    assert "exceeds max_unavailable" in airflow.log(PROMOTE, run_id, "claim_release")
    assert not any(t.startswith("host.") and ti["state"] == "success" for (t, _), ti in tis.items())
    assert set(fleet_state(env=ENV)["versions"].values()) == {BASELINE}


def test_bake_time_separates_batches(perf, airflow):
    run_id, state, tis = run(airflow, PROMOTE, {"app": "demo", "version": "1.1.0", "batches": "1",
                                                "bake_seconds": 6, "hosts": ["perf-demo-01", "perf-demo-02"]})
    assert state == "success"
    records = outcomes(airflow, PROMOTE, run_id, tis)
    assert left_rotation_at(records["perf-demo-02"]) - back_in_rotation_at(records["perf-demo-01"]) >= 6


def test_failing_migration_stops_the_release_before_any_host(perf, airflow, fleet):
    import artifacts

    artifacts.publish_demo(fleet.STATE / "artifacts", "1.5.0-badmig", migrations=("0001", "0002", "0003", "0004"))
    run_id, state, tis = run(airflow, PROMOTE, {"app": "demo", "version": "1.5.0-badmig"})
    assert state == "failed"
    assert tis[("migrate_database", -1)]["state"] == "failed"
    assert tis[("migrate_database", -1)]["try_number"] == 1, "a failed migration is not retried"
    assert "no host was touched" in airflow.log(PROMOTE, run_id, "migrate_database")
    assert not [t for (t, _), ti in tis.items() if t.startswith("host.") and ti["state"] == "success"]
    after = fleet_state(env=ENV)
    assert set(after["versions"].values()) == {BASELINE}
    assert_all_in_rotation(after)
    revision, _, tables = schema()
    assert revision == "0003", "each migration is its own transaction: the last good one stays"
    assert "half_done" not in tables, "the failed migration left nothing behind"


def test_irreversible_migrations_refuse_rollback_before_any_host(perf, airflow, fleet):
    import artifacts

    artifacts.publish_demo(fleet.STATE / "artifacts", "1.6.0-contract",
                           migrations=("0001", "0002", "0003", "0005"), migrations_reversible=False)
    _, state, _ = run(airflow, PROMOTE, {"app": "demo", "version": "1.6.0-contract",
                                         "hosts": ["perf-demo-01"]})
    assert state == "success"
    assert schema()[0] == "0005"
    run_id, state, tis = run(airflow, ROLLBACK, {"app": "demo", "version": BASELINE, "hosts": ["perf-demo-01"]})
    assert state == "failed"
    assert tis[("check_migrations", -1)]["state"] == "failed"
    log = airflow.log(ROLLBACK, run_id, "check_migrations")
    assert "irreversible" in log and "Restore the database from a backup" in log
    assert fleet_state(env=ENV)["versions"]["perf-demo-01"] == "1.6.0-contract", "no host was touched"
    assert schema()[0] == "0005"
