"""``menus.intake``: which copy is which message, as a table of cases (pure)."""

from __future__ import annotations

import pytest

from smsmenu.menus.intake import Entry, Windows, live, same_message

W = Windows(resend_after_ms=10_000, ack_grace_ms=2_000, entry_ttl_ms=60_000)


@pytest.mark.parametrize(
    ("entry", "arrived", "same", "why"),
    [
        (Entry("a", 0), 5, True, "never acknowledged: the SMSC resends it (link lost, crash)"),
        (Entry("a", 0), 50_000, True, "never acknowledged, resent minutes later elsewhere"),
        (Entry("a", 0, acked_ms=100), 200, False, "acknowledged: the same text again is new"),
        (Entry("a", 0, acked_ms=100), 3, False, "a burst: arrived within the resend window"),
        (Entry("a", 0, acked_ms=10_500), 10_000, True, "timer resend met our late response"),
        (Entry("a", 0, acked_ms=10_500), 12_499, True, "still within the grace"),
        (Entry("a", 0, acked_ms=10_500), 12_500, False, "past the grace: a new message"),
        (Entry("a", 0, acked_ms=9_000), 9_999, False, "sooner than any SMSC timer: a burst"),
        (Entry("a", 0, acked_ms=9_000), 10_500, False, "answered in time: no timer resend"),
        (Entry("a", 0, acked_ms=100), 10_050, False, "answered fast, typed again later"),
    ],
)
def test_same_message(entry: Entry, arrived: int, same: bool, why: str) -> None:
    assert (same_message([entry], arrived, W) is entry) is same, why


def test_the_oldest_matching_entry_is_the_one() -> None:
    older, newer = Entry("old", 0), Entry("new", 5)
    assert same_message([newer, older], 100, W) is older


def test_entries_live_while_unacknowledged_or_within_the_grace() -> None:
    fresh, answered, stale = Entry("f", 1_000), Entry("a", 0, acked_ms=1_000), Entry("s", 0)
    assert live([fresh, answered, stale], 2_999, W) == [fresh, answered, stale]
    assert live([fresh, answered, stale], 3_000, W) == [fresh, stale]
    assert live([fresh, answered, stale], 60_000, W) == [fresh]
