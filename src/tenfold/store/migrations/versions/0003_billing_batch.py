"""billing and batch: usage row fields, organization spend limit, batches and their lines

Revision ID: 0003
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('monthly_spend_limit_micro_usd', sa.BigInteger(), nullable=True))

    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('usage_type', sa.String(length=64), nullable=False,
                                      server_default='TEXT_COMPLETION_INFERENCE_USAGE'))
        batch_op.add_column(sa.Column('deployment_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('batch_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('discount_bps', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('started_at', sa.Float(), nullable=True))
        batch_op.create_index('ix_usage_org_created', ['organization_id', 'created_at'], unique=False)

    op.create_table('batches',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('organization_id', sa.String(length=64), nullable=False),
    sa.Column('api_key_id', sa.String(length=64), nullable=False),
    sa.Column('endpoint', sa.String(length=64), nullable=False),
    sa.Column('input_file_id', sa.String(length=64), nullable=False),
    sa.Column('completion_window', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('output_file_id', sa.String(length=64), nullable=True),
    sa.Column('error_file_id', sa.String(length=64), nullable=True),
    sa.Column('errors', sa.JSON(), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('completed', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.Column('in_progress_at', sa.Float(), nullable=True),
    sa.Column('finalizing_at', sa.Float(), nullable=True),
    sa.Column('completed_at', sa.Float(), nullable=True),
    sa.Column('failed_at', sa.Float(), nullable=True),
    sa.Column('expired_at', sa.Float(), nullable=True),
    sa.Column('cancelling_at', sa.Float(), nullable=True),
    sa.Column('cancelled_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batches_id'), ['id'], unique=True)
        batch_op.create_index(batch_op.f('ix_batches_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_batches_status'), ['status'], unique=False)

    op.create_table('batch_lines',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('batch_id', sa.String(length=64), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('custom_id', sa.String(length=512), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], ),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('batch_id', 'line_no', name='uq_batch_lines_batch_line')
    )
    with op.batch_alter_table('batch_lines', schema=None) as batch_op:
        batch_op.create_index('ix_batch_lines_batch_status', ['batch_id', 'status'], unique=False)


def downgrade() -> None:
    op.drop_table('batch_lines')
    op.drop_table('batches')
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_org_created')
        batch_op.drop_column('started_at')
        batch_op.drop_column('discount_bps')
        batch_op.drop_column('batch_id')
        batch_op.drop_column('deployment_id')
        batch_op.drop_column('usage_type')
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.drop_column('monthly_spend_limit_micro_usd')
