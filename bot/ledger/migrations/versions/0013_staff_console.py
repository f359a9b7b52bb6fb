"""The staff console (issue 14): a conversation's status (bot, waiting, agent, resolved) with
its reason, waiting-since and assignee in place of handled_by; who wrote each message; handoffs,
private notes, canned replies, wrong numbers; staff and their sessions; refunds; the agents'
outbound webhook queue; a creditor's brand and support contact

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

import bot.ledger.models

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

UTC = bot.ledger.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'handoffs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('conversation_id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=True),
        sa.Column('reason', sa.String(length=20), nullable=False),
        sa.Column('requested_at', UTC, nullable=False),
        sa.Column('timed_out_at', UTC, nullable=True),
        sa.Column('bot_resumed_at', UTC, nullable=True),
        sa.Column('claimed_at', UTC, nullable=True),
        sa.Column('claimed_by', sa.String(length=80), nullable=True),
        sa.Column('first_reply_at', UTC, nullable=True),
        sa.Column('resolved_at', UTC, nullable=True),
        sa.Column('resolved_by', sa.String(length=90), nullable=True),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_handoffs_account_id_accounts')),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_handoffs_conversation_id_conversations')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_handoffs')),
    )
    op.create_index('ix_handoffs_requested', 'handoffs', ['requested_at'])
    op.create_index(op.f('ix_handoffs_conversation_id'), 'handoffs', ['conversation_id'])

    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('status', sa.String(length=10), nullable=False, server_default='bot'))
        batch.add_column(sa.Column('reason', sa.String(length=20), nullable=True))
        batch.add_column(sa.Column('waiting_since', UTC, nullable=True))
        batch.add_column(sa.Column('assignee', sa.String(length=80), nullable=True))
        batch.add_column(sa.Column('handoff_id', sa.Integer(), nullable=True))
    # A conversation handed over before this revision had no owner yet: it is waiting.
    op.execute(
        "UPDATE conversations SET status = 'waiting', reason = 'asked', waiting_since = updated_at "
        "WHERE handled_by = 'agent'"
    )
    with op.batch_alter_table('conversations') as batch:
        batch.drop_column('handled_by')

    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('author', sa.String(length=90), nullable=True))

    op.create_table(
        'notes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('conversation_id', sa.Integer(), nullable=False),
        sa.Column('author', sa.String(length=80), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', UTC, nullable=False),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_notes_conversation_id_conversations')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notes')),
    )
    op.create_index(op.f('ix_notes_conversation_id'), 'notes', ['conversation_id'])
    op.create_table(
        'canned_replies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shortcut', sa.String(length=40), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_by', sa.String(length=80), nullable=True),
        sa.Column('created_at', UTC, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_canned_replies')),
        sa.UniqueConstraint('shortcut', name=op.f('uq_canned_replies_shortcut')),
    )
    op.create_table(
        'wrong_numbers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('phone', sa.String(length=20), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('reported_by', sa.String(length=90), nullable=False),
        sa.Column('reported_at', UTC, nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_wrong_numbers_account_id_accounts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_wrong_numbers')),
        sa.UniqueConstraint('phone', 'account_id', name=op.f('uq_wrong_numbers_phone')),
    )
    op.create_index(op.f('ix_wrong_numbers_phone'), 'wrong_numbers', ['phone'])
    op.create_index(op.f('ix_wrong_numbers_account_id'), 'wrong_numbers', ['account_id'])
    op.create_table(
        'staff',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=False),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('password_hash', sa.String(length=200), nullable=True),
        sa.Column('totp_secret', sa.String(length=200), nullable=True),
        sa.Column('setup_token_sha256', sa.String(length=64), nullable=True),
        sa.Column('setup_expires_at', UTC, nullable=True),
        sa.Column('failed_logins', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('locked_until', UTC, nullable=True),
        sa.Column('disabled_at', UTC, nullable=True),
        sa.Column('last_login_at', UTC, nullable=True),
        sa.Column('created_at', UTC, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_staff')),
        sa.UniqueConstraint('email', name=op.f('uq_staff_email')),
        sa.UniqueConstraint('name', name=op.f('uq_staff_name')),
        sa.UniqueConstraint('setup_token_sha256', name=op.f('uq_staff_setup_token_sha256')),
    )
    op.create_table(
        'staff_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_sha256', sa.String(length=64), nullable=False),
        sa.Column('csrf_token', sa.String(length=64), nullable=False),
        sa.Column('staff_id', sa.Integer(), nullable=False),
        sa.Column('ip_address', sa.String(length=45), nullable=True),
        sa.Column('user_agent', sa.String(length=400), nullable=True),
        sa.Column('created_at', UTC, nullable=False),
        sa.Column('last_seen_at', UTC, nullable=False),
        sa.Column('expires_at', UTC, nullable=False),
        sa.Column('revoked_at', UTC, nullable=True),
        sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_staff_sessions_staff_id_staff')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_sessions')),
        sa.UniqueConstraint('token_sha256', name=op.f('uq_staff_sessions_token_sha256')),
    )
    op.create_index(op.f('ix_staff_sessions_staff_id'), 'staff_sessions', ['staff_id'])
    op.create_table(
        'refunds',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('payment_id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('amount_cents', sa.BigInteger(), nullable=False),
        sa.Column('idempotency_key', sa.String(length=80), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('processor_ref', sa.String(length=64), nullable=True),
        sa.Column('failure_code', sa.String(length=64), nullable=True),
        sa.Column('reason', sa.String(length=200), nullable=True),
        sa.Column('requested_by', sa.String(length=90), nullable=False),
        sa.Column('created_at', UTC, nullable=False),
        sa.Column('updated_at', UTC, nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_refunds_account_id_accounts')),
        sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_refunds_payment_id_payments')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
        sa.UniqueConstraint('idempotency_key', name=op.f('uq_refunds_idempotency_key')),
    )
    op.create_index(op.f('ix_refunds_payment_id'), 'refunds', ['payment_id'])
    op.create_index(op.f('ix_refunds_account_id'), 'refunds', ['account_id'])
    with op.batch_alter_table('payments') as batch:
        batch.add_column(sa.Column('refunded_cents', sa.BigInteger(), nullable=False, server_default='0'))
    op.create_table(
        'agent_webhook_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('event', sa.String(length=30), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('next_attempt_at', UTC, nullable=False),
        sa.Column('last_error', sa.String(length=200), nullable=True),
        sa.Column('created_at', UTC, nullable=False),
        sa.Column('sent_at', UTC, nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_webhook_deliveries')),
    )
    op.create_index('ix_agent_webhook_due', 'agent_webhook_deliveries', ['status', 'next_attempt_at'])
    with op.batch_alter_table('creditors') as batch:
        batch.add_column(sa.Column('brand', sa.String(length=120), nullable=False, server_default=''))
        batch.add_column(sa.Column('support_contact', sa.String(length=200), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('creditors') as batch:
        batch.drop_column('support_contact')
        batch.drop_column('brand')
    op.drop_table('agent_webhook_deliveries')
    with op.batch_alter_table('payments') as batch:
        batch.drop_column('refunded_cents')
    op.drop_table('refunds')
    op.drop_table('staff_sessions')
    op.drop_table('staff')
    op.drop_table('wrong_numbers')
    op.drop_table('canned_replies')
    op.drop_table('notes')
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('author')
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('handled_by', sa.String(length=10), nullable=False, server_default='bot'))
    op.execute("UPDATE conversations SET handled_by = 'agent' WHERE status IN ('waiting', 'agent')")
    with op.batch_alter_table('conversations') as batch:
        batch.drop_column('handoff_id')
        batch.drop_column('assignee')
        batch.drop_column('waiting_since')
        batch.drop_column('reason')
        batch.drop_column('status')
    op.drop_table('handoffs')
