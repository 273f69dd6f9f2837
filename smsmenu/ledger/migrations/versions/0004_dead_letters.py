"""dead letters; acknowledged shortcuts of the embedded worker

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from smsmenu.ledger.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=21), nullable=False),
        sa.Column("destination", sa.String(length=21), nullable=False),
        sa.Column("transport", sa.String(length=4), nullable=False),
        sa.Column("text", sa.String(length=320), nullable=False),
        sa.Column("error", sa.String(length=400), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index(
        op.f("ix_dead_letters_message_id"), "dead_letters", ["message_id"], unique=False
    )
    op.create_index(
        op.f("ix_dead_letters_created_at"), "dead_letters", ["created_at"], unique=False
    )
    op.create_table(
        "shortcut_acks",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("acked_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_shortcut_acks")),
    )


def downgrade() -> None:
    op.drop_table("shortcut_acks")
    op.drop_index(op.f("ix_dead_letters_created_at"), table_name="dead_letters")
    op.drop_index(op.f("ix_dead_letters_message_id"), table_name="dead_letters")
    op.drop_table("dead_letters")
