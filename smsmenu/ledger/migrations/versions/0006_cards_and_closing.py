"""recharge cards, add-ons, prepaid validity, closing a subscriber account

Card batches and cards (the PIN only as a keyed hash, ``ledger.cards``), the wrong card PINs
counted per card and per phone, allowances (data packs and plans), the subscribers' validity
date, the verification codes of 销户, and two system accounts: the card liability (5) and the
add-on sales (6). On PostgreSQL account ids start above 100, so 5 and 6 are free; a SQLite
file may have given them to subscribers or floats: those accounts move to new ids first.

On PostgreSQL the recharge's booking (``ledger_book``, and ``ledger_recharge`` and
``ledger_resolve`` that call it) takes the validity a top-up adds (``p_valid_days`` from
``p_today``, computed by Python from the amount bands, ``recharge_plan.Validity``): a prepaid
target's ``valid_until`` becomes the later of it and today, plus those days (never shortened),
in the same round trip as the credit; the receipt gets the validity clause between the markers
of ``ledger.notices`` (or loses it: postpaid), and the functions return the date
(``target_valid``). ``ledger_admit`` locks the target (``FOR NO KEY UPDATE``): a 销户 that
has locked the number (``ledger.closing``) is waited for and seen, so that no recharge credits a
number closed meanwhile (and a 销户 waits for a recharge admitted before it, whose credit it
refunds). The lock is exclusive because the booking updates the row (``valid_until``): two
recharges of one number holding it shared would each wait for the other to upgrade (a deadlock,
seen with eight workers on one float); ``ledger_resolve`` takes the target before the float,
in the order ``ledger_admit`` does.
The three also take the account the commission is booked to (``p_commission_account``, after
the notices: ``recharge_plan.notice_args``), where 0005 wrote it to account 2, a copy in SQL of
``models.COMMISSION_EXPENSE``.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

from smsmenu.ledger.models import UTCDateTime

_0005 = importlib.import_module("smsmenu.ledger.migrations.versions.0005_one_recharge_path")
MARK, TXN_MARK = _0005.MARK, _0005.TXN_MARK
# == ledger.notices.VALID_OPEN, VALID_CLOSE, DATE_MARK (a test checks that they agree)
VALID_OPEN, VALID_CLOSE, DATE_MARK = "\u2063<\u2063", "\u2063>\u2063", "\u2063~\u2063"
# 0005's notice arguments, and the commission's account after them
_NOTICES = _0005._NOTICES + ", p_commission_account integer"
_PASS_NOTICES = _0005._PASS_NOTICES + ", p_commission_account"

BOOK = r"""
CREATE FUNCTION ledger_book(
    p_txn integer, p_posted boolean, p_float integer, p_target integer, p_amount bigint,
    p_commission bigint, p_debit bigint, p_float_after bigint, p_now timestamptz,
    p_valid_days integer, p_today date,
    p_source text, p_agent_dest text, p_agent_text text, p_agent_transport text,
    p_agent_ussd_session integer, p_agent_ussd_umr integer, p_agent_final boolean,
    p_agent_dedup text, p_receipt_dest text, p_receipt_text text, p_receipt_dedup text,
    p_claimed_by text, p_claimed_until timestamptz, p_commission_account integer,
    OUT target_balance bigint, OUT agent_outbox integer, OUT receipt_outbox integer,
    OUT target_valid date
) LANGUAGE plpgsql AS $$
DECLARE
    v_status text := CASE WHEN p_claimed_by IS NULL THEN 'queued' ELSE 'sending' END;
    v_attempts integer := CASE WHEN p_claimed_by IS NULL THEN 0 ELSE 1 END;
    v_receipt text;
BEGIN
    IF p_posted THEN
        UPDATE accounts SET balance = balance + p_amount WHERE id = p_target
            RETURNING balance INTO target_balance;
        UPDATE subscribers SET valid_until = CASE WHEN p_valid_days > 0
                THEN GREATEST(COALESCE(valid_until, p_today), p_today) + p_valid_days
                ELSE valid_until END
            WHERE account_id = p_target AND billing = 'prepaid'
            RETURNING valid_until INTO target_valid;
        INSERT INTO lines (txn_id, account_id, amount_fen)
            VALUES (p_txn, p_target, p_amount), (p_txn, p_commission_account, -p_commission),
                (p_txn, p_float, -p_debit);
    END IF;
    INSERT INTO outbox (created_at, source, destination, text, transport, ussd_session, ussd_umr,
            final, kind, ref, dedup_key, status, attempts, next_attempt_at, claimed_by,
            claimed_until)
        VALUES (p_now, p_source, p_agent_dest,
            replace(replace(p_agent_text, 'MARK', ledger_yuan(p_float_after)), 'TXN',
                p_txn::text),
            p_agent_transport, p_agent_ussd_session, p_agent_ussd_umr, p_agent_final,
            'agent_result', p_txn, p_agent_dedup, v_status, v_attempts, p_now, p_claimed_by,
            p_claimed_until)
        RETURNING id INTO agent_outbox;
    IF p_posted AND p_receipt_dest IS NOT NULL THEN
        v_receipt := replace(replace(p_receipt_text, 'MARK', ledger_yuan(target_balance)), 'TXN',
            p_txn::text);
        IF target_valid IS NULL THEN
            v_receipt := regexp_replace(v_receipt, 'OPEN.*CLOSE', '');
        ELSE
            v_receipt := replace(replace(replace(v_receipt, 'OPEN', ''), 'CLOSE', ''), 'DATE',
                to_char(target_valid, 'YYYY-MM-DD'));
        END IF;
        INSERT INTO outbox (created_at, source, destination, text, transport, final, kind, ref,
                dedup_key, status, attempts, next_attempt_at, claimed_by, claimed_until)
            VALUES (p_now, p_source, p_receipt_dest, v_receipt,
                'sms', true, 'target_receipt', p_txn, p_receipt_dedup, v_status, v_attempts,
                p_now, p_claimed_by, p_claimed_until)
            RETURNING id INTO receipt_outbox;
    END IF;
END
$$
"""

RECHARGE = f"""
CREATE FUNCTION ledger_recharge({_0005._TAKE_IN}, p_valid_days integer, p_today date,
    {_NOTICES},
    OUT outcome text, OUT txn integer, OUT float_after bigint, OUT target_balance bigint,
    OUT available bigint, OUT agent_outbox integer, OUT receipt_outbox integer,
    OUT agent_version integer, OUT target_valid date
) LANGUAGE plpgsql AS $$
DECLARE
    v_admit record;
    v_book record;
BEGIN{_0005._ADMIT_CALL}
    UPDATE accounts SET balance = balance - p_debit
        WHERE id = p_float AND balance - pending >= p_debit
        RETURNING balance - pending INTO float_after;
    IF NOT FOUND THEN
        SELECT balance - pending INTO available FROM accounts WHERE id = p_float;
        outcome := 'funds';
        RETURN;
    END IF;{_0005._STORE_TXN}
    INSERT INTO recharges (tx_id, agent_id, number, kind, amount_fen, commission_fen, debit_fen,
            notify, status, float_after_fen, invoice_printed, retry_of, created_at, resolved_at)
        VALUES (txn, p_agent, p_number, p_kind, p_amount, p_commission, p_debit,
            p_notify, 'succeeded', float_after, false, p_retry_of, p_now, p_now);
    SELECT * INTO v_book FROM ledger_book(txn, true, p_float, v_admit.target_account, p_amount,
        p_commission, p_debit, float_after, p_now, p_valid_days, p_today,{_PASS_NOTICES});
    target_balance := v_book.target_balance;
    target_valid := v_book.target_valid;
    agent_outbox := v_book.agent_outbox;
    receipt_outbox := v_book.receipt_outbox;
    outcome := 'ok';
END
$$
"""

RESOLVE = f"""
CREATE FUNCTION ledger_resolve(
    p_txn integer, p_posted boolean, p_error text, p_now timestamptz, p_valid_days integer,
    p_today date,{_NOTICES},
    OUT outcome text, OUT float_after bigint, OUT target_balance bigint,
    OUT agent_outbox integer, OUT receipt_outbox integer, OUT target_valid date
) LANGUAGE plpgsql AS $$
DECLARE
    v_rec record;
    v_book record;
BEGIN
    INSERT INTO resolutions (tx_id, outcome, created_at)
        VALUES (p_txn, CASE WHEN p_posted THEN 'posted' ELSE 'voided' END, p_now)
        ON CONFLICT (tx_id) DO NOTHING;
    IF NOT FOUND THEN
        outcome := 'resolved';  -- resolved already (by recovery or a concurrent call)
        RETURN;
    END IF;
    SELECT r.amount_fen, r.commission_fen, r.debit_fen, a.account_id AS float_account,
            s.account_id AS target_account
        INTO v_rec
        FROM recharges r JOIN agents a ON a.id = r.agent_id
            JOIN subscribers s ON s.number = r.number
        WHERE r.tx_id = p_txn
        FOR NO KEY UPDATE OF s;  -- the target before the float, as ledger_admit takes them
    IF p_posted THEN
        UPDATE accounts SET balance = balance - v_rec.debit_fen,
                pending = pending - v_rec.debit_fen
            WHERE id = v_rec.float_account RETURNING balance - pending INTO float_after;
    ELSE
        UPDATE accounts SET pending = pending - v_rec.debit_fen
            WHERE id = v_rec.float_account RETURNING balance - pending INTO float_after;
    END IF;
    UPDATE recharges SET status = CASE WHEN p_posted THEN 'succeeded' ELSE 'failed' END,
            float_after_fen = float_after, resolved_at = p_now, error = p_error
        WHERE tx_id = p_txn;
    SELECT * INTO v_book FROM ledger_book(p_txn, p_posted, v_rec.float_account,
        v_rec.target_account, v_rec.amount_fen, v_rec.commission_fen, v_rec.debit_fen,
        float_after, p_now, p_valid_days, p_today,{_PASS_NOTICES});
    target_balance := v_book.target_balance;
    target_valid := v_book.target_valid;
    agent_outbox := v_book.agent_outbox;
    receipt_outbox := v_book.receipt_outbox;
    outcome := 'ok';
END
$$
"""


# ledger_admit of 0005 with the target read FOR NO KEY UPDATE (see the module notes).
_TARGET_READ = """    SELECT account_id INTO target_account FROM subscribers
        WHERE number = p_number AND kind = p_kind AND status <> 'closed';"""
assert _TARGET_READ in _0005.ADMIT
ADMIT = _0005.ADMIT.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION").replace(
    _TARGET_READ, _TARGET_READ[:-1] + "\n        FOR NO KEY UPDATE;"
)


def _marked(text: str) -> str:
    for name, mark in (
        ("MARK", MARK),
        ("TXN", TXN_MARK),
        ("OPEN", VALID_OPEN),
        ("CLOSE", VALID_CLOSE),
        ("DATE", DATE_MARK),
    ):
        text = text.replace(f"'{name}'", f"'{mark}'").replace(f"'{name}.*", f"'{mark}.*")
        text = text.replace(f".*{name}'", f".*{mark}'")
    return text


FUNCTIONS = [_marked(text) for text in (BOOK, RECHARGE, RESOLVE)]
DROP_FUNCTIONS = [
    "DROP FUNCTION ledger_resolve",
    "DROP FUNCTION ledger_recharge",
    "DROP FUNCTION ledger_book",
]

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
    if op.get_bind().dialect.name == "postgresql":
        for statement in [*DROP_FUNCTIONS, *FUNCTIONS, ADMIT]:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in DROP_FUNCTIONS:
            op.execute(statement)
        book, recharge, resolve = (_0005.FUNCTIONS[i] for i in (1, 2, 4))
        admit = _0005.ADMIT.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
        for statement in (book, recharge, resolve, admit):
            op.execute(statement)
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
