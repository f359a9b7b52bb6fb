"""Languages and PayPal: accounts.language (`en` | `es`, loaded by the creditor),
conversations.language and language_asked_at (what a phone chose, and when Spanish was offered
on a detected message), payment_methods.label (a PayPal account's masked email)

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

import bot.ledger.models

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('accounts') as batch:
        batch.add_column(sa.Column('language', sa.String(length=2), server_default='en', nullable=False))
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('language', sa.String(length=2), nullable=True))
        batch.add_column(sa.Column('language_asked_at', bot.ledger.models.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('payment_methods') as batch:
        batch.add_column(sa.Column('label', sa.String(length=120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('payment_methods') as batch:
        batch.drop_column('label')
    with op.batch_alter_table('conversations') as batch:
        batch.drop_column('language_asked_at')
        batch.drop_column('language')
    with op.batch_alter_table('accounts') as batch:
        batch.drop_column('language')
