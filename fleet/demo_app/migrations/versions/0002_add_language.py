"""1.1.0: expand - a nullable column with a default; 1.0.0 code keeps working."""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade():
    op.add_column("greetings", sa.Column("language", sa.String(8), nullable=True, server_default="en"))


def downgrade():
    op.drop_column("greetings", "language")
