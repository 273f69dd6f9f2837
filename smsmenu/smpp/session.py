"""The ESME side of one SMPP 3.4 connection, sans I/O: bytes in, events out (the h11 way).

Theory of operation
-------------------
A ``Session`` is the protocol state of one TCP connection to an SMSC and nothing else: it owns
no socket, no task and no clock. Its driver (``smsmenu.smpp.link``) does three things with it:

- feeds it the bytes it read (``receive_data``) and takes the events out (``next_event``:
  ``Response``, ``Deliver`` or ``Unbound``; None until more bytes come);
- calls one method per thing it wants to say: ``bind``, ``submit``, ``enquire_link``,
  ``unbind`` (each returns the request's sequence number), ``answer`` (a deliver_sm or data_sm
  it took in), ``close`` (the TCP link ended);
- writes out ``data_to_send()`` after each of those calls: the bytes of what it asked for and
  of whatever the session answered by itself.

Time is the driver's: when it stops waiting for a response it says so (``timed_out``), and a
response that still comes is reported with ``late=True``.

States. A session serves one connection and is never reused::

    OPEN --bind--> BINDING --bind_resp ROK--> BOUND --unbind--> UNBINDING --any response--> CLOSED
     ^                |                          |                  |
     +---refused------+                          +--SMSC's unbind---+----------------------> CLOSED

Every state goes to CLOSED on ``close()``, and on a byte stream that is not SMPP (a bad
command_length). The tables below say the rest: which requests each side may send in each
state and where they lead (``OURS``, ``THEIRS``), and where the response to one of our requests
leads (``AFTER_RESPONSE``). Our answers to the SMSC's deliver_sm / data_sm are in ``OURS`` too.

What the session does by itself. It numbers our requests (1 … 0x7FFFFFFF, then 1 again,
skipping any number still in use) and keeps the table of requests waiting for their response
(``pending``: sequence → command), so that each response is matched to its request (a
generic_nack is the response of whatever request it names). It answers enquire_link; it
answers unbind and closes; it answers a command an ESME never takes with generic_nack, a
request the state forbids with ESME_RINVBNDSTS and a deliver_sm or data_sm whose body is
malformed with ESME_RINVMSGLEN. A well-formed deliver_sm or data_sm becomes a ``Deliver`` event
carrying the decoded message; the driver answers it later, once, with ``answer``. An
alert_notification has no response and is dropped (we hold no messages for absent phones).
command_status values are plain ints, never checked against a list: a vendor-specific status
in a response is just that response's status, and the link goes on (aiosmpplib defect 9).

Whose fault. ``LocalProtocolError``: we asked for something the state forbids (submit before
the bind was accepted, an answer twice); nothing changed. ``RemoteProtocolError``, raised by
``next_event``: the SMSC sent something the state forbids, a response to no request of ours, or
a malformed PDU. The session answered it where SMPP wants an answer and goes on (call
``next_event`` again), unless the byte stream itself is broken: then it is CLOSED.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from smsmenu.smpp import pdu

MAX_SEQUENCE = 0x7FFFFFFF
#: How many requests given up (``timed_out``) are remembered, to recognise a late response.
GIVEN_UP_KEPT = 4096


class State(Enum):
    OPEN = "open"
    BINDING = "binding"
    BOUND = "bound"
    UNBINDING = "unbinding"
    CLOSED = "closed"


class ProtocolError(Exception):
    """Something SMPP does not allow here; the subclass says whose fault it is."""


class LocalProtocolError(ProtocolError):
    """We asked for something the session's state forbids (the session is unchanged)."""


class RemoteProtocolError(ProtocolError):
    """The SMSC sent something the state forbids, or something malformed."""


_OPEN, _BINDING, _BOUND, _UNBINDING, _CLOSED = State

#: What we may send in each state (requests, and answers to the SMSC's requests), and the
#: state it leads to.
OURS: Mapping[State, Mapping[int, State]] = {
    _OPEN: {pdu.BIND_TRANSCEIVER: _BINDING},
    _BINDING: {},
    _BOUND: {
        pdu.SUBMIT_SM: _BOUND,
        pdu.ENQUIRE_LINK: _BOUND,
        pdu.UNBIND: _UNBINDING,
        pdu.DELIVER_SM | pdu.RESP: _BOUND,
        pdu.DATA_SM | pdu.RESP: _BOUND,
    },
    # the SMSC may have delivered before it read our unbind: those may still be answered
    _UNBINDING: {pdu.DELIVER_SM | pdu.RESP: _UNBINDING, pdu.DATA_SM | pdu.RESP: _UNBINDING},
    _CLOSED: {},
}

#: The requests the SMSC may send in each state, and the state they lead to. enquire_link is
#: answered in any state (being lenient costs nothing); messages only once bound.
THEIRS: Mapping[State, Mapping[int, State]] = {
    _OPEN: {pdu.ENQUIRE_LINK: _OPEN, pdu.UNBIND: _CLOSED},
    _BINDING: {pdu.ENQUIRE_LINK: _BINDING, pdu.UNBIND: _CLOSED},
    _BOUND: {
        pdu.DELIVER_SM: _BOUND,
        pdu.DATA_SM: _BOUND,
        pdu.ALERT_NOTIFICATION: _BOUND,
        pdu.ENQUIRE_LINK: _BOUND,
        pdu.UNBIND: _CLOSED,
    },
    _UNBINDING: {
        pdu.DELIVER_SM: _UNBINDING,
        pdu.DATA_SM: _UNBINDING,
        pdu.ALERT_NOTIFICATION: _UNBINDING,
        pdu.ENQUIRE_LINK: _UNBINDING,
        pdu.UNBIND: _CLOSED,
    },
    _CLOSED: {},
}

#: Where the response to one of our requests leads: (request, accepted) → state. The response
#: to any other request leaves the state as it is.
AFTER_RESPONSE: Mapping[tuple[int, bool], State] = {
    (pdu.BIND_TRANSCEIVER, True): _BOUND,
    (pdu.BIND_TRANSCEIVER, False): _OPEN,  # may bind again (the driver reconnects instead)
    (pdu.UNBIND, True): _CLOSED,
    (pdu.UNBIND, False): _CLOSED,  # refused or not, we are leaving
}

_TAKEN = frozenset(command for allowed in THEIRS.values() for command in allowed)
_WITHOUT_RESPONSE = frozenset({pdu.ALERT_NOTIFICATION})
_MESSAGES = frozenset({pdu.DELIVER_SM, pdu.DATA_SM})
_ID_BODIES = frozenset({pdu.SUBMIT_SM, pdu.BIND_TRANSCEIVER})  # message_id, system_id


@dataclass(frozen=True)
class Response:
    """The SMSC's response to our request ``sequence`` (command ``request``). ``message_id``:
    what a submit_sm_resp names (the SMSC's system_id for a bind); ``late``: it came after the
    driver had given up on the request (``timed_out``)."""

    sequence: int
    request: int
    status: int
    message_id: str = ""
    late: bool = False

    @property
    def ok(self) -> bool:
        return self.status == pdu.ESME_ROK


@dataclass(frozen=True)
class Deliver:
    """A deliver_sm or data_sm (``command_id``) from the SMSC and its decoded message; answer
    it with ``Session.answer`` (once)."""

    command_id: int
    sequence: int
    message: pdu.ShortMessage


@dataclass(frozen=True)
class Unbound:
    """The SMSC unbound: the session answered and is CLOSED."""


Event = Response | Deliver | Unbound


class Session:
    """The ESME side of one connection (see the module notes)."""

    def __init__(self, first_sequence: int = 1) -> None:
        if not 1 <= first_sequence <= MAX_SEQUENCE:
            raise ValueError(f"sequence numbers run from 1 to {MAX_SEQUENCE:#x}")
        self.state = State.OPEN
        self._framer = pdu.Framer()
        self._out = bytearray()
        self._next_sequence = first_sequence
        self._pending: dict[int, int] = {}
        self._given_up: OrderedDict[int, int] = OrderedDict()
        self._unanswered: Counter[tuple[int, int]] = Counter()

    @property
    def pending(self) -> Mapping[int, int]:
        """Our requests waiting for their response: sequence → command."""
        return MappingProxyType(self._pending)

    # -- bytes ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the connection (ignored once CLOSED)."""
        if self.state is not State.CLOSED:
            self._framer.receive(data)

    def next_event(self) -> Event | None:
        """The next event, or None until more bytes come (or once CLOSED). Raises
        ``RemoteProtocolError`` for what the SMSC got wrong (see the module notes)."""
        while self.state is not State.CLOSED:
            try:
                packet = self._framer.next_pdu()
            except pdu.PduError as exc:
                self.close()
                raise RemoteProtocolError(f"not an SMPP byte stream: {exc}") from exc
            if packet is None:
                return None
            event = self._response(packet) if packet.is_response else self._request(packet)
            if event is not None:
                return event
        return None

    def data_to_send(self) -> bytes:
        """The bytes to write to the connection now (each byte is returned once)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    # -- what we say ----------------------------------------------------------------------

    def bind(self, system_id: str, password: str, system_type: str = "") -> int:
        """bind_transceiver; returns its sequence number."""
        return self._send(pdu.BIND_TRANSCEIVER, pdu.Bind(system_id, password, system_type).encode())

    def submit(self, message: pdu.ShortMessage) -> int:
        return self._send(pdu.SUBMIT_SM, message.encode())

    def enquire_link(self) -> int:
        return self._send(pdu.ENQUIRE_LINK)

    def unbind(self) -> int:
        return self._send(pdu.UNBIND)

    def answer(self, deliver: Deliver, status: int = pdu.ESME_ROK) -> None:
        """The response to ``deliver`` with ``status``: ESME_ROK takes the message."""
        after = self._may_send(deliver.command_id | pdu.RESP)
        key = (deliver.command_id, deliver.sequence)
        if not self._unanswered[key]:
            name = pdu.command_name(deliver.command_id)
            raise LocalProtocolError(f"{name} {deliver.sequence} is not waiting for an answer")
        self._unanswered[key] -= 1
        if not self._unanswered[key]:
            del self._unanswered[key]
        self._write(pdu.response(pdu.Pdu(deliver.command_id, 0, deliver.sequence), status))
        self.state = after

    def timed_out(self, sequence: int) -> None:
        """The driver stopped waiting for the response to ``sequence``: if it still comes it
        is reported as late. Nothing happens if it was answered meanwhile."""
        request = self._pending.pop(sequence, None)
        if request is None:
            return
        self._given_up[sequence] = request
        while len(self._given_up) > GIVEN_UP_KEPT:
            self._given_up.popitem(last=False)

    def close(self) -> None:
        """The connection ended: CLOSED; whatever was waiting is forgotten."""
        self.state = State.CLOSED
        self._forget()
        self._out.clear()

    # -- inside ---------------------------------------------------------------------------

    def _may_send(self, command_id: int) -> State:
        after = OURS[self.state].get(command_id)
        if after is None:
            name = pdu.command_name(command_id)
            raise LocalProtocolError(f"cannot send {name} in state {self.state.value}")
        return after

    def _send(self, command_id: int, body: bytes = b"") -> int:
        after = self._may_send(command_id)
        sequence = self._new_sequence()
        self._pending[sequence] = command_id
        self._write(pdu.Pdu(command_id, 0, sequence, body))
        self.state = after
        return sequence

    def _new_sequence(self) -> int:
        while True:
            sequence = self._next_sequence
            self._next_sequence = sequence % MAX_SEQUENCE + 1
            if sequence not in self._pending and sequence not in self._given_up:
                return sequence

    def _write(self, packet: pdu.Pdu) -> None:
        self._out += packet.encode()

    def _forget(self) -> None:
        self._pending.clear()
        self._given_up.clear()
        self._unanswered.clear()

    def _response(self, packet: pdu.Pdu) -> Response:
        sequence, name = packet.sequence, pdu.command_name(packet.command_id)
        late = sequence not in self._pending
        request = self._given_up.get(sequence) if late else self._pending[sequence]
        if request is None:
            raise RemoteProtocolError(f"{name} to sequence {sequence}, which waits for nothing")
        nack = packet.command_id == pdu.GENERIC_NACK
        if not nack and packet.command_id != request | pdu.RESP:
            asked = pdu.command_name(request)
            raise RemoteProtocolError(f"{name} to sequence {sequence}, which was a {asked}")
        if nack and packet.command_status == pdu.ESME_ROK:
            raise RemoteProtocolError(f"generic_nack without an error for sequence {sequence}")
        del (self._given_up if late else self._pending)[sequence]
        after = AFTER_RESPONSE.get((request, packet.command_status == pdu.ESME_ROK))
        if after is not None:
            self.state = after
            if after is State.CLOSED:
                self._forget()
        message_id = pdu.decode_message_id(packet.body) if request in _ID_BODIES else ""
        return Response(sequence, request, packet.command_status, message_id, late)

    def _request(self, packet: pdu.Pdu) -> Deliver | Unbound | None:
        command_id, name = packet.command_id, pdu.command_name(packet.command_id)
        after = THEIRS[self.state].get(command_id)
        if after is None:
            if command_id not in _TAKEN:
                self._write(pdu.Pdu(pdu.GENERIC_NACK, pdu.ESME_RINVCMDID, packet.sequence))
                raise RemoteProtocolError(f"{name} is not for an ESME: answered generic_nack")
            if command_id not in _WITHOUT_RESPONSE:
                self._write(pdu.response(packet, pdu.ESME_RINVBNDSTS))
            raise RemoteProtocolError(f"{name} in state {self.state.value}: refused")
        self.state = after
        if command_id in _MESSAGES:
            try:
                message = pdu.decode_message(packet)
            except pdu.PduError as exc:
                self._write(pdu.response(packet, pdu.ESME_RINVMSGLEN))
                raise RemoteProtocolError(f"malformed {name} ({exc}): refused") from exc
            self._unanswered[(command_id, packet.sequence)] += 1
            return Deliver(command_id, packet.sequence, message)
        if command_id == pdu.ENQUIRE_LINK:
            self._write(pdu.response(packet))
        elif command_id == pdu.UNBIND:
            self._write(pdu.response(packet))
            self._forget()
            return Unbound()
        return None  # alert_notification
