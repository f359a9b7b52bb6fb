"""accounts.balance_loaded_at: when the creditor last loaded a balance, so that a later figure
is taken less what PayBot collected since (a balance is never put back above what was paid)

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

import bot.ledger.models

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('accounts') as batch:
        batch.add_column(sa.Column('balance_loaded_at', bot.ledger.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('accounts') as batch:
        batch.drop_column('balance_loaded_at')
