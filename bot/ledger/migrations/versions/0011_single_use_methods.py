"""payment_methods.single_use: a method added by a session proved only by knowledge answers
pays that one payment and is never listed or chosen afterwards

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('payment_methods') as batch:
        batch.add_column(
            sa.Column('single_use', sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table('payment_methods') as batch:
        batch.drop_column('single_use')
