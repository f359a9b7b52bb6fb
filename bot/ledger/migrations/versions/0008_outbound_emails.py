"""outbound emails: receipts and notices survive a stop between the commit and the send

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

import bot.ledger.models

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbound_emails',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('to_address', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('text_body', sa.Text(), nullable=False),
    sa.Column('html_body', sa.Text(), nullable=False),
    sa.Column('sealed', sa.Boolean(), nullable=False),
    sa.Column('transactional', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('not_before', bot.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', bot.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', bot.ledger.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sent_at', bot.ledger.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('provider_message_id', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_outbound_emails_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbound_emails'))
    )
    with op.batch_alter_table('outbound_emails', schema=None) as batch_op:
        batch_op.create_index('ix_outbound_emails_status', ['status', 'not_before'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbound_emails', schema=None) as batch_op:
        batch_op.drop_index('ix_outbound_emails_status')
    op.drop_table('outbound_emails')
