"""The sans-I/O SMPP session, by tables and without sockets: every state against everything
either side may send, responses matched or not, bad PDUs, sequence numbers and their wrap."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsmenu.smpp import pdu
from smsmenu.smpp import session as session_module
from smsmenu.smpp.session import (
    MAX_SEQUENCE,
    Deliver,
    LocalProtocolError,
    RemoteProtocolError,
    Response,
    Session,
    State,
    Unbound,
)

OPEN, BINDING, BOUND, UNBINDING, CLOSED = State
RESP = pdu.RESP
SM = pdu.ShortMessage("10001", "13800000001", b"hello")
MO = pdu.ShortMessage("13800000001", "10001", "余额".encode("utf-16-be"), data_coding=8)
BODIES = {pdu.DELIVER_SM: MO.encode(), pdu.DATA_SM: pdu.encode_data_sm(MO)}
UNKNOWN = 0x00000200  # no SMPP 3.4 command
ERROR = RemoteProtocolError


def at(state: State) -> Session:
    """A session brought to ``state`` the way a connection gets there, nothing left to write."""
    session = Session()
    if state is CLOSED:
        session.close()
    if state in (BINDING, BOUND, UNBINDING):
        sequence = session.bind("smsmenu", "secret")
        if state is not BINDING:
            events = feed(session, pdu.Pdu(pdu.BIND_TRANSCEIVER | RESP, 0, sequence, b"smsc\x00"))
            assert events == [Response(sequence, pdu.BIND_TRANSCEIVER, 0, "smsc")]
        if state is UNBINDING:
            session.unbind()
    session.data_to_send()
    assert session.state is state
    return session


def feed(session: Session, *packets: pdu.Pdu) -> list[Any]:
    """Feeds ``packets``; every event until more bytes are needed."""
    session.receive_data(b"".join(p.encode() for p in packets))
    return list(iter(session.next_event, None))


def written(session: Session) -> list[pdu.Pdu]:
    return pdu.Framer().feed(session.data_to_send())


def heads(session: Session) -> list[tuple[int, int]]:
    """(command_id, command_status) of each PDU the session wrote."""
    return [(p.command_id, p.command_status) for p in written(session)]


def delivered(session: Session, command_id: int = pdu.DELIVER_SM, sequence: int = 7) -> Deliver:
    (event,) = feed(session, pdu.Pdu(command_id, 0, sequence, BODIES[command_id]))
    assert isinstance(event, Deliver)
    return event


# -- what we may send, per state ---------------------------------------------------------------

OUR_REQUESTS: dict[str, tuple[int, Callable[[Session], int]]] = {
    "bind": (pdu.BIND_TRANSCEIVER, lambda s: s.bind("smsmenu", "secret", "vma")),
    "submit": (pdu.SUBMIT_SM, lambda s: s.submit(SM)),
    "enquire_link": (pdu.ENQUIRE_LINK, lambda s: s.enquire_link()),
    "unbind": (pdu.UNBIND, lambda s: s.unbind()),
}
#: state -> {request: state after}; a request not listed is refused in that state.
OURS_ALLOWED: dict[State, dict[str, State]] = {
    OPEN: {"bind": BINDING},
    BINDING: {},
    BOUND: {"submit": BOUND, "enquire_link": BOUND, "unbind": UNBINDING},
    UNBINDING: {},
    CLOSED: {},
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("request_name", list(OUR_REQUESTS))
def test_our_requests_per_state(state: State, request_name: str) -> None:
    session = at(state)
    command_id, call = OUR_REQUESTS[request_name]
    after = OURS_ALLOWED[state].get(request_name)
    pending = dict(session.pending)
    if after is None:
        with pytest.raises(LocalProtocolError, match=f"cannot send {pdu.command_name(command_id)}"):
            call(session)
        assert session.state is state and dict(session.pending) == pending
        assert session.data_to_send() == b""
        return
    sequence = call(session)
    assert session.state is after
    assert session.pending[sequence] == command_id
    (packet,) = written(session)
    assert (packet.command_id, packet.command_status, packet.sequence) == (command_id, 0, sequence)


def test_request_bodies() -> None:
    session = Session()
    session.bind("smsmenu", "secret", "vma")
    (bind,) = written(session)
    assert pdu.Bind.decode(bind.body) == pdu.Bind("smsmenu", "secret", "vma")
    session = at(BOUND)
    session.submit(SM)
    session.enquire_link()
    session.unbind()
    submit, enquire, unbind = written(session)
    assert pdu.ShortMessage.decode(submit.body) == SM
    assert enquire.body == unbind.body == b""


# -- what the SMSC may send, per state ---------------------------------------------------------


def refused(command_id: int) -> tuple[int, int]:
    return (command_id | RESP, pdu.ESME_RINVBNDSTS)


NACK = (pdu.GENERIC_NACK, pdu.ESME_RINVCMDID)
ENQUIRE_RESP = (pdu.ENQUIRE_LINK | RESP, 0)
UNBIND_RESP = (pdu.UNBIND | RESP, 0)
NOT_FOR_AN_ESME = (pdu.SUBMIT_SM, pdu.BIND_TRANSCEIVER, pdu.BIND_RECEIVER, UNKNOWN)

#: (state, their request) -> (what next_event gives: an event type, None or ERROR; what the
#: session writes; the state after).
THEIRS_EXPECTED: dict[tuple[State, int], tuple[Any, list[tuple[int, int]], State]] = {}
for _state in (OPEN, BINDING):
    THEIRS_EXPECTED |= {
        (_state, pdu.DELIVER_SM): (ERROR, [refused(pdu.DELIVER_SM)], _state),
        (_state, pdu.DATA_SM): (ERROR, [refused(pdu.DATA_SM)], _state),
        (_state, pdu.ALERT_NOTIFICATION): (ERROR, [], _state),  # it has no response
        (_state, pdu.ENQUIRE_LINK): (None, [ENQUIRE_RESP], _state),
        (_state, pdu.UNBIND): (Unbound, [UNBIND_RESP], CLOSED),
    }
for _state in (BOUND, UNBINDING):
    THEIRS_EXPECTED |= {
        (_state, pdu.DELIVER_SM): (Deliver, [], _state),
        (_state, pdu.DATA_SM): (Deliver, [], _state),
        (_state, pdu.ALERT_NOTIFICATION): (None, [], _state),
        (_state, pdu.ENQUIRE_LINK): (None, [ENQUIRE_RESP], _state),
        (_state, pdu.UNBIND): (Unbound, [UNBIND_RESP], CLOSED),
    }
for _state in (OPEN, BINDING, BOUND, UNBINDING):
    for _command in NOT_FOR_AN_ESME:
        THEIRS_EXPECTED[(_state, _command)] = (ERROR, [NACK], _state)
for _command in (*BODIES, pdu.ALERT_NOTIFICATION, pdu.ENQUIRE_LINK, pdu.UNBIND, *NOT_FOR_AN_ESME):
    THEIRS_EXPECTED[(CLOSED, _command)] = (None, [], CLOSED)  # nothing is read any more


@pytest.mark.parametrize(("state", "command_id"), list(THEIRS_EXPECTED))
def test_their_requests_per_state(state: State, command_id: int) -> None:
    expected, writes, after = THEIRS_EXPECTED[(state, command_id)]
    session = at(state)
    packet = pdu.Pdu(command_id, 0, 42, BODIES.get(command_id, b""))
    session.receive_data(packet.encode())
    if expected is ERROR:
        with pytest.raises(RemoteProtocolError):
            session.next_event()
    else:
        event = session.next_event()
        assert (event is None) if expected is None else isinstance(event, expected)
    assert session.next_event() is None
    assert session.state is after
    answers = written(session)
    assert [(p.command_id, p.command_status) for p in answers] == writes
    assert all(p.sequence == 42 for p in answers)


@pytest.mark.parametrize("command_id", list(BODIES))
def test_a_message_is_delivered_decoded_and_answered_once(command_id: int) -> None:
    session = at(BOUND)
    deliver = delivered(session, command_id, 9)
    assert (deliver.command_id, deliver.sequence) == (command_id, 9)
    assert deliver.message.payload == MO.short_message and deliver.message.data_coding == 8
    assert written(session) == []  # only the driver answers it
    session.answer(deliver)
    (resp,) = written(session)
    assert (resp.command_id, resp.command_status, resp.sequence) == (command_id | RESP, 0, 9)
    assert resp.body == b"\x00"
    with pytest.raises(LocalProtocolError, match="not waiting for an answer"):
        session.answer(deliver)


def test_a_message_may_be_refused_with_any_status() -> None:
    session = at(BOUND)
    session.answer(delivered(session), pdu.ESME_RX_T_APPN)
    assert heads(session) == [(pdu.DELIVER_SM | RESP, pdu.ESME_RX_T_APPN)]


@pytest.mark.parametrize(
    ("state", "allowed"),
    [(OPEN, False), (BINDING, False), (BOUND, True), (UNBINDING, True), (CLOSED, False)],
)
def test_answers_per_state(state: State, allowed: bool) -> None:
    """A message is answered while bound, and while our unbind is on its way (the SMSC may
    have delivered before it read it); not once the connection is closed."""
    session = at(BOUND)
    deliver = delivered(session)
    if state is UNBINDING:
        session.unbind()
    elif state is CLOSED:
        session.close()
    elif state is not BOUND:
        session = at(state)
    session.data_to_send()
    if allowed:
        session.answer(deliver)
        assert heads(session) == [(pdu.DELIVER_SM | RESP, 0)] and session.state is state
    else:
        with pytest.raises(LocalProtocolError):
            session.answer(deliver)
        assert session.data_to_send() == b"" and session.state is state


def test_a_message_never_received_cannot_be_answered() -> None:
    session = at(BOUND)
    with pytest.raises(LocalProtocolError, match="not waiting"):
        session.answer(Deliver(pdu.DELIVER_SM, 5, MO))


def test_two_copies_with_one_sequence_are_answered_twice() -> None:
    session = at(BOUND)
    first, second = delivered(session, sequence=3), delivered(session, sequence=3)
    session.answer(first)
    session.answer(second)
    with pytest.raises(LocalProtocolError):
        session.answer(first)
    assert heads(session) == [(pdu.DELIVER_SM | RESP, 0)] * 2


def test_unbind_from_the_smsc_forgets_what_waited() -> None:
    session = at(BOUND)
    session.submit(SM)
    deliver = delivered(session)
    assert feed(session, pdu.Pdu(pdu.UNBIND, 0, 8)) == [Unbound()]
    assert session.pending == {} and session.state is CLOSED
    assert heads(session)[-1] == UNBIND_RESP
    with pytest.raises(LocalProtocolError):
        session.answer(deliver)


# -- responses ---------------------------------------------------------------------------------

#: (state, our request, the SMSC's response command, its status, its body) -> (message_id in
#: the event, state after). Statuses are carried as ints whatever they are (defect 9).
RESPONSES: list[tuple[State, str, int, int, bytes, str, State]] = [
    (OPEN, "bind", pdu.BIND_TRANSCEIVER | RESP, 0, b"smsc\x00", "smsc", BOUND),
    (OPEN, "bind", pdu.BIND_TRANSCEIVER | RESP, 0, b"", "", BOUND),
    (OPEN, "bind", pdu.BIND_TRANSCEIVER | RESP, pdu.ESME_RINVPASWD, b"", "", OPEN),
    (OPEN, "bind", pdu.BIND_TRANSCEIVER | RESP, 0x400, b"smsc\x00", "smsc", OPEN),
    (OPEN, "bind", pdu.GENERIC_NACK, pdu.ESME_RINVCMDID, b"", "", OPEN),
    (BOUND, "submit", pdu.SUBMIT_SM | RESP, 0, b"1A2B\x00", "1A2B", BOUND),
    (BOUND, "submit", pdu.SUBMIT_SM | RESP, 0, b"no-nul", "no-nul", BOUND),
    (BOUND, "submit", pdu.SUBMIT_SM | RESP, pdu.ESME_RTHROTTLED, b"", "", BOUND),
    (BOUND, "submit", pdu.SUBMIT_SM | RESP, pdu.ESME_RMSGQFUL, b"", "", BOUND),
    (BOUND, "submit", pdu.SUBMIT_SM | RESP, 0x0B, b"", "", BOUND),
    (BOUND, "submit", pdu.SUBMIT_SM | RESP, 0x400, b"", "", BOUND),  # vendor-specific
    (BOUND, "submit", pdu.SUBMIT_SM | RESP, 0xFFFFFFFF, b"\x00", "", BOUND),
    (BOUND, "submit", pdu.GENERIC_NACK, pdu.ESME_RINVCMDID, b"", "", BOUND),
    (BOUND, "enquire_link", pdu.ENQUIRE_LINK | RESP, 0, b"", "", BOUND),
    (BOUND, "enquire_link", pdu.ENQUIRE_LINK | RESP, 0x400, b"", "", BOUND),
    (BOUND, "unbind", pdu.UNBIND | RESP, 0, b"", "", CLOSED),
    (BOUND, "unbind", pdu.UNBIND | RESP, pdu.ESME_RSYSERR, b"", "", CLOSED),
    (BOUND, "unbind", pdu.GENERIC_NACK, pdu.ESME_RINVCMDID, b"", "", CLOSED),
]


@pytest.mark.parametrize(
    ("state", "name", "command_id", "status", "body", "mid", "after"), RESPONSES
)
def test_responses_are_matched_to_their_request(
    state: State, name: str, command_id: int, status: int, body: bytes, mid: str, after: State
) -> None:
    session = at(state)
    request, call = OUR_REQUESTS[name]
    sequence = call(session)
    session.data_to_send()
    events = feed(session, pdu.Pdu(command_id, status, sequence, body))
    assert events == [Response(sequence, request, status, mid)]
    assert events[0].ok is (status == 0)
    assert session.state is after and session.pending == {}
    assert session.data_to_send() == b""  # a response is never answered


def test_a_refused_bind_may_bind_again() -> None:
    session = Session()
    first = session.bind("smsmenu", "wrong")
    feed(session, pdu.Pdu(pdu.BIND_TRANSCEIVER | RESP, pdu.ESME_RINVPASWD, first))
    second = session.bind("smsmenu", "secret")
    assert second != first and session.state is BINDING


def test_responses_in_any_order() -> None:
    session = at(BOUND)
    sequences = [session.submit(SM) for _ in range(3)]
    answers = [pdu.Pdu(pdu.SUBMIT_SM | RESP, 0, s, f"id{s}\x00".encode()) for s in sequences]
    events = feed(session, *reversed(answers))
    assert [(e.sequence, e.message_id) for e in events] == [
        (s, f"id{s}") for s in reversed(sequences)
    ]
    assert session.pending == {}  # nothing kept once answered (aiosmpplib defect 3)


@pytest.mark.parametrize("state", [OPEN, BINDING, BOUND, UNBINDING])
@pytest.mark.parametrize("command_id", [pdu.SUBMIT_SM | RESP, pdu.GENERIC_NACK])
def test_a_response_to_nothing_is_the_smscs_error_and_the_session_goes_on(
    state: State, command_id: int
) -> None:
    session = at(state)
    before = dict(session.pending)
    session.receive_data(
        pdu.Pdu(command_id, 3, 999).encode() + pdu.Pdu(pdu.ENQUIRE_LINK, 0, 5).encode()
    )
    with pytest.raises(RemoteProtocolError, match="sequence 999, which waits for nothing"):
        session.next_event()
    assert session.next_event() is None  # the enquire_link behind it is answered
    assert heads(session) == [ENQUIRE_RESP] and session.state is state
    assert dict(session.pending) == before


def test_a_response_of_the_wrong_kind_leaves_the_request_waiting() -> None:
    session = at(BOUND)
    sequence = session.submit(SM)
    with pytest.raises(RemoteProtocolError, match="which was a submit_sm"):
        feed(session, pdu.Pdu(pdu.ENQUIRE_LINK | RESP, 0, sequence))
    assert session.pending == {sequence: pdu.SUBMIT_SM}
    (event,) = feed(session, pdu.Pdu(pdu.SUBMIT_SM | RESP, 0, sequence, b"9\x00"))
    assert event == Response(sequence, pdu.SUBMIT_SM, 0, "9")


def test_a_generic_nack_without_an_error_is_malformed() -> None:
    session = at(BOUND)
    sequence = session.submit(SM)
    with pytest.raises(RemoteProtocolError, match="generic_nack without an error"):
        feed(session, pdu.Pdu(pdu.GENERIC_NACK, 0, sequence))
    assert session.pending == {sequence: pdu.SUBMIT_SM}


def test_a_second_response_to_one_request_is_an_error() -> None:
    session = at(BOUND)
    sequence = session.submit(SM)
    answer = pdu.Pdu(pdu.SUBMIT_SM | RESP, 0, sequence, b"1\x00")
    assert len(feed(session, answer)) == 1
    with pytest.raises(RemoteProtocolError):
        feed(session, answer)


# -- time-outs (the driver's) ------------------------------------------------------------------


def test_a_response_after_a_time_out_is_late_once() -> None:
    session = at(BOUND)
    sequence = session.submit(SM)
    session.timed_out(sequence)
    assert session.pending == {}
    answer = pdu.Pdu(pdu.SUBMIT_SM | RESP, 0, sequence, b"7\x00")
    assert feed(session, answer) == [Response(sequence, pdu.SUBMIT_SM, 0, "7", late=True)]
    with pytest.raises(RemoteProtocolError, match="waits for nothing"):
        feed(session, answer)


def test_a_late_bind_response_still_binds() -> None:
    session = at(BINDING)
    (sequence,) = session.pending
    session.timed_out(sequence)
    (event,) = feed(session, pdu.Pdu(pdu.BIND_TRANSCEIVER | RESP, 0, sequence))
    assert event.late and session.state is BOUND


def test_timed_out_of_what_was_answered_or_unknown_changes_nothing() -> None:
    session = at(BOUND)
    sequence = session.submit(SM)
    feed(session, pdu.Pdu(pdu.SUBMIT_SM | RESP, 0, sequence, b"1\x00"))
    session.timed_out(sequence)
    session.timed_out(12345)
    with pytest.raises(RemoteProtocolError):
        feed(session, pdu.Pdu(pdu.SUBMIT_SM | RESP, 0, sequence, b"1\x00"))


def test_only_the_newest_requests_given_up_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "GIVEN_UP_KEPT", 2)
    session = at(BOUND)
    sequences = [session.submit(SM) for _ in range(3)]
    for sequence in sequences:
        session.timed_out(sequence)
    with pytest.raises(RemoteProtocolError):
        feed(session, pdu.Pdu(pdu.SUBMIT_SM | RESP, 0, sequences[0]))
    events = feed(session, *(pdu.Pdu(pdu.SUBMIT_SM | RESP, 0, s) for s in sequences[1:]))
    assert [e.late for e in events] == [True, True]


# -- sequence numbers --------------------------------------------------------------------------


def test_sequences_count_up_from_one() -> None:
    session = at(BOUND)
    assert [session.submit(SM) for _ in range(3)] == [2, 3, 4]  # 1 was the bind
    assert [p.sequence for p in written(session)] == [2, 3, 4]


def test_sequences_wrap_within_smpps_range() -> None:
    session = Session(first_sequence=MAX_SEQUENCE)
    assert session.bind("smsmenu", "secret") == MAX_SEQUENCE
    feed(session, pdu.Pdu(pdu.BIND_TRANSCEIVER | RESP, 0, MAX_SEQUENCE))
    assert session.submit(SM) == 1
    assert [p.sequence for p in written(session)] == [MAX_SEQUENCE, 1]


def test_sequences_in_use_are_skipped_after_the_wrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "MAX_SEQUENCE", 4)
    session = at(BOUND)  # the bind was 1, answered
    assert [session.submit(SM) for _ in range(3)] == [2, 3, 4]
    session.timed_out(3)  # given up, but its late response may still come
    feed(session, pdu.Pdu(pdu.SUBMIT_SM | RESP, 0, 4))
    assert session.submit(SM) == 1
    assert session.submit(SM) == 4  # 2 waits, 3 was given up


@pytest.mark.parametrize("first", [0, -1, MAX_SEQUENCE + 1])
def test_a_first_sequence_outside_the_range_is_refused(first: int) -> None:
    with pytest.raises(ValueError, match="sequence numbers"):
        Session(first_sequence=first)


# -- bad bytes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 15, pdu.MAX_PDU + 1, 0xFFFFFFFF])
def test_a_bad_length_closes_after_the_pdus_before_it(length: int) -> None:
    session = at(BOUND)
    sequence = session.submit(SM)
    session.data_to_send()
    good = pdu.Pdu(pdu.SUBMIT_SM | RESP, 0, sequence, b"1\x00").encode()
    session.receive_data(good + length.to_bytes(4, "big") + b"\x00" * 12)
    assert session.next_event() == Response(sequence, pdu.SUBMIT_SM, 0, "1")
    with pytest.raises(RemoteProtocolError, match="not an SMPP byte stream"):
        session.next_event()
    assert session.state is CLOSED and session.next_event() is None
    session.receive_data(pdu.Pdu(pdu.ENQUIRE_LINK, 0, 1).encode())
    assert session.next_event() is None and session.data_to_send() == b""


@pytest.mark.parametrize("command_id", list(BODIES))
def test_a_malformed_message_is_refused_and_the_session_goes_on(command_id: int) -> None:
    session = at(BOUND)
    truncated = pdu.Pdu(command_id, 0, 11, BODIES[command_id][:5])
    with pytest.raises(RemoteProtocolError, match=f"malformed {pdu.command_name(command_id)}"):
        feed(session, truncated)
    assert heads(session) == [(command_id | RESP, pdu.ESME_RINVMSGLEN)]
    assert session.state is BOUND
    delivered(session, command_id)  # the next one is taken as usual


def test_unusual_values_are_carried_not_refused() -> None:
    """data_coding, TON, NPI and TLV values outside any enum (aiosmpplib defect 7)."""
    odd = pdu.ShortMessage(
        "13800000001",
        "10001",
        b"\x00\xff",
        data_coding=0x18,
        source_ton=7,
        source_npi=5,
        tlvs=((0x1400, b"\x00\xff\x80"), (0x3FFF, b"")),
    )
    session = at(BOUND)
    (event,) = feed(session, pdu.Pdu(pdu.DELIVER_SM, 0x99, 3, odd.encode()))
    assert isinstance(event, Deliver) and event.message == odd


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_bytes_may_arrive_cut_anywhere(cuts: list[int]) -> None:
    stream = b"".join(
        p.encode()
        for p in (
            pdu.Pdu(pdu.ENQUIRE_LINK, 0, 1),
            pdu.Pdu(pdu.DELIVER_SM, 0, 2, BODIES[pdu.DELIVER_SM]),
            pdu.Pdu(pdu.DATA_SM, 0, 3, BODIES[pdu.DATA_SM]),
            pdu.Pdu(pdu.UNBIND, 0, 4),
        )
    )
    session, events, position = at(BOUND), [], 0
    for cut in [*cuts, len(stream)]:
        session.receive_data(stream[position : position + cut])
        position += cut
        events += list(iter(session.next_event, None))
    assert [type(e) for e in events] == [Deliver, Deliver, Unbound]
    assert heads(session) == [ENQUIRE_RESP, UNBIND_RESP]


# -- closing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(State))
def test_close_from_any_state_forgets_everything(state: State) -> None:
    session = at(state)
    if state is BOUND:
        session.submit(SM)  # waiting, and its bytes not written yet
    session.close()
    assert session.state is CLOSED and session.pending == {}
    assert session.data_to_send() == b""
    for _command_id, call in OUR_REQUESTS.values():
        with pytest.raises(LocalProtocolError):
            call(session)
