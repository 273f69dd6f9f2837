"""One recharge write path: agent versions, and PostgreSQL's recharge in one round trip

``agents.version`` counts the changes of an agent's row. On PostgreSQL a trigger moves it on
every UPDATE of the row, and on every change of the status of its bound phone's subscriber row;
another announces every change (``NOTIFY smsmenu_agents, '<agent id>'``, sent at commit), so
that workers caching agents (``ledger.exec_pg``) forget them at once. The embedded SQLite
worker reads agents fresh in its own transactions and keeps the column at 0.

The recharge functions replace ``ledger_post_recharge`` and the group-commit batch
``ledger_post_recharges``. Python plans a recharge on what it knows of the agent (its cached
row, of ``p_version``) and passes the writes; the functions check, in the same round trip, what
Python could not know or assumed (``ledger_admit``):

- the agent is as planned (``version``, read FOR UPDATE: nothing changes it meanwhile), else
  ``stale``: Python reads it again and plans again;
- the key is not stored yet (``key``: the caller gets the first result; a concurrent twin
  still fails on the unique index) and, for a one-message shortcut, no identical recharge is in
  the duplicate window (``duplicate``, SPEC §3);
- the target exists, has the chosen kind and is not closed; an area-coded notify number is a
  PHS subscriber not closed (``target``, ``notify``: Python reads and refuses by its rules);
- the float covers the debit (``funds``, with the available balance): a guarded UPDATE.

``ledger_recharge`` (internal billing: one transaction, one round trip that is also its commit)
debits, stores the txn (its id from the sequence), clears the count of wrong passwords when
Python says so (and replaces an older release's password hash), writes the recharge row and
books it; it returns the agent row's version after its own writes, so that a worker's copy of
the row stays current. ``ledger_reserve`` and ``ledger_resolve`` are the two steps of a
recharge through an external billing system: reserve the funds, then (once per recharge: the
``resolutions`` row) post and book, or void. ``ledger_book`` is the booking both share: the
target credited, the journal lines, the notices, into whose texts it puts the balances and the
txn id (markers ``ledger.notices.MARK`` and ``TXN_MARK``), claimed at once for the worker
``p_claimed_by`` (its sender sends them without looking for them) or queued for any worker.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_0003 = importlib.import_module("smsmenu.ledger.migrations.versions.0003_password_guards")
MARK = _0003.MARK
TXN_MARK = "\u2063%\u2063"  # == ledger.notices.TXN_MARK (a test checks that they agree)

VERSIONS = [
    """
CREATE FUNCTION ledger_agent_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$$""",
    """
CREATE TRIGGER agents_version BEFORE UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION ledger_agent_version()""",
    """
CREATE FUNCTION ledger_agent_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('smsmenu_agents', NEW.id::text);
    RETURN NULL;
END
$$""",
    """
CREATE TRIGGER agents_changed AFTER INSERT OR UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION ledger_agent_changed()""",
    """
CREATE FUNCTION ledger_bound_phone_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agents SET version = version + 1 WHERE bound_phone = NEW.number;
    RETURN NULL;
END
$$""",
    """
CREATE TRIGGER subscribers_bound_phone AFTER UPDATE OF status ON subscribers
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION ledger_bound_phone_changed()""",
]

ADMIT = r"""
CREATE FUNCTION ledger_admit(
    p_key text, p_agent integer, p_version integer, p_number text, p_kind text, p_notify text,
    p_notify_phs boolean, p_amount bigint, p_duplicate_since timestamptz,
    OUT outcome text, OUT target_account integer
) LANGUAGE plpgsql AS $$
DECLARE
    v_version integer;
BEGIN
    SELECT version INTO v_version FROM agents WHERE id = p_agent FOR UPDATE;
    IF NOT FOUND OR v_version <> p_version THEN
        outcome := 'stale';
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM txns WHERE key = p_key) THEN
        outcome := 'key';
        RETURN;
    END IF;
    IF p_duplicate_since IS NOT NULL AND EXISTS (
            SELECT 1 FROM recharges WHERE agent_id = p_agent AND number = p_number
                AND amount_fen = p_amount AND created_at >= p_duplicate_since
                AND status <> 'failed') THEN
        outcome := 'duplicate';
        RETURN;
    END IF;
    SELECT account_id INTO target_account FROM subscribers
        WHERE number = p_number AND kind = p_kind AND status <> 'closed';
    IF NOT FOUND THEN
        outcome := 'target';
        RETURN;
    END IF;
    IF p_notify_phs AND NOT EXISTS (
            SELECT 1 FROM subscribers
                WHERE number = p_notify AND kind = 'phs' AND status <> 'closed') THEN
        outcome := 'notify';
        RETURN;
    END IF;
    outcome := 'ok';
END
$$
"""

BOOK = r"""
CREATE FUNCTION ledger_book(
    p_txn integer, p_posted boolean, p_float integer, p_target integer, p_amount bigint,
    p_commission bigint, p_debit bigint, p_float_after bigint, p_now timestamptz,
    p_source text, p_agent_dest text, p_agent_text text, p_agent_transport text,
    p_agent_ussd_session integer, p_agent_ussd_umr integer, p_agent_final boolean,
    p_agent_dedup text, p_receipt_dest text, p_receipt_text text, p_receipt_dedup text,
    p_claimed_by text, p_claimed_until timestamptz,
    OUT target_balance bigint, OUT agent_outbox integer, OUT receipt_outbox integer
) LANGUAGE plpgsql AS $$
DECLARE
    v_status text := CASE WHEN p_claimed_by IS NULL THEN 'queued' ELSE 'sending' END;
    v_attempts integer := CASE WHEN p_claimed_by IS NULL THEN 0 ELSE 1 END;
BEGIN
    IF p_posted THEN
        UPDATE accounts SET balance = balance + p_amount WHERE id = p_target
            RETURNING balance INTO target_balance;
        INSERT INTO lines (txn_id, account_id, amount_fen)
            VALUES (p_txn, p_target, p_amount), (p_txn, 2, -p_commission),
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
        INSERT INTO outbox (created_at, source, destination, text, transport, final, kind, ref,
                dedup_key, status, attempts, next_attempt_at, claimed_by, claimed_until)
            VALUES (p_now, p_source, p_receipt_dest,
                replace(replace(p_receipt_text, 'MARK', ledger_yuan(target_balance)), 'TXN',
                    p_txn::text),
                'sms', true, 'target_receipt', p_txn, p_receipt_dedup, v_status, v_attempts,
                p_now, p_claimed_by, p_claimed_until)
            RETURNING id INTO receipt_outbox;
    END IF;
END
$$
"""

# The arguments every recharge function takes for its notices and their claim.
_NOTICES = """
    p_source text, p_agent_dest text, p_agent_text text, p_agent_transport text,
    p_agent_ussd_session integer, p_agent_ussd_umr integer, p_agent_final boolean,
    p_agent_dedup text, p_receipt_dest text, p_receipt_text text, p_receipt_dedup text,
    p_claimed_by text, p_claimed_until timestamptz"""
_PASS_NOTICES = """
            p_source, p_agent_dest, p_agent_text, p_agent_transport, p_agent_ussd_session,
            p_agent_ussd_umr, p_agent_final, p_agent_dedup, p_receipt_dest, p_receipt_text,
            p_receipt_dedup, p_claimed_by, p_claimed_until"""
# What ``ledger_admit`` checks, and the password's settling: the arguments of both steps that
# take a recharge in.
_TAKE_IN = """
    p_key text, p_fingerprint text, p_agent integer, p_version integer, p_float integer,
    p_number text, p_kind text, p_notify text, p_notify_phs boolean,
    p_amount bigint, p_commission bigint, p_debit bigint, p_retry_of integer, p_now timestamptz,
    p_duplicate_since timestamptz, p_clear_pin boolean, p_rehash_from text, p_rehash_to text"""
_STORE_TXN = """
    txn := nextval('txns_id_seq');
    INSERT INTO txns (id, key, op, fingerprint, agent_id, number, amount_fen, created_at)
        VALUES (txn, p_key, 'recharge', p_fingerprint, p_agent, p_number, p_amount, p_now);
    agent_version := p_version;
    IF p_clear_pin THEN
        UPDATE agents SET pin_failures = 0, pin_locked_until = NULL WHERE id = p_agent
            RETURNING version INTO agent_version;
    END IF;
    IF p_rehash_to IS NOT NULL THEN
        UPDATE agents SET trade_hash = p_rehash_to
            WHERE id = p_agent AND trade_hash = p_rehash_from
            RETURNING version INTO agent_version;
    END IF;"""
_ADMIT_CALL = """
    SELECT * INTO v_admit FROM ledger_admit(p_key, p_agent, p_version, p_number, p_kind,
        p_notify, p_notify_phs, p_amount, p_duplicate_since);
    IF v_admit.outcome <> 'ok' THEN
        outcome := v_admit.outcome;
        RETURN;
    END IF;"""

RECHARGE = f"""
CREATE FUNCTION ledger_recharge({_TAKE_IN},{_NOTICES},
    OUT outcome text, OUT txn integer, OUT float_after bigint, OUT target_balance bigint,
    OUT available bigint, OUT agent_outbox integer, OUT receipt_outbox integer,
    OUT agent_version integer
) LANGUAGE plpgsql AS $$
DECLARE
    v_admit record;
    v_book record;
BEGIN{_ADMIT_CALL}
    UPDATE accounts SET balance = balance - p_debit
        WHERE id = p_float AND balance - pending >= p_debit
        RETURNING balance - pending INTO float_after;
    IF NOT FOUND THEN
        SELECT balance - pending INTO available FROM accounts WHERE id = p_float;
        outcome := 'funds';
        RETURN;
    END IF;{_STORE_TXN}
    INSERT INTO recharges (tx_id, agent_id, number, kind, amount_fen, commission_fen, debit_fen,
            notify, status, float_after_fen, invoice_printed, retry_of, created_at, resolved_at)
        VALUES (txn, p_agent, p_number, p_kind, p_amount, p_commission, p_debit,
            p_notify, 'succeeded', float_after, false, p_retry_of, p_now, p_now);
    SELECT * INTO v_book FROM ledger_book(txn, true, p_float, v_admit.target_account, p_amount,
        p_commission, p_debit, float_after, p_now,{_PASS_NOTICES});
    target_balance := v_book.target_balance;
    agent_outbox := v_book.agent_outbox;
    receipt_outbox := v_book.receipt_outbox;
    outcome := 'ok';
END
$$
"""

RESERVE = f"""
CREATE FUNCTION ledger_reserve({_TAKE_IN},
    OUT outcome text, OUT txn integer, OUT available bigint, OUT agent_version integer
) LANGUAGE plpgsql AS $$
DECLARE
    v_admit record;
BEGIN{_ADMIT_CALL}
    UPDATE accounts SET pending = pending + p_debit
        WHERE id = p_float AND balance - pending >= p_debit;
    IF NOT FOUND THEN
        SELECT balance - pending INTO available FROM accounts WHERE id = p_float;
        outcome := 'funds';
        RETURN;
    END IF;{_STORE_TXN}
    INSERT INTO recharges (tx_id, agent_id, number, kind, amount_fen, commission_fen, debit_fen,
            notify, status, invoice_printed, retry_of, created_at)
        VALUES (txn, p_agent, p_number, p_kind, p_amount, p_commission, p_debit,
            p_notify, 'pending', false, p_retry_of, p_now);
    outcome := 'ok';
END
$$
"""

RESOLVE = f"""
CREATE FUNCTION ledger_resolve(
    p_txn integer, p_posted boolean, p_error text, p_now timestamptz,{_NOTICES},
    OUT outcome text, OUT float_after bigint, OUT target_balance bigint,
    OUT agent_outbox integer, OUT receipt_outbox integer
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
        WHERE r.tx_id = p_txn;
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
        float_after, p_now,{_PASS_NOTICES});
    target_balance := v_book.target_balance;
    agent_outbox := v_book.agent_outbox;
    receipt_outbox := v_book.receipt_outbox;
    outcome := 'ok';
END
$$
"""

FUNCTIONS = [
    text.replace("'MARK'", "'" + MARK + "'").replace("'TXN'", "'" + TXN_MARK + "'")
    for text in (ADMIT, BOOK, RECHARGE, RESERVE, RESOLVE)
]
DROP_FUNCTIONS = [
    "DROP FUNCTION ledger_resolve",
    "DROP FUNCTION ledger_reserve",
    "DROP FUNCTION ledger_recharge",
    "DROP FUNCTION ledger_book",
    "DROP FUNCTION ledger_admit",
]


def upgrade() -> None:
    op.add_column("agents", sa.Column("version", sa.Integer(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_post_recharges")
        op.execute("DROP FUNCTION ledger_post_recharge")
        for statement in VERSIONS + FUNCTIONS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for drop in DROP_FUNCTIONS:
            op.execute(drop)
        op.execute("DROP TRIGGER subscribers_bound_phone ON subscribers")
        op.execute("DROP TRIGGER agents_changed ON agents")
        op.execute("DROP TRIGGER agents_version ON agents")
        op.execute("DROP FUNCTION ledger_bound_phone_changed")
        op.execute("DROP FUNCTION ledger_agent_changed")
        op.execute("DROP FUNCTION ledger_agent_version")
        op.execute(_0003.POST_RECHARGE)
        op.execute(_0003.POST_RECHARGES)
    with op.batch_alter_table("agents") as batch_op:
        batch_op.drop_column("version")
