"""When is a message the same message again? The one rule, pure (SPEC §11).

SMPP gives a mobile-originated message no id of its own. What the SMSC does, and what we
design with: it resends a deliver_sm only when our deliver_sm_resp never reached it — after its
response timer (tens of seconds; configurable on its side), or on a new bind after the link was
lost (possibly at once, possibly minutes later, possibly to another worker's bind). It never
resends on the same bind while that timer runs. A phone, on the other hand, may send the same
text several times in a row ("1" at two menus, a burst the SMSC flushes after an outage): those
are separate inputs and are answered as that many, in order.

The rule. Every message a phone sends is taken in under that phone's lock (the session store's
``claim``; the lock is held until the message's deliver_sm_resp was written), so when a copy is
classified no other message of that phone is being handled anywhere. A copy ``c`` (arrived at
``c.at``) is the same message as an earlier entry ``e`` of the same phone with the same
content fingerprint (a keyed HMAC of source, destination, text and the transport's resend marks;
``SecretKeys.mac("inbound", ...)``) when

1. ``e`` was never acknowledged: its handling failed, or its worker died, or its response was
   written to a link that was already gone. The SMSC will resend it, and ``c`` is taken for that
   resend (a new identical text meanwhile is the one exception: it is then answered as the old
   message's resend, which changes nothing the SMSC would not have changed); or
2. ``e``'s response was late — written at least ``resend_after`` after ``e`` arrived, so the
   SMSC's timer may have run out while we were still handling it — ``c`` arrived at least
   ``resend_after`` after ``e`` and no later than ``ack_grace`` after that late response: the
   SMSC resent ``e`` just as our response was on its way. ``resend_after`` must be below the
   SMSC's response timer (with a margin for the network); a burst arrives within it, and a
   response written sooner reached the SMSC before its timer could run out.

Otherwise ``c`` is a new message with a new random id. A copy of an answered message gets the
stored reply again and changes nothing; a copy of an unanswered one is handled under the first
one's id (so its idempotency keys are the first one's), counting one more attempt. Entries
live ``entry_ttl`` unacknowledged and ``ack_grace`` once acknowledged; an entry's id is random
and its fingerprint keyed, so neither says anything of the text.

Money does not rest on this rule alone: a menu operation's idempotency key is made when its
confirmation screen is shown (a copy of the confirming PIN can only confirm that screen once),
and a one-message shortcut's key is the message id given here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Entry:
    """One message taken in: its id, when its first copy arrived (epoch ms), how many copies
    were handled, the reply it was answered with (None until answered) and when its response
    was written (None until then)."""

    id: str
    at_ms: int
    attempts: int = 1
    reply: str | None = None
    acked_ms: int | None = None


@dataclass(frozen=True)
class Windows:
    """The rule's time windows, in milliseconds."""

    resend_after_ms: int = 10_000
    ack_grace_ms: int = 2_000
    entry_ttl_ms: int = 86_400_000


DEFAULT_WINDOWS = Windows()


def same_message(entries: Sequence[Entry], arrived_ms: int, windows: Windows) -> Entry | None:
    """The oldest entry (same phone, same fingerprint) that a copy arrived at ``arrived_ms`` is
    a copy of, or None: a new message (see the module notes)."""
    for entry in sorted(entries, key=lambda e: e.at_ms):
        if entry.acked_ms is None:
            return entry
        if (
            entry.acked_ms - entry.at_ms >= windows.resend_after_ms
            and arrived_ms - entry.at_ms >= windows.resend_after_ms
            and arrived_ms - entry.acked_ms < windows.ack_grace_ms
        ):
            return entry
    return None


def live(entries: Sequence[Entry], now_ms: int, windows: Windows) -> list[Entry]:
    """The entries still worth keeping at ``now_ms``."""
    return [
        e
        for e in entries
        if (now_ms - e.acked_ms < windows.ack_grace_ms if e.acked_ms is not None else True)
        and now_ms - e.at_ms < windows.entry_ttl_ms
    ]
