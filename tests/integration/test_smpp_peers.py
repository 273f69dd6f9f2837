"""Our SMPP code against independent peers, so neither side is only tested against the other.

- smpp34's ``Server`` (Rust core) as the SMSC for our SMPP link: bind, long UCS2 text as UDH
  parts, an MO pushed with ``Esme.deliver_sm`` acked only after our handler returned.
- smpp34's ``Client`` and aiosmpplib's ``ESME`` as ESMEs against our simulator.
"""

from __future__ import annotations

import asyncio

import pytest
import smpp34

from smsmenu.links import Ack
from smsmenu.messages import Inbound, Outbound
from smsmenu.smpp import concat, pdu
from smsmenu.smpp.link import SmppLink
from smsmenu.smpp.simulator import Simulator
from smsmenu.smpp.text import Alphabet, decode
from tests.e2e.smpp_helpers import SERVICE, Receipts, fast_config
from tests.servers import free_port

# a hang must fail the test, not stall CI
pytestmark = pytest.mark.timeout(60)

PHONE = "13800000001"
LONG = "尊敬的代办户，您已成功为13900000000充值50.00元，佣金1.00元，扣款49.00元，余额951.00元。" * 3
LONG_PARTS = -(-len(LONG) // 67)


async def test_link_against_smpp34_server() -> None:
    port = free_port()
    server = smpp34.Server("127.0.0.1", port, system_id="sim34")
    await server.start()
    handled = asyncio.Event()

    async def handler(inbound: Inbound, ack: Ack) -> None:
        await asyncio.sleep(0.2)  # the SMSC must not get its deliver_sm_resp before this
        handled.set()
        ack()

    link = SmppLink(fast_config(port))
    try:
        await link.start(handler, Receipts())
        esme = await asyncio.wait_for(server.next(), 5)
        assert isinstance(esme, smpp34.Esme) and esme.system_id == "smsmenu"
        await link.wait_bound(5)

        sending = asyncio.create_task(link.send(Outbound(PHONE, LONG, SERVICE)))
        payloads: dict[int, bytes] = {}
        ids = []
        while len(payloads) < LONG_PARTS:
            event = await asyncio.wait_for(server.next(), 5)
            assert isinstance(event, smpp34.SubmitSmEvent)
            assert event.data_coding == 8 and event.esm_class & 0x40
            sm = pdu.ShortMessage(
                event.source_addr,
                event.destination_addr,
                event.short_message,
                event.data_coding,
                event.esm_class,
            )
            segment, payload = concat.segment_of(sm)
            assert segment is not None and segment.total == LONG_PARTS
            payloads[segment.seq] = payload
            ids.append(f"34-{segment.seq}")
            event.accept(ids[-1])
        assert await asyncio.wait_for(sending, 5) == ids
        text = decode(b"".join(payloads[n] for n in sorted(payloads)), 8, Alphabet.GSM)
        assert text == LONG

        resp = await asyncio.wait_for(esme.deliver_sm(SERVICE, b"YE 135790", source_addr=PHONE), 5)
        assert resp.is_success and handled.is_set()
    finally:
        await link.stop()
        await server.stop()


async def test_smpp34_client_against_simulator() -> None:
    async with Simulator() as sim:
        client = smpp34.Client("127.0.0.1", sim.port, "smsmenu", "secret", bind_type="TRX")
        smsc = await client.connect()
        try:
            parts = concat.split(LONG, 9, Alphabet.GSM)
            for part in parts.parts:
                resp = await smsc.submit_sm(
                    PHONE,
                    part,
                    source_addr=SERVICE,
                    esm_class=parts.esm_class,
                    data_coding=parts.data_coding,
                )
                assert resp.is_success and resp.message_id
            (got,) = await sim.wait_for(PHONE)
            assert got.text == LONG and got.parts == LONG_PARTS

            (delivery,) = sim.send(PHONE, "你好")
            event = await asyncio.wait_for(smsc.next(), 5)
            assert isinstance(event, smpp34.DeliverSmEvent)
            assert event.short_message.decode("utf-16-be") == "你好" and event.data_coding == 8
            await asyncio.wait_for(delivery.acked, 5)
            assert delivery.attempts == 1

            sim.throttle(pdu.ESME_RTHROTTLED, count=1)
            refused = await smsc.submit_sm(PHONE, b"x", source_addr=SERVICE)
            assert refused.command_status == 0x58
        finally:
            await smsc.unbind()
            await client.stop()


async def test_smpp34_client_with_wrong_password_is_refused() -> None:
    async with Simulator() as sim:
        client = smpp34.Client(
            "127.0.0.1", sim.port, "smsmenu", "wrong", bind_type="TRX", connect_timeout_ms=1000
        )
        bound = False
        try:
            await asyncio.wait_for(client.connect(), 3)
            bound = True
        except (TimeoutError, smpp34.SmppError, OSError):
            pass  # refused (smpp34 may also keep trying until its time-out)
        finally:
            await client.stop()
        assert not bound and sim.binds == 0


async def test_aiosmpplib_esme_against_simulator() -> None:
    from aiosmpplib import ESME, PhoneNumber, SubmitSm
    from aiosmpplib.hook import AbstractHook
    from aiosmpplib.protocol import DeliverSm, SubmitSmResp
    from aiosmpplib.retrytimer import SimpleExponentialBackoff

    class Hook(AbstractHook):
        def __init__(self) -> None:
            self.resps: list[SubmitSmResp] = []
            self.delivered: list[DeliverSm] = []

        async def sending(self, smpp_message: object, pdu: bytes, client_id: str) -> None:
            return None

        async def received(self, smpp_message: object, pdu: bytes, client_id: str) -> None:
            if isinstance(smpp_message, SubmitSmResp):
                self.resps.append(smpp_message)
            elif isinstance(smpp_message, DeliverSm):
                self.delivered.append(smpp_message)

        async def send_error(self, smpp_message: object, error: Exception, client_id: str) -> None:
            return None

    async with Simulator(receipts=False) as sim:
        hook = Hook()
        esme = ESME(
            smsc_host="127.0.0.1",
            smsc_port=sim.port,
            system_id="smsmenu",
            password="secret",
            hook=hook,
            retry_timer=SimpleExponentialBackoff(),
            log_level="WARNING",
        )
        task = asyncio.create_task(esme.start())
        try:
            await sim.wait_bound(5)
            await esme.broker.enqueue(
                SubmitSm(
                    short_message="您好，余额951.00元",
                    source=PhoneNumber(SERVICE),
                    destination=PhoneNumber(PHONE),
                    encoding="ucs2",
                    log_id="t1",
                )
            )
            (got,) = await sim.wait_for(PHONE)
            assert got.text == "您好，余额951.00元" and got.data_coding == 8
            (delivery,) = sim.send(PHONE, "1")
            await asyncio.wait_for(delivery.acked, 5)
            assert [m.short_message for m in hook.delivered] == ["1"]
            assert [r.message_id for r in hook.resps] == [got.message_ids[0]]
        finally:
            writer = esme._writer  # its stop() never closes its socket: we do
            await asyncio.wait_for(esme.stop(), 5)
            if writer is not None:
                writer.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
