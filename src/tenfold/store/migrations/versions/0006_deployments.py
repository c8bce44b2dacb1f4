"""dedicated deployments: deployments, replicas, deployment adapters, leases; replica time on usage rows

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('deployments',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('organization_id', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=True),
    sa.Column('base_model', sa.String(length=256), nullable=False),
    sa.Column('hardware_profile', sa.String(length=64), nullable=False),
    sa.Column('engine', sa.String(length=32), nullable=False),
    sa.Column('min_replicas', sa.Integer(), nullable=False),
    sa.Column('max_replicas', sa.Integer(), nullable=False),
    sa.Column('target_rps', sa.Float(), nullable=False),
    sa.Column('target_latency_p95_ms', sa.Float(), nullable=False),
    sa.Column('scale_down_window_s', sa.Float(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('secret', sa.String(length=128), nullable=False),
    sa.Column('desired_replicas', sa.Integer(), nullable=False),
    sa.Column('last_change_at', sa.Float(), nullable=False),
    sa.Column('last_decision', sa.JSON(), nullable=True),
    sa.Column('start_failures', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('deleted_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deployments_id'), ['id'], unique=True)
        batch_op.create_index(batch_op.f('ix_deployments_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_deployments_state'), ['state'], unique=False)

    op.create_table('deployment_adapters',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('deployment_id', sa.String(length=64), nullable=False),
    sa.Column('organization_id', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('step', sa.Integer(), nullable=True),
    sa.Column('base_model', sa.String(length=256), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('digest', sa.String(length=128), nullable=False),
    sa.Column('verified', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ),
    sa.ForeignKeyConstraint(['job_id'], ['fine_tuning_jobs.id'], ),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('deployment_id', 'model', name='uq_deployment_adapters_dep_model')
    )
    with op.batch_alter_table('deployment_adapters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deployment_adapters_deployment_id'), ['deployment_id'], unique=False)

    op.create_table('deployment_replicas',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('deployment_id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('endpoint', sa.String(length=256), nullable=True),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('ready_at', sa.Float(), nullable=True),
    sa.Column('stopped_at', sa.Float(), nullable=True),
    sa.Column('last_seen_at', sa.Float(), nullable=True),
    sa.Column('billed_until', sa.Float(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('deployment_replicas', schema=None) as batch_op:
        batch_op.create_index('ix_deployment_replicas_dep_state', ['deployment_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_deployment_replicas_id'), ['id'], unique=True)

    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('accelerator_type', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('accelerator_seconds', sa.Float(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_column('accelerator_seconds')
        batch_op.drop_column('accelerator_type')

    with op.batch_alter_table('deployment_replicas', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deployment_replicas_id'))
        batch_op.drop_index('ix_deployment_replicas_dep_state')

    op.drop_table('deployment_replicas')
    with op.batch_alter_table('deployment_adapters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deployment_adapters_deployment_id'))

    op.drop_table('deployment_adapters')
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deployments_state'))
        batch_op.drop_index(batch_op.f('ix_deployments_organization_id'))
        batch_op.drop_index(batch_op.f('ix_deployments_id'))

    op.drop_table('deployments')
    op.drop_table('leases')
