"""replica placement: where a deployment's replica runs (a local process, or a Ray actor on a node)

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deployment_replicas', schema=None) as batch_op:
        batch_op.add_column(sa.Column('placement', sa.String(length=256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deployment_replicas', schema=None) as batch_op:
        batch_op.drop_column('placement')
