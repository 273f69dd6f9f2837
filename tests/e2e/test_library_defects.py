"""One regression test per aiosmpplib 0.7.4 defect of /work/shared/LIBRARY-NOTES.md.

Our SMPP link does not run on aiosmpplib's ESME (see the note at the top of
smsmenu/smpp/link.py), so none of the defects can reach it through the library; each test
drives the situation that triggered the defect, over TCP against the simulator, and checks
the behaviour the product needs.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from smsmenu.links import SendFailed
from smsmenu.messages import Inbound, Outbound, Transport
from smsmenu.smpp import pdu
from smsmenu.smpp.link import SmppLink, SubmitRefused
from smsmenu.smpp.ussd import SessionInfo
from tests.e2e.smpp_helpers import SERVICE, Recorder, bound_pair

# a hang must fail the test, not stall CI
pytestmark = pytest.mark.timeout(60)

PHONE = "13800000001"


async def test_defect_1_long_text_always_carries_udhi_and_the_link_lives_on() -> None:
    async with bound_pair() as (sim, link):
        for text in ("a" * 400, "长" * 200):
            ids = await link.send(Outbound(PHONE, text, SERVICE))
            assert len(ids) == 3  # 153 + 153 + 94 septets; 67 + 67 + 66 UCS2 characters
        assert all(
            sm.esm_class & pdu.ESM_UDHI and sm.short_message[:3] == b"\x05\x00\x03"
            for sm in sim.submits
        )
        assert [m.text for m in sim.received[PHONE]] == ["a" * 400, "长" * 200]
        assert await link.send(Outbound(PHONE, "still alive", SERVICE))


async def test_defect_2_handler_exception_neither_kills_nor_acks() -> None:
    handler = Recorder()
    handler.fail_next = 1
    async with bound_pair(handler) as (sim, link):
        (failing,) = sim.send(PHONE, "boom")
        await handler.wait(1)
        sim.send("13800000002", "other phone")  # the link still serves
        await sim.wait_for("13800000002")
        assert not failing.acked.done() or failing.attempts == 2
        await asyncio.wait_for(failing.acked, 5)  # acked only after the redelivery worked
        assert failing.attempts == 2 and link.status().handler_errors == 1


class _Boom(BaseException):
    """Not an Exception: gets past every ``except Exception`` and ends the task."""


async def test_defect_2_dead_supervisor_task_is_restarted() -> None:
    async with bound_pair() as (sim, link):
        real = link._serve_connection
        calls = 0

        async def once_broken() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise _Boom()
            await real()

        link._serve_connection = once_broken  # type: ignore[method-assign]
        sim.drop_link()
        for _ in range(200):
            if sim.binds == 2:
                break
            await asyncio.sleep(0.02)
        assert sim.binds == 2 and calls == 2
        assert await link.send(Outbound(PHONE, "after restart", SERVICE))


async def test_defect_3_correlation_stays_flat_and_empty() -> None:
    async with bound_pair(window=64) as (sim, link):

        async def batch(n: int, tag: str) -> float:
            start = time.perf_counter()
            await asyncio.gather(
                *(link.send(Outbound(PHONE, f"{tag}{i}", SERVICE)) for i in range(n))
            )
            return time.perf_counter() - start

        first = await batch(400, "a")
        for _ in range(3):
            await batch(400, "b")
        last = await batch(400, "c")
        assert last < first * 3 + 0.2  # no slow-down with the number of messages sent
        conn = link._connection
        assert conn is not None  # nothing kept once answered, by the driver or the session
        assert conn.waiting == {} and conn.session.pending == {}
        assert len(sim.submits) == 2000


@pytest.mark.parametrize("mode", ["udh8", "udh16", "sar"])
async def test_defects_4_5_6_parts_keyed_by_sender_numeric_order_16_bit(mode: str) -> None:
    handler = Recorder(lambda m: [])
    async with bound_pair(handler) as (sim, _link):
        a = "".join(chr(ord("a") + n % 26) for n in range(120))
        b = "".join(chr(0x4E00 + n) for n in range(120))
        order = [1, 10, 11, 12, 2, 3, 4, 5, 6, 7, 8, 9]
        ref = 0xBEEF if mode != "udh8" else 0xEF
        sim.send("13800000001", a, concat_mode=mode, part_size=10, reference=ref, order=order)
        sim.send("13800000002", b, concat_mode=mode, part_size=10, reference=ref, order=order[::-1])
        got = await handler.wait(2)
        assert {(m.source, m.text) for m in got} == {("13800000001", a), ("13800000002", b)}


async def test_defect_7_unusual_coding_ton_npi_and_binary_tlvs_still_arrive() -> None:
    handler = Recorder(lambda m: [])
    async with bound_pair(handler) as (sim, _link):
        sim.deliver_sm(
            pdu.ShortMessage(
                source=PHONE,
                destination=SERVICE,
                short_message="余额".encode("utf-16-be"),
                data_coding=0x18,
                source_ton=7,
                source_npi=5,
                dest_ton=6,
                dest_npi=0x0E,
                tlvs=((0x1400, b"\x00\xff\x80"), (0x3FFF, b"")),
            )
        )
        (inbound,) = await handler.wait(1)
        assert inbound.text == "余额" and inbound.source == PHONE


async def test_defect_8_ussd_octets_above_0x7f_both_ways() -> None:
    def reply(m: Inbound) -> list[Outbound]:
        return [Outbound(m.source, "ok", SERVICE, m.route.ending(True))]

    handler = Recorder(reply)
    async with bound_pair(handler, simulator={}) as (sim, _link):
        sim.send_ussd(
            PHONE, "1", op=0x81, session=0xFF, sequence=100, user_message_reference=0xFFFF
        )
        (inbound,) = await handler.wait(1)
        assert inbound.route.transport is Transport.USSD
        assert inbound.route.ussd is not None and inbound.route.ussd.session == 0xFF
        assert inbound.route.ussd.user_message_reference == 0xFFFF
        (got,) = await sim.wait_for(PHONE)
        assert (
            got.session_info == SessionInfo(0xFF, 0, True) and got.user_message_reference == 0xFFFF
        )


async def test_defect_9_vendor_status_is_reported_and_the_link_stays() -> None:
    async with bound_pair() as (sim, link):
        sim.throttle(0x400, count=1)
        with pytest.raises(SendFailed) as failure:
            await link.send(Outbound(PHONE, "vendor", SERVICE))
        assert isinstance(failure.value, SubmitRefused) and failure.value.status == 0x400
        assert not failure.value.transient  # a status we do not know is not worth retrying
        assert await link.send(Outbound(PHONE, "next", SERVICE))
        assert sim.binds == 1 and link.status().link_losses == 0


async def test_defect_10_not_sent_until_submit_sm_resp_and_drop_is_noticed_at_once() -> None:
    async with bound_pair() as (sim, link):
        sim.delay_responses(0.3)
        start = time.monotonic()
        await link.send(Outbound(PHONE, "slow", SERVICE))
        assert time.monotonic() - start >= 0.25  # counted sent only on its response
        sim.clear_faults()
        sim.drop_link()
        start = time.monotonic()
        ids = await link.send(Outbound(PHONE, "right after the drop", SERVICE))
        assert ids and time.monotonic() - start < 3  # not a 15 s wait
        assert [m.text for m in sim.received[PHONE]] == ["slow", "right after the drop"]


async def test_defect_11_window_bounds_in_flight_and_a_burst_does_not_stall() -> None:
    async with bound_pair(window=4) as (sim, link):
        sim.delay_responses(0.05)
        await asyncio.gather(*(link.send(Outbound(PHONE, f"w{i}", SERVICE)) for i in range(20)))
        assert sim.max_unanswered == 4
        sim.clear_faults()
        sim.throttle(pdu.ESME_RTHROTTLED, count=30)  # a burst: far over 1 % of 50
        start = time.monotonic()
        await asyncio.gather(*(link.send(Outbound(PHONE, f"t{i}", SERVICE)) for i in range(30)))
        assert time.monotonic() - start < 5  # throttle_max_s is 0.4 in tests: no 180 s stall
        texts = [m.text for m in sim.received[PHONE]]
        assert sorted(texts) == sorted([f"w{i}" for i in range(20)] + [f"t{i}" for i in range(30)])


def test_link_does_not_depend_on_ledger_or_menus_and_the_session_does_no_io() -> None:
    import smsmenu.smpp.link as link_module
    import smsmenu.smpp.session as session_module

    for module in (link_module, session_module):
        source = Path(module.__file__).read_text(encoding="utf-8")
        assert "smsmenu.ledger" not in source and "smsmenu.menus" not in source
    source = Path(session_module.__file__).read_text(encoding="utf-8")
    imported = set(re.findall(r"^(?:from|import) (\w+)", source, re.MULTILINE))
    assert imported == {"__future__", "collections", "dataclasses", "enum", "types", "smsmenu"}
    assert SmppLink is link_module.SmppLink
