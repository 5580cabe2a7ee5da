"""Schema migrations of an app's database, with Alembic, once per environment.

The hook owns the connection to the environment's database (an Airflow Connection, PostgreSQL).
A PostgreSQL advisory lock keyed on app and environment makes sure two runs never migrate the
same database at once; ``gantry_schema_history`` records which version brought which revision,
so a rollback knows which package holds the down steps.
"""
from __future__ import annotations

import contextlib
import io
import json
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from airflow.sdk import BaseHook

from gantry.hooks.postgres import postgres_engine

HISTORY_DDL = """CREATE TABLE IF NOT EXISTS gantry_schema_history (
    id serial PRIMARY KEY, app text NOT NULL, environment text NOT NULL, version text NOT NULL,
    revision text, direction text NOT NULL, run_id text, applied_at timestamptz NOT NULL DEFAULT now())"""


class MigrationLockTimeout(RuntimeError):
    pass


def extract_migrations(package: bytes, path: str, into: Path) -> tuple[Path, dict]:
    """Unpack the package's migration directory; returns it and the package's release.json."""
    release: dict = {}
    with tarfile.open(fileobj=io.BytesIO(package), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.name == "release.json":
                release = json.load(tar.extractfile(member))
            elif member.name.startswith(path.rstrip("/") + "/") and member.isfile():
                tar.extract(member, into, filter="data")
    return into / path, release


def script_head(script_dir: Path) -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(script_dir))
    return ScriptDirectory.from_config(cfg).get_current_head()


def script_has(script_dir: Path, revision: str) -> bool:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(script_dir))
    return revision in {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}


class SchemaMigrationHook(BaseHook):
    conn_name_attr = "db_conn_id"
    default_conn_name = "gantry_db"
    conn_type = "postgres"
    hook_name = "Gantry schema migrations"

    def __init__(self, db_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.db_conn_id = db_conn_id

    def engine(self) -> sa.Engine:
        return postgres_engine(self.db_conn_id)

    @contextlib.contextmanager
    def locked(self, app: str, environment: str, timeout: float = 60) -> Iterator[sa.Connection]:
        """A connection holding the advisory lock of (app, environment)."""
        key = zlib.crc32(f"gantry-migrate:{app}:{environment}".encode())
        with self.engine().connect() as conn:
            deadline = time.monotonic() + timeout
            while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                if time.monotonic() > deadline:
                    raise MigrationLockTimeout(
                        f"another run is migrating {app} in {environment}; gave up after {timeout:g}s")
                time.sleep(0.5)
            conn.commit()
            try:
                conn.execute(sa.text(HISTORY_DDL))
                conn.commit()
                yield conn
            finally:
                conn.rollback()
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()

    @staticmethod
    def current_revision(conn: sa.Connection) -> str | None:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    @staticmethod
    def _alembic(conn: sa.Connection, script_dir: Path):
        from alembic.config import Config

        cfg = Config(stdout=io.StringIO())
        cfg.set_main_option("script_location", str(script_dir))
        cfg.attributes["connection"] = conn
        return cfg

    def upgrade(self, conn: sa.Connection, script_dir: Path, target: str = "head") -> None:
        from alembic import command

        conn.commit()  # end any implicit transaction: each migration must get its own
        command.upgrade(self._alembic(conn, script_dir), target)
        conn.commit()

    def downgrade(self, conn: sa.Connection, script_dir: Path, target: str | None) -> None:
        from alembic import command

        conn.commit()
        command.downgrade(self._alembic(conn, script_dir), target or "base")
        conn.commit()

    @staticmethod
    def record(conn: sa.Connection, app: str, environment: str, version: str, revision: str | None,
               direction: str, run_id: str) -> None:
        conn.execute(sa.text("INSERT INTO gantry_schema_history (app, environment, version, revision, direction, "
                             "run_id) VALUES (:a, :e, :v, :r, :d, :run)"),
                     {"a": app, "e": environment, "v": version, "r": revision, "d": direction, "run": run_id})
        conn.commit()

    @staticmethod
    def version_with_revision(conn: sa.Connection, app: str, environment: str, revision: str) -> str | None:
        """The version whose upgrade brought the database to ``revision`` (its package has the down steps)."""
        return conn.execute(sa.text(
            "SELECT version FROM gantry_schema_history WHERE app=:a AND environment=:e AND revision=:r "
            "AND direction='up' ORDER BY id DESC LIMIT 1"), {"a": app, "e": environment, "r": revision}).scalar()


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gantry-migrations-") as d:
        yield Path(d)
