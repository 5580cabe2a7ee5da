"""Schema migrations against the real PostgreSQL database of the `test` environment."""
import threading

import pytest
import sqlalchemy as sa

import artifacts
from gantry.hooks.migrations import (
    MigrationLockTimeout, SchemaMigrationHook, extract_migrations, script_has, script_head)


@pytest.fixture
def hook(fleet, airflow):  # airflow: PostgreSQL is up with the app databases
    fleet.reset_database("demo", "test")
    yield SchemaMigrationHook("gantry_db_demo_test")
    fleet.reset_database("demo", "test")


def scripts(tmp_path, version, **kw):
    return extract_migrations(artifacts.build_demo_package(version, **kw), "migrations", tmp_path / version)


def test_packages_carry_their_migration_chain(tmp_path):
    d, release = scripts(tmp_path, "1.2.0")
    assert script_head(d) == "0003" and script_has(d, "0001") and not script_has(d, "0004")
    assert release["version"] == "1.2.0" and release["migrations_reversible"] is True


def test_upgrade_downgrade_and_history(hook, tmp_path):
    d12, _ = scripts(tmp_path, "1.2.0")
    with hook.locked("demo", "test") as conn:
        assert hook.current_revision(conn) is None
        hook.upgrade(conn, d12)
        hook.record(conn, "demo", "test", "1.2.0", "0003", "up", "r1")
        assert hook.current_revision(conn) == "0003"
        assert {"greetings", "audiences"} <= set(sa.inspect(conn).get_table_names())
        assert hook.version_with_revision(conn, "demo", "test", "0003") == "1.2.0"
        hook.downgrade(conn, d12, "0001")
        assert hook.current_revision(conn) == "0001"
        assert "audiences" not in sa.inspect(conn).get_table_names()
        assert "language" not in {c["name"] for c in sa.inspect(conn).get_columns("greetings")}


def test_only_one_migration_per_app_and_environment_at_a_time(hook):
    held, release = threading.Event(), threading.Event()

    def holder():
        with hook.locked("demo", "test"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        with pytest.raises(MigrationLockTimeout, match="another run is migrating demo in test"):
            with hook.locked("demo", "test", timeout=1):
                pass
        with hook.locked("demo", "prod", timeout=1):  # another environment is not blocked
            pass
    finally:
        release.set()
        t.join()
    with hook.locked("demo", "test", timeout=1):
        pass
