"""Only in test builds: a contract step that destroys data, so it declares no way back."""
from alembic import op

revision = "0005"
down_revision = "0003"


def upgrade():
    op.drop_column("greetings", "language")


def downgrade():
    raise RuntimeError("0005 dropped greetings.language; restore from backup")
