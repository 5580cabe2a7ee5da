"""A SQLAlchemy engine for a PostgreSQL Airflow Connection (ledger, app databases)."""
from __future__ import annotations

import sqlalchemy as sa
from airflow.sdk import BaseHook


def postgres_engine(conn_id: str) -> sa.Engine:
    c = BaseHook.get_connection(conn_id)
    url = sa.engine.URL.create("postgresql+psycopg2", username=c.login, password=c.password,
                               host=c.host, port=c.port, database=c.schema)
    # No pool: each task is a short-lived process; connections must not outlive their use.
    return sa.create_engine(url, poolclass=sa.pool.NullPool)
