"""initial ledger schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 11:49:53.781581
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from smsmenu.ledger.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(length=21), nullable=False),
        sa.Column("destination", sa.String(length=21), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("transport", sa.String(length=4), nullable=False),
        sa.Column("ussd_session", sa.Integer(), nullable=True),
        sa.Column("ussd_umr", sa.Integer(), nullable=True),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("ref", sa.Integer(), nullable=True),
        sa.Column("dedup_key", sa.String(length=240), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("smsc_message_id", sa.String(length=65), nullable=True),
        sa.Column("submitted_at", UTCDateTime(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("error", sa.String(length=400), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_outbox_dedup_key")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_destination"), ["destination"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_outbox_smsc_message_id"), ["smsc_message_id"], unique=False
        )
        batch_op.create_index("ix_outbox_status_next", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "txns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("op", sa.String(length=24), nullable=False),
        sa.Column("fingerprint", sa.String(length=400), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("number", sa.String(length=16), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("ref", sa.Integer(), nullable=True),
        sa.Column("balance_after", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_txns")),
        sa.UniqueConstraint("key", name=op.f("uq_txns_key")),
    )
    with op.batch_alter_table("txns", schema=None) as batch_op:
        batch_op.create_index("ix_txns_agent_created", ["agent_id", "created_at"], unique=False)

    op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("bound_phone", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("commission_bp", sa.Integer(), nullable=False),
        sa.Column("trade_hash", sa.String(length=200), nullable=False),
        sa.Column("mgmt_hash", sa.String(length=200), nullable=False),
        sa.Column("pin_failures", sa.Integer(), nullable=False),
        sa.Column("pin_locked_until", UTCDateTime(), nullable=True),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_agents_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("account_id", name=op.f("uq_agents_account_id")),
        sa.UniqueConstraint("bound_phone", name=op.f("uq_agents_bound_phone")),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agents_phone"), ["phone"], unique=False)

    op.create_table(
        "lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("txn_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_lines_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["txn_id"], ["txns.id"], name=op.f("fk_lines_txn_id_txns")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lines")),
    )
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lines_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_lines_txn_id"), ["txn_id"], unique=False)

    op.create_table(
        "subscribers",
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("billing", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_subscribers_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_subscribers")),
        sa.UniqueConstraint("account_id", name=op.f("uq_subscribers_account_id")),
    )
    op.create_table(
        "recharges",
        sa.Column("tx_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("commission_fen", sa.BigInteger(), nullable=False),
        sa.Column("debit_fen", sa.BigInteger(), nullable=False),
        sa.Column("notify", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("float_after_fen", sa.BigInteger(), nullable=True),
        sa.Column("invoice_printed", sa.Boolean(), nullable=False),
        sa.Column("retry_of", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_recharges_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(["tx_id"], ["txns.id"], name=op.f("fk_recharges_tx_id_txns")),
        sa.PrimaryKeyConstraint("tx_id", name=op.f("pk_recharges")),
    )
    with op.batch_alter_table("recharges", schema=None) as batch_op:
        batch_op.create_index(
            "ix_recharges_agent_created", ["agent_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_recharges_number", ["number"], unique=False)
        batch_op.create_index("ix_recharges_status", ["status"], unique=False)

    op.create_table(
        "resolutions",
        sa.Column("tx_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tx_id"], ["recharges.tx_id"], name=op.f("fk_resolutions_tx_id_recharges")
        ),
        sa.PrimaryKeyConstraint("tx_id", name=op.f("pk_resolutions")),
    )
    # The operator's system accounts, with fixed ids (smsmenu.ledger.models.SYSTEM_ACCOUNTS).
    accounts = sa.table(
        "accounts",
        sa.column("id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("balance", sa.BigInteger()),
        sa.column("pending", sa.BigInteger()),
    )
    op.bulk_insert(
        accounts,
        [
            {"id": 1, "kind": "cash", "balance": 0, "pending": 0},
            {"id": 2, "kind": "commission_expense", "balance": 0, "pending": 0},
            {"id": 3, "kind": "refunds", "balance": 0, "pending": 0},
            {"id": 4, "kind": "billing", "balance": 0, "pending": 0},
        ],
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SELECT setval(pg_get_serial_sequence('accounts', 'id'), 100)")


def downgrade() -> None:
    op.drop_table("resolutions")
    with op.batch_alter_table("recharges", schema=None) as batch_op:
        batch_op.drop_index("ix_recharges_status")
        batch_op.drop_index("ix_recharges_number")
        batch_op.drop_index("ix_recharges_agent_created")

    op.drop_table("recharges")
    op.drop_table("subscribers")
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lines_txn_id"))
        batch_op.drop_index(batch_op.f("ix_lines_account_id"))

    op.drop_table("lines")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agents_phone"))

    op.drop_table("agents")
    with op.batch_alter_table("txns", schema=None) as batch_op:
        batch_op.drop_index("ix_txns_agent_created")

    op.drop_table("txns")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_status_next")
        batch_op.drop_index(batch_op.f("ix_outbox_smsc_message_id"))
        batch_op.drop_index(batch_op.f("ix_outbox_destination"))

    op.drop_table("outbox")
    op.drop_table("accounts")
