"""file token counts: tokens of a fine-tune file, its longest example and which tokenizer counted them

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('n_tokens', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('max_example_tokens', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('tokenizer', sa.String(length=256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_column('tokenizer')
        batch_op.drop_column('max_example_tokens')
        batch_op.drop_column('n_tokens')
