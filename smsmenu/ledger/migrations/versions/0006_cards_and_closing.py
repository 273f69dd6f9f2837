"""recharge cards, add-ons, prepaid validity, closing a subscriber account

Card batches and cards (the PIN only as a keyed hash, ``ledger.cards``), the wrong card PINs
counted per card and per phone, allowances (data packs and plans), the subscribers' validity
date, the verification codes of 销户, and two system accounts: the card liability (5) and the
add-on sales (6). On PostgreSQL account ids start above 100, so 5 and 6 are free; a SQLite
file may have given them to subscribers or floats: those accounts move to new ids first.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from smsmenu.ledger.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NEW_SYSTEM_ACCOUNTS = {5: "card_liability", 6: "addon_sales"}
# Every column that names an account (moved with it).
_ACCOUNT_REFERENCES = (
    ("subscribers", "account_id"),
    ("agents", "account_id"),
    ("lines", "account_id"),
)


def _free_system_ids() -> None:
    """Move accounts that hold ids 5 and 6 (SQLite only: PostgreSQL's start above 100)."""
    conn = op.get_bind()
    for account_id in NEW_SYSTEM_ACCOUNTS:
        row = conn.execute(
            sa.text("SELECT kind, balance, pending FROM accounts WHERE id = :id"),
            {"id": account_id},
        ).first()
        if row is None:
            continue
        new_id = conn.execute(sa.text("SELECT max(id) + 1 FROM accounts")).scalar_one()
        conn.execute(
            sa.text("INSERT INTO accounts (id, kind, balance, pending) VALUES (:id, :k, :b, :p)"),
            {"id": new_id, "k": row.kind, "b": row.balance, "p": row.pending},
        )
        for table, column in _ACCOUNT_REFERENCES:
            conn.execute(
                sa.text(f"UPDATE {table} SET {column} = :new WHERE {column} = :old"),
                {"new": new_id, "old": account_id},
            )
        conn.execute(sa.text("DELETE FROM accounts WHERE id = :id"), {"id": account_id})


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _free_system_ids()
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
            {"id": id_, "kind": kind, "balance": 0, "pending": 0}
            for id_, kind in NEW_SYSTEM_ACCOUNTS.items()
        ],
    )
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.add_column(sa.Column("valid_until", sa.Date(), nullable=True))
        batch_op.add_column(
            sa.Column("card_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("card_locked_until", UTCDateTime(), nullable=True))
    op.create_table(
        "card_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("voided_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_batches")),
        sa.UniqueConstraint("name", name=op.f("uq_card_batches_name")),
    )
    op.create_table(
        "cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("value_fen", sa.BigInteger(), nullable=False),
        sa.Column("expires", sa.Date(), nullable=False),
        sa.Column("pin_salt", sa.String(length=32), nullable=False),
        sa.Column("pin_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.Column("redeemed_by", sa.String(length=16), nullable=True),
        sa.Column("txn_id", sa.Integer(), nullable=True),
        sa.Column("redeemed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["card_batches.id"], name=op.f("fk_cards_batch_id_card_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cards")),
        sa.UniqueConstraint("number", name=op.f("uq_cards_number")),
    )
    op.create_index(op.f("ix_cards_batch_id"), "cards", ["batch_id"], unique=False)
    op.create_table(
        "allowances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("data_mb", sa.Integer(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("txn_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["txn_id"], ["txns.id"], name=op.f("fk_allowances_txn_id_txns")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allowances")),
    )
    op.create_index(op.f("ix_allowances_number"), "allowances", ["number"], unique=False)
    op.create_table(
        "closing_codes",
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_closing_codes")),
    )


def downgrade() -> None:
    op.drop_table("closing_codes")
    op.drop_index(op.f("ix_allowances_number"), table_name="allowances")
    op.drop_table("allowances")
    op.drop_index(op.f("ix_cards_batch_id"), table_name="cards")
    op.drop_table("cards")
    op.drop_table("card_batches")
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.drop_column("card_locked_until")
        batch_op.drop_column("card_failures")
        batch_op.drop_column("valid_until")
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT 1 FROM lines WHERE account_id IN (5, 6) LIMIT 1")).first():
        raise RuntimeError("cards were redeemed or add-ons sold: 0006 cannot be undone")
    op.execute("DELETE FROM accounts WHERE id IN (5, 6)")
