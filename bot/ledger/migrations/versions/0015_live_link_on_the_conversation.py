"""The live link on the conversation: conversations.live_link_id (links.id) and live_link_sealed
(its raw token, sealed with a key derived from SECRET_KEY), so a turn finds the link to re-send
by its key instead of reading the conversation's texts back. Conversations from before start
with none and mint a new link on their next prompt.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('live_link_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('live_link_sealed', sa.String(length=160), nullable=True))
        batch.create_foreign_key(
            op.f('fk_conversations_live_link_id_links'), 'links', ['live_link_id'], ['id'],
            ondelete='SET NULL',
        )


def downgrade() -> None:
    with op.batch_alter_table('conversations') as batch:
        batch.drop_constraint(op.f('fk_conversations_live_link_id_links'), type_='foreignkey')
        batch.drop_column('live_link_sealed')
        batch.drop_column('live_link_id')
