"""Sessions (de)serialise to JSON and refuse what is not one (pure)."""

import json

import pytest

from smsmenu.ledger.api import Kind
from smsmenu.menus.sealing import Sealer
from smsmenu.menus.session import (
    IDLE,
    CorruptSession,
    Pending,
    PendingRecharge,
    PendingRetry,
    Session,
)


@pytest.mark.parametrize(
    "pending",
    [
        None,
        PendingRetry(3, "13912345678", 5000, 1_700_000_060.0, "k1"),
        PendingRecharge(Kind.PHS, "02712345678", 3000, "13800000009", 1_700_000_060.0, "k2"),
    ],
)
def test_round_trip(pending: Pending | None) -> None:
    session = Session(
        menu="agent",
        agent_id=7,
        states=("session", "rc_amount"),
        data={"kind": "mobile", "number": "13812345678", "amount": 5000, "notify": None},
        touched=1_700_000_000.5,
        pending=pending,
        version=4,
    )
    again = Session.from_json(session.to_json())
    assert again == session
    json.loads(session.to_json())  # plain JSON


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        "[]",
        '{"f": 2}',
        '{"f": 2, "menu": "admin"}',
        '{"f":2,"menu":"agent","agent":null,"states":[],"data":{},"touched":0,'
        '"pending":null,"v":0}',
        '{"f":2,"menu":"agent","agent":"x","states":["idle"],"data":{},"touched":0,'
        '"pending":null,"v":0}',
        '{"f":2,"menu":"agent","agent":1,"states":["idle"],"data":{},"touched":0,'
        '"pending":{"op":"transfer","expires":0},"v":0}',
        '{"f":2,"menu":"agent","agent":1,"states":["idle"],"data":{},"touched":0,'
        '"pending":{"op":"retry","tx":3},"v":0}',
        # the format before typed confirmations
        '{"f":1,"menu":"agent","agent":1,"states":["idle"],"data":{},"touched":0,'
        '"pending":null,"v":0}',
    ],
)
def test_corrupt(raw: str) -> None:
    with pytest.raises(CorruptSession):
        Session.from_json(raw)


def test_liveness_and_prune() -> None:
    session = Session(menu="agent", states=("session", "main"), touched=1000.0)
    assert session.live(1179.0, 180)
    assert not session.live(1180.0, 180)
    session.pending = PendingRetry(3, "13912345678", 5000, 1001.0, "k")
    session.prune(1000.0)
    assert session.pending is not None  # not expired yet
    session.end_dialogue()
    assert session.states == IDLE and not session.empty
    session.prune(1001.0)
    assert session.pending is None and session.empty


def test_sealing() -> None:
    sealer = Sealer(b"k" * 32)
    sealed = sealer.seal("135790", "18900000001")
    assert "135790" not in sealed
    assert sealer.open(sealed, "18900000001") == "135790"
    assert sealer.open(sealed, "18900000002") is None  # bound to its phone
    assert Sealer(b"x" * 32).open(sealed, "18900000001") is None  # another key
    tampered = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    assert sealer.open(tampered, "18900000001") is None
    assert sealer.open("garbage!", "18900000001") is None
    assert sealer.seal("135790", "p") != sealer.seal("135790", "p")  # random nonce
