"""Management passwords counted; the recharge function checks the trade password's lock itself

``agents`` gets ``mgmt_failures`` and ``mgmt_locked_until`` (the management password's wrong
attempts in a row and its lock, like ``pin_failures`` / ``pin_locked_until`` for the trade
password; ``ledger.passwords``).

PostgreSQL: ``ledger_post_recharge`` (and the batch ``ledger_post_recharges`` that calls it) take
``p_pin_lock`` instead of ``p_reset_pin``. The trade password was found right before the call;
the function reads the agent's count and lock again and, if a confirmed lock holds (not the one
the attempt's own count set, ``p_pin_lock``; not the provisional one of three attempts being
checked, which has the count at 3 = ``rules.PIN_MAX_FAILURES``), writes nothing and returns
``locked_until``. After the money writes (accounts locked first, as the batch does) it clears
the count if there is one, under the same guard: a lock set in between raises
``object_not_in_prerequisite_state`` and nothing of the recharge stays. A trade password hash
of an older release that verified is replaced by the peppered one the caller passes
(``p_rehash_from`` → ``p_rehash_to``, ``ledger.pins``), in the same transaction.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

from smsmenu.ledger.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_0002 = importlib.import_module("smsmenu.ledger.migrations.versions.0002_pg_post_recharge")
MARK = _0002.MARK

POST_RECHARGE = r"""
CREATE FUNCTION ledger_post_recharge(
    p_txn integer, p_key text, p_fingerprint text, p_agent integer, p_number text, p_kind text,
    p_amount bigint, p_commission bigint, p_debit bigint, p_notify text, p_retry_of integer,
    p_now timestamptz, p_float integer, p_target integer, p_pin_lock timestamptz, p_source text,
    p_agent_dest text, p_agent_text text, p_agent_transport text, p_agent_ussd_session integer,
    p_agent_ussd_umr integer, p_agent_final boolean, p_agent_dedup text,
    p_receipt_dest text, p_receipt_text text, p_receipt_dedup text,
    p_rehash_from text, p_rehash_to text,
    OUT txn integer, OUT float_after bigint, OUT target_balance bigint,
    OUT locked_until timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    v_failures integer;
    v_locked timestamptz;
BEGIN
    SELECT pin_failures, pin_locked_until INTO v_failures, v_locked
        FROM agents WHERE id = p_agent;
    IF v_locked > p_now AND v_locked IS DISTINCT FROM p_pin_lock AND v_failures < 3 THEN
        locked_until := v_locked;
        RETURN;  -- locked since the password was checked: nothing written
    END IF;
    UPDATE accounts SET balance = balance - p_debit
        WHERE id = p_float AND balance - pending >= p_debit
        RETURNING balance - pending INTO float_after;
    IF NOT FOUND THEN
        -- A twin with the same key may have spent the money while this call waited for the
        -- float's lock: then the key is what stops this one (the caller gets the first result).
        IF EXISTS (SELECT 1 FROM txns WHERE key = p_key) THEN
            RAISE unique_violation USING MESSAGE = 'idempotency key stored meanwhile';
        END IF;
        RETURN;  -- the guard said no: nothing written, all results NULL
    END IF;
    INSERT INTO txns (id, key, op, fingerprint, agent_id, number, amount_fen, created_at)
        VALUES (p_txn, p_key, 'recharge', p_fingerprint, p_agent, p_number, p_amount, p_now);
    txn := p_txn;
    UPDATE accounts SET balance = balance + p_amount WHERE id = p_target
        RETURNING balance INTO target_balance;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no target account %', p_target;
    END IF;
    IF v_failures <> 0 OR v_locked IS NOT NULL THEN
        UPDATE agents SET pin_failures = 0, pin_locked_until = NULL
            WHERE id = p_agent AND (pin_locked_until IS NULL OR pin_locked_until <= p_now
                OR pin_locked_until = p_pin_lock);
        IF NOT FOUND AND NOT EXISTS (
                SELECT 1 FROM agents WHERE id = p_agent AND pin_failures >= 3) THEN
            RAISE EXCEPTION 'trade password locked meanwhile'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END IF;
    IF p_rehash_to IS NOT NULL THEN
        UPDATE agents SET trade_hash = p_rehash_to
            WHERE id = p_agent AND trade_hash = p_rehash_from;
    END IF;
    INSERT INTO lines (txn_id, account_id, amount_fen)
        VALUES (txn, p_target, p_amount), (txn, 2, -p_commission), (txn, p_float, -p_debit);
    INSERT INTO recharges (tx_id, agent_id, number, kind, amount_fen, commission_fen, debit_fen,
            notify, status, float_after_fen, invoice_printed, retry_of, created_at, resolved_at)
        VALUES (txn, p_agent, p_number, p_kind, p_amount, p_commission, p_debit,
            p_notify, 'succeeded', float_after, false, p_retry_of, p_now, p_now);
    INSERT INTO outbox (created_at, source, destination, text, transport, ussd_session, ussd_umr,
            final, kind, ref, dedup_key, status, attempts, next_attempt_at)
        VALUES (p_now, p_source, p_agent_dest,
            replace(p_agent_text, 'MARK', ledger_yuan(float_after)), p_agent_transport,
            p_agent_ussd_session, p_agent_ussd_umr, p_agent_final, 'agent_result', txn,
            p_agent_dedup, 'queued', 0, p_now);
    IF p_receipt_dest IS NOT NULL THEN
        INSERT INTO outbox (created_at, source, destination, text, transport, final, kind, ref,
                dedup_key, status, attempts, next_attempt_at)
            VALUES (p_now, p_source, p_receipt_dest,
                replace(p_receipt_text, 'MARK', ledger_yuan(target_balance)), 'sms', true,
                'target_receipt', txn, p_receipt_dedup, 'queued', 0, p_now);
    END IF;
END
$$
""".replace("'MARK'", "'" + MARK + "'")

#: A group-commit batch: the same writes per recharge, in one round trip and one commit. Every
#: account of the batch is locked first, in id order, so that batches never deadlock each other.
#: A guard that says no ('funds', 'locked') leaves nothing of that recharge and the others go
#: on; a key taken meanwhile (the caller sends each key once per batch) or a lock set between a
#: recharge's check and its count's clearing fails the whole batch, whose recharges the caller
#: then runs one by one.
POST_RECHARGES = r"""
CREATE FUNCTION ledger_post_recharges(
    p_txn integer[], p_key text[], p_fingerprint text[], p_agent integer[], p_number text[],
    p_kind text[], p_amount bigint[], p_commission bigint[], p_debit bigint[], p_notify text[],
    p_retry_of integer[], p_now timestamptz, p_float integer[], p_target integer[],
    p_pin_lock timestamptz[], p_source text, p_agent_dest text[], p_agent_text text[],
    p_agent_transport text[], p_agent_ussd_session integer[], p_agent_ussd_umr integer[],
    p_agent_final boolean[], p_agent_dedup text[], p_receipt_dest text[], p_receipt_text text[],
    p_receipt_dedup text[], p_rehash_from text[], p_rehash_to text[]
) RETURNS TABLE (
    i integer, outcome text, txn integer, float_after bigint, target_balance bigint,
    locked_until timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    posted record;
BEGIN
    PERFORM 1 FROM accounts WHERE id = ANY(p_float || p_target) ORDER BY id FOR UPDATE;
    FOR n IN 1 .. coalesce(array_length(p_txn, 1), 0) LOOP
        i := n;
        SELECT * INTO posted FROM ledger_post_recharge(
                p_txn[n], p_key[n], p_fingerprint[n], p_agent[n], p_number[n], p_kind[n],
                p_amount[n], p_commission[n], p_debit[n], p_notify[n], p_retry_of[n], p_now,
                p_float[n], p_target[n], p_pin_lock[n], p_source, p_agent_dest[n],
                p_agent_text[n], p_agent_transport[n], p_agent_ussd_session[n],
                p_agent_ussd_umr[n], p_agent_final[n], p_agent_dedup[n], p_receipt_dest[n],
                p_receipt_text[n], p_receipt_dedup[n], p_rehash_from[n], p_rehash_to[n]);
        outcome := CASE
            WHEN posted.locked_until IS NOT NULL THEN 'locked'
            WHEN posted.txn IS NULL THEN 'funds'
            ELSE 'ok' END;
        txn := posted.txn;
        float_after := posted.float_after;
        target_balance := posted.target_balance;
        locked_until := posted.locked_until;
        RETURN NEXT;
    END LOOP;
END
$$
"""


def _drop_functions() -> None:
    op.execute("DROP FUNCTION ledger_post_recharges")
    op.execute("DROP FUNCTION ledger_post_recharge")


def upgrade() -> None:
    op.add_column(
        "agents", sa.Column("mgmt_failures", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("agents", sa.Column("mgmt_locked_until", UTCDateTime(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        _drop_functions()
        op.execute(POST_RECHARGE)
        op.execute(POST_RECHARGES)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _drop_functions()
        op.execute(_0002.POST_RECHARGE)
        op.execute(_0002.POST_RECHARGES)
    with op.batch_alter_table("agents") as batch_op:
        batch_op.drop_column("mgmt_locked_until")
        batch_op.drop_column("mgmt_failures")
