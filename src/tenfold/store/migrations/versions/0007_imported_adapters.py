"""imported adapters: PEFT adapters brought in from an archive or a Hub repository; deployment rows may name
one instead of a job (``job_id`` nullable)

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('imported_adapters',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('organization_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=True),
    sa.Column('base_model', sa.String(length=256), nullable=False),
    sa.Column('source', sa.String(length=1024), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('digest', sa.String(length=128), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('target_modules', sa.JSON(), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('organization_id', 'name', name='uq_imported_adapters_org_name')
    )
    with op.batch_alter_table('imported_adapters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_imported_adapters_id'), ['id'], unique=True)
        batch_op.create_index(batch_op.f('ix_imported_adapters_organization_id'), ['organization_id'], unique=False)
    for table in ('adapter_deployments', 'deployment_adapters'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('job_id', existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    for table in ('adapter_deployments', 'deployment_adapters'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('job_id', existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table('imported_adapters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_imported_adapters_organization_id'))
        batch_op.drop_index(batch_op.f('ix_imported_adapters_id'))
    op.drop_table('imported_adapters')
