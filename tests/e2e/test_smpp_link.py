"""The SMPP link bound over TCP to the simulator: the exchanges the spec requires."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from smsmenu.links import Ack, LinkStopped, SendFailed
from smsmenu.messages import Inbound, Outbound, Route, Transport, UssdDialogue
from smsmenu.smpp import pdu
from smsmenu.smpp.link import SmppLink, SubmitRefused
from smsmenu.smpp.parts import InProcessParts, Limits
from smsmenu.smpp.simulator import DeliveryRefused, Simulator
from smsmenu.smpp.ussd import SessionInfo
from tests.e2e.smpp_helpers import (
    SERVICE,
    Receipts,
    Recorder,
    bound_pair,
    fast_config,
    start_link,
)

# a hang must fail the test, not stall CI
pytestmark = pytest.mark.timeout(60)

PHONE = "13800000001"
CHINESE = "主菜单：1 天翼 2 空中充值 3 账户管理 4 业务管理。" * 4  # 124 characters


async def test_sms_in_reply_out() -> None:
    handler = Recorder()
    async with bound_pair(handler) as (sim, _link):
        sim.send(PHONE, "1")
        (inbound,) = await handler.wait(1)
        assert (inbound.source, inbound.destination, inbound.text) == (PHONE, SERVICE, "1")
        assert inbound.route.transport is Transport.SMS
        (got,) = await sim.wait_for(PHONE)
        assert got.text == "echo:1" and got.source == SERVICE and got.data_coding == 0


async def test_long_chinese_reply_arrives_as_concatenated_ucs2() -> None:
    handler = Recorder(lambda m: [Outbound(m.source, CHINESE, SERVICE)])
    async with bound_pair(handler) as (sim, _link):
        sim.send(PHONE, "你好")
        (got,) = await sim.wait_for(PHONE)
        assert got.text == CHINESE
        assert got.data_coding == 8 and got.parts == 2 and len(got.message_ids) == 2
        assert all(sm.esm_class & pdu.ESM_UDHI for sm in sim.submits)


@pytest.mark.parametrize("mode", ["udh8", "udh16", "sar"])
async def test_inbound_parts_joined_out_of_order(mode: str) -> None:
    handler = Recorder()
    text = "".join(str(n % 10) for n in range(1, 13 * 10 + 1))  # 12+ parts of 10
    async with bound_pair(handler) as (sim, _link):
        order = [1, 10, 11, 12, 13, 2, 3, 4, 5, 6, 7, 8, 9]
        deliveries = sim.send(
            PHONE,
            text,
            concat_mode=mode,
            part_size=10,
            order=order,
            reference=300 if mode != "udh8" else 77,
        )
        (inbound,) = await handler.wait(1)
        assert inbound.text == text
        await asyncio.wait_for(asyncio.gather(*(d.acked for d in deliveries)), 5)
        assert all(d.attempts == 1 for d in deliveries)


async def test_two_phones_same_reference_are_not_merged() -> None:
    handler = Recorder(lambda m: [])
    async with bound_pair(handler) as (sim, _link):
        a = "A" * 30
        b = "中" * 30
        parts_a = sim.send("13800000001", a, part_size=10, reference=5, order=[3, 1, 2])
        parts_b = sim.send("13800000002", b, part_size=10, reference=5, order=[2, 3, 1])
        got = await handler.wait(2)
        assert {(m.source, m.text) for m in got} == {("13800000001", a), ("13800000002", b)}
        await asyncio.wait_for(asyncio.gather(*(d.acked for d in parts_a + parts_b)), 5)


async def test_rebind_after_tcp_drop_without_unbind() -> None:
    handler = Recorder()
    async with bound_pair(handler) as (sim, link):
        sim.send(PHONE, "before")
        await sim.wait_for(PHONE, 1)
        assert sim.drop_link() == 1
        await asyncio.sleep(0.01)
        # a send made right after the drop (defect 10) still arrives, once
        ids = await asyncio.wait_for(link.send(Outbound(PHONE, "during", SERVICE)), 10)
        assert len(ids) == 1
        sim.send(PHONE, "after")
        got = await sim.wait_for(PHONE, 3)
        assert sorted(m.text for m in got) == ["during", "echo:after", "echo:before"]
        assert sim.binds == 2 and link.status().binds == 2


async def test_throttling_loses_nothing_and_duplicates_nothing() -> None:
    async with bound_pair(window=8) as (sim, link):
        sim.throttle(pdu.ESME_RTHROTTLED, seconds=1.5)
        texts = [f"msg {n}" for n in range(40)]
        results = await asyncio.wait_for(
            asyncio.gather(*(link.send(Outbound(PHONE, t, SERVICE)) for t in texts)), 30
        )
        assert all(len(ids) == 1 for ids in results)
        got = sorted(m.text for m in sim.received[PHONE])
        assert got == sorted(texts)
        assert sim.refused and all(status == 0x58 for _, status in sim.refused)
        status = link.status()
        assert status.sent == 40 and status.failed == 0 and status.window_in_use == 0


async def test_queue_full_is_retried_too() -> None:
    async with bound_pair() as (sim, link):
        sim.throttle(pdu.ESME_RMSGQFUL, count=3)
        assert len(await link.send(Outbound(PHONE, "hello", SERVICE))) == 1
        assert [m.text for m in sim.received[PHONE]] == ["hello"]


async def test_permanent_refusal_is_reported_and_link_stays() -> None:
    async with bound_pair() as (sim, link):
        sim.throttle(0x0B, count=1)  # ESME_RINVDSTADR
        with pytest.raises(SendFailed) as failure:
            await link.send(Outbound(PHONE, "x", SERVICE))
        assert isinstance(failure.value, SubmitRefused) and failure.value.status == 0x0B
        assert not failure.value.transient and failure.value.accepted == []
        assert await link.send(Outbound(PHONE, "y", SERVICE))
        assert link.status().failed == 1 and sim.binds == 1


@pytest.mark.parametrize(
    ("status", "transient"),
    [(pdu.ESME_RSYSERR, True), (pdu.ESME_RX_T_APPN, True), (0x0B, False), (0x400, False)],
)
async def test_a_refusal_says_whether_it_is_worth_sending_again(
    status: int, transient: bool
) -> None:
    async with bound_pair() as (sim, link):
        sim.throttle(status, count=1)
        with pytest.raises(SendFailed) as failure:
            await link.send(Outbound(PHONE, "x", SERVICE))
        assert failure.value.transient is transient and f"{status:#x}" in str(failure.value)
        assert sim.binds == 1 and link.bound


async def test_no_response_is_transient_and_late_responses_keep_the_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with bound_pair(response_timeout_s=0.2, max_attempts=3) as (sim, link):
        sim.delay_responses(0.3)
        with pytest.raises(SendFailed) as failure:
            await link.send(Outbound(PHONE, "slow", SERVICE))
        assert failure.value.transient and link.status().retried == 3
        await asyncio.sleep(0.3)  # the last late response arrives
        sim.clear_faults()
        assert await link.send(Outbound(PHONE, "next", SERVICE))
        assert sim.binds == 1 and link.status().link_losses == 0
    late = [r for r in caplog.records if "came after its time-out" in r.getMessage()]
    assert len(late) == 3


async def test_a_send_waiting_for_a_bind_ends_with_link_stopped() -> None:
    from smsmenu.smpp.simulator import Simulator

    async with Simulator(password="other") as sim:
        link = await start_link(SmppLink(fast_config(sim.port)), Recorder())
        sending = asyncio.create_task(link.send(Outbound(PHONE, "never", SERVICE)))
        await asyncio.sleep(0.1)
        await link.stop()
        with pytest.raises(LinkStopped):
            await asyncio.wait_for(sending, 5)
        with pytest.raises(LinkStopped):
            await link.send(Outbound(PHONE, "after the stop", SERVICE))


async def test_handler_failure_is_not_acked_and_the_copy_comes_again() -> None:
    handler = Recorder()
    handler.fail_next = 1
    async with bound_pair(handler) as (sim, _link):
        (delivery,) = sim.send(PHONE, "CZ 2 13900000000 50 ******")
        first, second = await handler.wait(2)
        await asyncio.wait_for(delivery.acked, 5)
        assert delivery.attempts == 2
        assert (first.text, first.resend_marks) == (second.text, second.resend_marks)
        assert second.received_at is not None and first.received_at is not None
        assert second.received_at > first.received_at
        assert [m.text for m in await sim.wait_for(PHONE)] == ["echo:CZ 2 13900000000 50 ******"]


async def test_ussd_dialogue_with_high_session_number() -> None:
    def reply(m: Inbound) -> list[Outbound]:
        return [
            Outbound(
                m.source,
                "主菜单" if m.text == "*100#" else "再见",
                SERVICE,
                m.route.ending(m.text == "#"),
            )
        ]

    handler = Recorder(reply)
    async with bound_pair(handler) as (sim, _link):
        sim.send_ussd(PHONE, "*100#", op=1, session=200, user_message_reference=0x8001)
        opened = (await handler.wait(1))[0]
        assert opened.route.transport is Transport.USSD
        assert opened.route.ussd == UssdDialogue(200, 0x8001, True)
        first = await sim.next_message(PHONE, 0)
        assert first.ussd_service_op == 2
        assert first.session_info == SessionInfo(200, 0, False)
        assert first.user_message_reference == 0x8001
        sim.send_ussd(PHONE, "#", op=18, session=200, sequence=1)
        closing = (await handler.wait(2))[1]
        assert closing.route.ussd is not None and not closing.route.ussd.opening
        last = await sim.next_message(PHONE, 1)
        assert last.ussd_service_op == 17 and last.session_info == SessionInfo(200, 0, True)
        assert last.text == "再见"


async def test_delivery_receipts_reach_on_receipt_not_the_handler() -> None:
    handler = Recorder(lambda m: [])
    got = Receipts()
    async with bound_pair(handler, got, simulator={"receipt_id_decimal": True}) as (sim, link):
        ids = await link.send(Outbound(PHONE, "receipt please", SERVICE))
        for _ in range(100):
            if got.got:
                break
            await asyncio.sleep(0.02)
        # the simulator writes the id in decimal in the receipt; we report the submit form
        assert got.got == [(ids[0], True)]
        assert handler.inbound == []
        assert sim.deliveries[0].acked.done()


async def test_status_counters() -> None:
    async with bound_pair() as (sim, link):
        sim.send(PHONE, "1")
        await sim.wait_for(PHONE)
        for _ in range(100):
            if link.status().sent:
                break
            await asyncio.sleep(0.01)
        status = link.status()
        assert status.bound and status.binds == 1 and status.received == 1 and status.sent == 1
        assert status.window == 32 and status.window_in_use == 0 and status.extra == {"queued": 0}
        assert "bound=True" in status.line() and "queued=0" in status.line()


async def test_enquire_link_keeps_the_link() -> None:
    async with bound_pair(enquire_link_s=0.1) as (sim, link):
        await asyncio.sleep(0.5)
        assert sim.enquire_links >= 3 and link.bound


async def test_wrong_password_keeps_retrying_until_fixed() -> None:
    from smsmenu.smpp.simulator import Simulator

    async with Simulator(password="other") as sim:
        link = await start_link(SmppLink(fast_config(sim.port)), Recorder())
        await asyncio.sleep(0.3)
        assert not link.bound and sim.binds == 0
        sim.password = "secret"
        await link.wait_bound(5)
        await link.stop()


async def test_route_default_is_sms() -> None:
    assert Route().transport is Transport.SMS


async def test_each_part_is_acked_as_soon_as_it_is_stored() -> None:
    """An SMSC that waits for each deliver_sm_resp before it sends the next part: part 1 is
    acked at once (held, it would wait for ever), the part completing the set once the whole
    message was taken in."""
    handler = Recorder(lambda m: [])
    async with bound_pair(handler) as (sim, _link):
        text = "x" * 30
        (first,) = sim.send(PHONE, text, part_size=10, reference=9, order=[1])
        await asyncio.wait_for(first.acked, 2)
        assert first.attempts == 1 and handler.inbound == []
        (second,) = sim.send(PHONE, text, part_size=10, reference=9, order=[2])
        await asyncio.wait_for(second.acked, 2)
        (third,) = sim.send(PHONE, text, part_size=10, reference=9, order=[3])
        (inbound,) = await handler.wait(1)
        assert inbound.text == text and inbound.resend_marks == "udh8:9:3"
        await asyncio.wait_for(third.acked, 2)
        assert third.attempts == 1


async def test_the_completing_part_is_not_acked_until_the_message_was_taken_in() -> None:
    """If the handler does not take the whole message in, the part that completed it is not
    acked: its copy completes the set again (the other parts are stored already)."""
    handler = Recorder(lambda m: [])
    handler.fail_next = 1
    async with bound_pair(handler, simulator={"redeliver_after_s": 0.2}) as (sim, link):
        deliveries = sim.send(PHONE, "y" * 20, part_size=10, reference=4, order=[1, 2])
        first, second = await handler.wait(2)
        assert first.text == second.text == "y" * 20
        await asyncio.wait_for(asyncio.gather(*(d.acked for d in deliveries)), 5)
        assert [d.attempts for d in deliveries] == [1, 2]
        assert len(link.parts) == 0  # forgotten once the whole message was acked


async def test_incomplete_parts_expire_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    handler = Recorder(lambda m: [])
    parts = InProcessParts(Limits(timeout_s=0.3))
    async with bound_pair(handler, parts=parts) as (sim, link):
        (first,) = sim.send(PHONE, "x" * 20, part_size=10, reference=9, order=[1])  # 2 is lost
        await asyncio.wait_for(first.acked, 2)
        assert len(link.parts) == 1
        for _ in range(100):
            if not len(link.parts):
                break
            await asyncio.sleep(0.05)
        assert len(link.parts) == 0 and handler.inbound == []
    assert any("1 of 2 arrived, expired" in r.getMessage() for r in caplog.records)


async def test_copies_are_all_handed_to_the_handler_and_acked_only_by_it() -> None:
    """The link does not decide which copy is which message (``menus.intake`` does): each
    copy the SMSC resends while the handler is slow reaches the handler, and each is acked
    only when the handler takes it in."""
    calls: list[Inbound] = []
    release = asyncio.Event()

    async def slow(inbound: Inbound, ack: Ack) -> None:
        calls.append(inbound)
        await release.wait()
        ack()

    async with bound_pair(slow, simulator={"redeliver_after_s": 0.2}) as (sim, _link):
        (delivery,) = sim.send(PHONE, "YE 135790")
        await asyncio.sleep(0.7)  # the simulator resends two or three times meanwhile
        assert delivery.attempts >= 3 and len(calls) == delivery.attempts
        assert not delivery.acked.done()
        release.set()
        await asyncio.wait_for(delivery.acked, 5)


async def test_from_settings() -> None:
    from smsmenu.settings import Settings

    settings = Settings(smsc_port=2999, smpp_window=7, ussd_op_final=0x81)  # type: ignore[call-arg]
    link = SmppLink.from_settings(settings, response_timeout_s=1.0)
    assert link.config.port == 2999 and link.config.window == 7
    assert link.config.codes.final == 0x81 and link.config.response_timeout_s == 1.0
    assert link.config.password == "secret"


async def test_unbind_from_the_smsc_rebinds() -> None:
    async with bound_pair() as (sim, link):
        assert sim.unbind_links() == 1
        for _ in range(200):
            if sim.binds == 2 and link.bound:
                break
            await asyncio.sleep(0.02)
        assert sim.binds == 2
        assert await link.send(Outbound(PHONE, "after unbind", SERVICE))


async def test_silent_link_is_detected_by_enquire_link_and_rebound() -> None:
    async with bound_pair(enquire_link_s=0.2, response_timeout_s=0.3) as (sim, link):
        sim.silence_links()
        sending = asyncio.create_task(link.send(Outbound(PHONE, "through", SERVICE)))
        for _ in range(200):
            if sim.binds == 2:
                break
            await asyncio.sleep(0.02)
        assert sim.binds == 2
        assert await asyncio.wait_for(sending, 5)
        assert [m.text for m in sim.received[PHONE]] == ["through"]


async def test_mo_as_data_sm_is_handled_and_acked() -> None:
    handler = Recorder()
    async with bound_pair(handler) as (sim, _link):
        delivery = sim.deliver_sm(
            pdu.ShortMessage(
                PHONE,
                SERVICE,
                "查询".encode("utf-16-be"),
                data_coding=8,
                tlvs=((pdu.TLV_USSD_SERVICE_OP, b"\x01"), (pdu.TLV_ITS_SESSION_INFO, b"\x90\x00")),
            ),
            as_data_sm=True,
        )
        (inbound,) = await handler.wait(1)
        assert inbound.text == "查询" and inbound.route.transport is Transport.USSD
        await asyncio.wait_for(delivery.acked, 5)


async def test_message_without_source_is_refused_not_redelivered_forever() -> None:
    handler = Recorder()
    async with bound_pair(handler) as (sim, _link):
        bad = sim.deliver_sm(pdu.ShortMessage("", SERVICE, b"1"))
        for _ in range(100):
            if bad.statuses:
                break
            await asyncio.sleep(0.02)
        assert bad.statuses == [0x0A] and handler.inbound == []
        with pytest.raises(DeliveryRefused):
            await bad.acked
        sim.send(PHONE, "fine")
        assert (await handler.wait(1))[0].text == "fine"


async def test_long_ussd_reply_travels_whole_in_message_payload() -> None:
    text = "菜单" * 100  # 400 octets in UCS2: more than short_message holds

    handler = Recorder(lambda m: [Outbound(m.source, text, SERVICE, m.route)])
    async with bound_pair(handler) as (sim, _link):
        sim.send_ussd(PHONE, "*100#", op=1, session=3)
        (got,) = await sim.wait_for(PHONE)
        assert got.text == text and got.parts == 1 and got.ussd_service_op == 2
        assert sim.submits[0].short_message == b""
        assert sim.submits[0].tlv(pdu.TLV_MESSAGE_PAYLOAD) == text.encode("utf-16-be")


async def until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    for _ in range(int(within_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the time")


async def test_spread_alternates_a_phones_messages_whatever_its_receipts() -> None:
    """The simulator's ``spread``: a phone's own messages go to the binds in turn; receipts of
    what it received take turns of their own (they once shifted which worker met its next
    message, skewing two workers' load in the benchmark)."""
    sim = Simulator(redeliver_after_s=0.5, spread=True)
    await sim.start()
    recorders, receipts = [Recorder(lambda m: []), Recorder(lambda m: [])], [Receipts(), Receipts()]
    links = [SmppLink(fast_config(sim.port)) for _ in recorders]
    try:
        for link, recorder, got in zip(links, recorders, receipts, strict=True):
            await start_link(link, recorder, got)
            await link.wait_bound(5)
        await sim.wait_bound(5)
        await until(lambda: sim.binds >= 2)  # both binds known to the simulator
        for n in range(4):
            sim.send(PHONE, f"m{n}")
            await until(lambda n=n: sum(len(r.inbound) for r in recorders) == n + 1)
            first = next(r for r in recorders if r.inbound and r.inbound[-1].text == f"m{n}")
            await first.link.send(Outbound(PHONE, f"reply {n}", SERVICE))  # its receipt follows
            await until(lambda n=n: sum(len(r.got) for r in receipts) == n + 1)
        assert [len(r.inbound) for r in recorders] == [2, 2]
    finally:
        for link in links:
            await link.stop()
        await sim.stop()
