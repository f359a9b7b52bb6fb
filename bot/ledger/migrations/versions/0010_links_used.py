"""links: when a link's preset payment was made (its purpose is done: it answers 410)

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

import bot.ledger.models

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('links') as batch:
        batch.add_column(sa.Column('used_at', bot.ledger.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('links') as batch:
        batch.drop_column('used_at')
