"""The same agent dialogue against an independent SMSC: smpp34's ``Server`` (Rust core).

What smpp34 lets a test drive, and what this test drives with it: the bind (its ``Esme``
handle), every submit_sm (``SubmitSmEvent``: accepted with an id of our choosing, parts joined
here from their UDH), MO messages (``Esme.deliver_sm``, awaited until our deliver_sm_resp —
so each step also checks that we ack only after the menu handled it), USSD TLVs
(``ussd_service_op``/``its_session_info`` as raw ``Tlv`` bytes) and delivery receipts
(``deliver_sm`` with esm_class 0x04 and receipted_message_id/message_state TLVs, ids in
decimal while the submit_sm_resp gave hex). Not driven: smpp34 answers enquire_link and
unbind itself and offers no link faults, so rebinds and throttling are tested against our
simulator only.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import smpp34

from smsmenu.app import run_server
from smsmenu.ledger.outbox import DELIVERED
from smsmenu.server import Server
from smsmenu.smpp import concat, pdu
from smsmenu.smpp.text import Alphabet, choose_coding, decode, encode
from smsmenu.smpp.ussd import SessionInfo
from tests.e2e.stack import AGENT, FAST_LINK, MOBILE, seed, test_settings
from tests.ledger_fixtures import TRADE_PIN
from tests.servers import free_port

SERVICE = "10001"


@dataclass
class Got:
    text: str
    ids: list[str]
    ussd_op: int | None
    session: SessionInfo | None


@dataclass
class Smsc34:
    """smpp34's Server with the little a test needs: phones and what they got."""

    server: smpp34.Server
    esme: smpp34.Esme | None = None
    got: dict[str, list[Got]] = field(default_factory=lambda: defaultdict(list))
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(0x5000))
    parts: concat.Reassembler[str] = field(default_factory=lambda: concat.Reassembler(60))
    receipts: int = 0

    async def pump(self) -> None:
        while True:
            event = await self.server.next()
            if isinstance(event, smpp34.Esme):
                self.esme = event
            elif isinstance(event, smpp34.SubmitSmEvent):
                await self._submit(event)
            async with self.changed:
                self.changed.notify_all()

    async def _submit(self, event: smpp34.SubmitSmEvent) -> None:
        message_id = format(next(self.ids), "X")
        event.accept(message_id)
        tlvs = {t.tag: t.value for t in event.tlvs}
        sm = pdu.ShortMessage(
            event.source_addr,
            event.destination_addr,
            event.short_message,
            event.data_coding,
            event.esm_class,
        )
        segment, payload = concat.segment_of(sm)
        ids = [message_id]
        coding = event.data_coding
        if segment is not None:
            joined = self.parts.add(
                sm.destination, sm.source, segment, coding, payload, message_id, 0.0
            )
            if joined is None:
                return
            payload, coding, ids = joined.payload, joined.data_coding, list(joined.tokens)
        if pdu.TLV_MESSAGE_PAYLOAD in tlvs:
            payload = tlvs[pdu.TLV_MESSAGE_PAYLOAD]
        op = tlvs.get(pdu.TLV_USSD_SERVICE_OP)
        info = tlvs.get(pdu.TLV_ITS_SESSION_INFO)
        self.got[event.destination_addr].append(
            Got(
                decode(payload, coding, Alphabet.GSM),
                ids,
                op[0] if op else None,
                SessionInfo.decode(info) if info else None,
            )
        )
        if event.registered_delivery & 1:
            asyncio.get_running_loop().create_task(self._receipt(event, ids))

    async def _receipt(self, event: smpp34.SubmitSmEvent, ids: list[str]) -> None:
        assert self.esme is not None
        for message_id in ids:  # a receipt per part, the id in decimal in the text
            decimal = str(int(message_id, 16))
            text = f"id:{decimal} sub:001 dlvrd:001 stat:DELIVRD err:000 text:"
            await self.esme.deliver_sm(
                event.source_addr,
                text.encode(),
                source_addr=event.destination_addr,
                esm_class=0x04,
                tlvs=[smpp34.Tlv(pdu.TLV_MESSAGE_STATE, b"\x02")],
            )
            self.receipts += 1

    async def phone(self, phone: str, text: str, tlvs: list[smpp34.Tlv] | None = None) -> None:
        """The phone sends ``text``; returns once our link acked it (after the menus)."""
        assert self.esme is not None
        coding = choose_coding(text, Alphabet.GSM)
        resp = await self.esme.deliver_sm(
            SERVICE,
            encode(text, coding, Alphabet.GSM),
            source_addr=phone,
            data_coding=coding,
            tlvs=tlvs or [],
        )
        assert resp.is_success

    async def next(self, phone: str, index: int, within_s: float = 10.0) -> Got:
        async with asyncio.timeout(within_s), self.changed:
            await self.changed.wait_for(lambda: len(self.got[phone]) > index)
        return self.got[phone][index]


@pytest.fixture
async def smsc34(sqlite_url: str) -> AsyncIterator[tuple[Smsc34, Server]]:
    port = free_port()
    server = smpp34.Server("127.0.0.1", port, system_id="smsc34")
    await server.start()
    smsc = Smsc34(server)
    pump = asyncio.create_task(smsc.pump())
    try:
        async with run_server(
            test_settings(sqlite_url, "", port), link_overrides=FAST_LINK
        ) as running:
            await running.link.wait_bound(5)
            await seed(running)
            yield smsc, running
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await server.stop()


async def test_agent_dialogue_against_smpp34_server(smsc34: tuple[Smsc34, Server]) -> None:
    smsc, server = smsc34
    assert (await smsc.next(AGENT, 0)).text.startswith("您已开通空中充值代办户")
    texts = server.engine.texts
    index = 1
    for text, expected in [
        ("hi", texts.render("agent_main")),
        ("1", texts.render("agent_tianyi")),
        ("1", texts.render("agent_air")),
        ("1", texts.render("agent_rc_kind")),
        ("2", None),
        (MOBILE, texts.render("agent_rc_amount")),
        ("50", None),
    ]:
        await smsc.phone(AGENT, text)
        got = await smsc.next(AGENT, index)
        assert expected is None or got.text == expected, (text, got.text)
        index += 1
    await smsc.phone(AGENT, TRADE_PIN)
    result = await smsc.next(AGENT, index)
    assert result.text.startswith("充值成功：号码13900000002，金额50.00元，佣金1.00元，扣款49.00元")
    receipt = await smsc.next(MOBILE, 0)
    assert receipt.text.startswith("您的号码13900000002已充值50.00元，当前余额55.00元")
    index += 1
    await smsc.phone(AGENT, f"CZ 2 {MOBILE} 20 {TRADE_PIN}")
    assert (await smsc.next(AGENT, index)).text.startswith("充值成功：号码13900000002，金额20.00元")
    assert "当前余额75.00元" in (await smsc.next(MOBILE, 1)).text
    index += 1
    # the records list is longer than one SMS: concatenated UCS2 through smpp34
    for text in ("x", "1", "1", "3", "3"):
        await smsc.phone(AGENT, text)
        index += 1
    await smsc.phone(AGENT, TRADE_PIN)
    records = await smsc.next(AGENT, index)
    assert records.text.startswith("最近交易记录") and len(records.ids) >= 2
    index += 1
    # USSD through smpp34's raw TLVs, session number 250
    for sequence, text in enumerate(["*100#", "#"]):
        op = 1 if sequence == 0 else 18
        await smsc.phone(
            AGENT,
            text,
            [
                smpp34.Tlv(pdu.TLV_USSD_SERVICE_OP, bytes([op])),
                smpp34.Tlv(pdu.TLV_ITS_SESSION_INFO, SessionInfo(250, sequence).encode()),
            ],
        )
        got = await smsc.next(AGENT, index)
        index += 1
        assert got.session is not None and got.session.session == 250
        assert got.ussd_op == (17 if text == "#" else 2) and got.session.end == (text == "#")

    async def delivered() -> bool:
        rows = await server.outbox.rows()
        return all(r.status == DELIVERED for r in rows)

    async with asyncio.timeout(10):
        while not await delivered():  # noqa: ASYNC110 - a database state
            await asyncio.sleep(0.05)
    assert smsc.receipts >= 5
    assert sum(len(v) for v in smsc.got.values()) == index + 2
