"""Business days as UTC ranges, for any date a person may type (CLI ``--from``, the API's
``from``): the schemathesis run found 0001-01-01 raising OverflowError (a 500)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import example, given
from hypothesis import strategies as st

from smsmenu.ledger.reports import day_bounds

ZONES = [ZoneInfo("Asia/Shanghai"), ZoneInfo("America/Los_Angeles"), ZoneInfo("UTC")]


@given(st.dates() | st.sampled_from([date.min, date.max]), st.sampled_from(ZONES))
@example(date.min, ZONES[0])
@example(date.max, ZONES[1])
def test_any_day_is_a_range(day: date, zone: ZoneInfo) -> None:
    start, end = day_bounds(day, zone)
    assert start < end and start.tzinfo is UTC and end.tzinfo is UTC


def test_an_ordinary_day_is_its_local_midnights() -> None:
    start, end = day_bounds(date(2026, 11, 30), ZoneInfo("Asia/Shanghai"))
    assert start == datetime(2026, 11, 29, 16, tzinfo=UTC)
    assert end - start == timedelta(days=1)
