"""second factor limits: codes capped per account and destination, back-off per client

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

import bot.ledger.models

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('code_sends',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cap_key', sa.String(length=260), nullable=False),
    sa.Column('purpose', sa.String(length=30), nullable=False),
    sa.Column('sent_at', bot.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_code_sends'))
    )
    with op.batch_alter_table('code_sends', schema=None) as batch_op:
        batch_op.create_index('ix_code_sends_cap_key_at', ['cap_key', 'sent_at'], unique=False)

    with op.batch_alter_table('verification_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('client', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('challenge', sa.String(length=32), nullable=True))
        batch_op.alter_column('phone', existing_type=sa.String(length=20), nullable=True)
        batch_op.create_index(
            'ix_verification_subject_client_at', ['subject', 'client', 'attempted_at'],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f('ix_verification_attempts_challenge'), ['challenge'], unique=False
        )

    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending_subject', sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_column('pending_subject')
    op.execute("DELETE FROM verification_attempts WHERE phone IS NULL")  # web attempts
    with op.batch_alter_table('verification_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verification_attempts_challenge'))
        batch_op.drop_index('ix_verification_subject_client_at')
        batch_op.alter_column('phone', existing_type=sa.String(length=20), nullable=False)
        batch_op.drop_column('challenge')
        batch_op.drop_column('client')
        batch_op.drop_column('subject')
    with op.batch_alter_table('code_sends', schema=None) as batch_op:
        batch_op.drop_index('ix_code_sends_cap_key_at')
    op.drop_table('code_sends')
