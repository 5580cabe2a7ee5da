"""1.2.0: a new table and an index; additive, so older code is unaffected."""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade():
    op.create_table("audiences", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.String(100), nullable=False, unique=True))
    op.create_index("ix_greetings_language", "greetings", ["language"])


def downgrade():
    op.drop_index("ix_greetings_language", table_name="greetings")
    op.drop_table("audiences")
