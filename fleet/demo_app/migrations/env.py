"""Alembic environment of the demo app. Gantry passes an open connection in
``config.attributes["connection"]``; the app's own tooling may pass ``sqlalchemy.url``."""
from alembic import context
from sqlalchemy import create_engine

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    connection = create_engine(config.get_main_option("sqlalchemy.url")).connect()
context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
