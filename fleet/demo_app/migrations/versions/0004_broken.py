"""Only in test builds: a migration that fails half way (the table it alters does not exist)."""
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade():
    op.execute("CREATE TABLE half_done (id int)")
    op.execute("ALTER TABLE no_such_table ADD COLUMN x int")


def downgrade():
    op.execute("DROP TABLE IF EXISTS half_done")
