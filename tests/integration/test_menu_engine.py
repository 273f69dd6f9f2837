"""Engine mechanics over the real ledger: retry list, shortcuts and the duplicate guard,
subscribers, copies and bursts, dead letters, rate limit, idle timeout, USSD routes, and two
engines on one Redis."""

from __future__ import annotations

import asyncio

import pytest

from smsmenu.app import build_menu_engine, remember_unanswered_shortcuts
from smsmenu.ledger.api import RechargeStatus, SubscriberStatus
from smsmenu.ledger.billing import ScriptedBilling
from smsmenu.ledger.deadletters import DeadLetters
from smsmenu.ledger.shortcut_acks import ShortcutAcks
from smsmenu.menus.store import InProcessStore, RedisStore
from smsmenu.messages import Route, Transport, UssdDialogue
from smsmenu.money import format_yuan
from tests.integration.conftest import (
    AGENT_PHONE,
    FIXED,
    MOBILE,
    PHS,
    SUBSCRIBER_PHONE,
    World,
)
from tests.ledger_fixtures import TRADE_PIN


async def failed_recharges(world: World, *targets: tuple[str, str, int]) -> None:
    """Recharges that billing refuses, so that they land on the retry list."""
    world.ledger.billing = ScriptedBilling(fail_numbers=[number for _, number, _ in targets])
    for kind, number, yuan in targets:
        assert await world.send(f"CZ {kind} {number} {yuan} {TRADE_PIN}") == []
        world.clock.advance(61)  # out of the duplicate window
    world.ledger.billing = ScriptedBilling()


async def test_retry_list_from_the_menu(world: World) -> None:
    for text in ("x", "1", "1"):
        await world.say(text)
    exc_screen = world.t("agent_exc_menu")
    assert await world.say("2") == exc_screen
    assert await world.say("1") == world.t("retry_none") + "\n" + exc_screen
    assert await world.say("3") == world.t("reason_bad_choice") + "\n" + exc_screen
    assert await world.say("#") == world.t("goodbye")
    await failed_recharges(world, ("2", MOBILE, 50), ("3", PHS, 20))
    for text in ("x", "1", "1", "2"):
        await world.say(text)
    pick = world.t("agent_retry_pick", lines=f"1 {PHS} 20.00元\n2 {MOBILE} 50.00元")
    assert await world.say("1") == pick
    assert await world.say("3") == world.t("reason_bad_choice") + "\n" + pick
    pin_screen = world.t("agent_retry_pin", number=MOBILE, amount="50.00元")
    assert await world.say("2") == pin_screen
    assert await world.say("0") == pick
    assert await world.say("2") == pin_screen
    assert await world.say("1") == world.t("reason_bad_pin") + "\n" + pin_screen
    before = (await world.ledger.agent(world.agent.agent_id)).balance_fen
    assert await world.send(TRADE_PIN) == []
    views = await world.ledger.recharges(world.agent.agent_id)
    succeeded = [v for v in views if v.status is RechargeStatus.SUCCEEDED]
    assert [(v.number, v.amount_fen) for v in succeeded] == [(MOBILE, 5000)]
    after = (await world.ledger.agent(world.agent.agent_id)).balance_fen
    assert before - after == 4900
    assert [v.number for v in await world.ledger.retry_list(world.agent.agent_id)] == [PHS]


async def test_retry_shortcut_asks_for_confirmation(world: World) -> None:
    assert await world.say(f"CS {MOBILE}") == world.t("shortcut_retry_none", number=MOBILE)
    assert await world.say(f"Y {TRADE_PIN}") == world.t("shortcut_nothing_pending")
    await failed_recharges(world, ("2", MOBILE, 30))
    confirm = world.t("shortcut_retry_confirm", number=MOBILE, amount="30.00元")
    assert await world.say(f"cs#{MOBILE}") == confirm
    # a wrong password keeps the confirmation pending
    assert await world.say("Y 000000") == world.t("refusal_wrong_pin", remaining=2)
    assert await world.send(f"y {TRADE_PIN}") == []
    assert await world.ledger.retry_list(world.agent.agent_id) == []
    assert await world.say(f"Y {TRADE_PIN}") == world.t("shortcut_nothing_pending")


async def test_recharge_shortcut_and_duplicate_guard(world: World) -> None:
    assert await world.send(f"CZ 2 {MOBILE} 50 {TRADE_PIN}") == []
    world.clock.advance(30)
    duplicate = world.t("shortcut_duplicate", number=MOBILE, amount="50.00元")
    assert await world.say(f"cz#2#{MOBILE}#50#{TRADE_PIN}") == duplicate
    assert len(await world.ledger.recharges(world.agent.agent_id)) == 1
    # another amount or another number is no duplicate
    assert await world.send(f"CZ 2 {MOBILE} 60 {TRADE_PIN}") == []
    assert await world.send(f"CZ 1 {FIXED} 50 {TRADE_PIN} {MOBILE}") == []
    assert len(await world.ledger.recharges(world.agent.agent_id)) == 3
    # confirming runs it once more
    assert await world.send(f"Y {TRADE_PIN}") == []
    views = await world.ledger.recharges(world.agent.agent_id)
    assert sorted(v.amount_fen for v in views if v.number == MOBILE) == [5000, 5000, 6000]
    # after the window it runs at once
    world.clock.advance(61)
    assert await world.send(f"CZ 2 {MOBILE} 50 {TRADE_PIN}") == []
    assert len(await world.ledger.recharges(world.agent.agent_id)) == 5
    # the guard's confirmation expires with the window
    assert await world.say(f"CZ 2 {MOBILE} 50 {TRADE_PIN}") == duplicate
    world.clock.advance(61)
    assert await world.say(f"Y {TRADE_PIN}") == world.t("shortcut_nothing_pending")
    total = sum(v.debit_fen for v in await world.ledger.recharges(world.agent.agent_id))
    agent = await world.ledger.agent(world.agent.agent_id)
    assert agent.balance_fen == world.agent.balance_fen - total


async def test_a_shortcut_resent_after_an_embedded_restart_runs_once(world: World) -> None:
    """The in-process store's memory dies with its worker. A CZ whose response never reached
    the SMSC (the worker was killed after the ledger's commit) is resent to the restarted
    worker: it is recognised (``ledger.shortcut_acks``) and neither moves money again nor
    asks for a confirmation; a CZ that was acknowledged is not remembered."""
    acks = ShortcutAcks(world.ledger.engine, world.clock)
    engine = build_menu_engine(
        world.settings, world.ledger, world.store, world.clock, world.texts, shortcut_acks=acks
    )
    answered = f"CZ 3 {PHS} 20 {TRADE_PIN}"
    handled = await engine.handle(world.inbound(answered))
    await handled.finish(True)
    await acks.flush()
    cz = f"CZ 2 {MOBILE} 50 {TRADE_PIN}"
    assert (await engine.handle(world.inbound(cz))).replies == []  # killed: never finished
    world.clock.advance(90)  # restarted well after the duplicate guard's 60 s
    store = InProcessStore()
    restarted_acks = await remember_unanswered_shortcuts(world.ledger, store)
    try:
        restarted = build_menu_engine(
            world.settings,
            world.ledger,
            store,
            world.clock,
            world.texts,
            shortcut_acks=restarted_acks,
        )
        resent = await restarted.handle(world.inbound(cz))
        assert resent.replies == []
        await resent.finish(True)
        views = await world.ledger.recharges(world.agent.agent_id)
        assert sorted((v.number, v.amount_fen) for v in views) == [(PHS, 2000), (MOBILE, 5000)]
        assert len(await world.notices()) == 2  # one result notice per operation
        # the same CZ typed again later is a new input again (the guard's window is over)
        await restarted_acks.flush()
        world.clock.advance(90)
        assert (await restarted.answer(world.inbound(cz))) == []
        assert len(await world.ledger.recharges(world.agent.agent_id)) == 3
    finally:
        await restarted_acks.stop()


async def test_shortcut_errors_and_refusals(world: World) -> None:
    assert await world.say(f"CZ 2 {MOBILE} 55 {TRADE_PIN}") == (
        world.t("reason_bad_amount") + "\n" + world.t("usage_cz")
    )
    assert await world.say("YE") == world.t("reason_shortcut_fields") + "\n" + world.t("usage_ye")
    assert await world.say(f"CZ 2 13911112222 50 {TRADE_PIN}") == world.t("refusal_target_unknown")
    assert await world.say(f"YE {TRADE_PIN}") == world.t(
        "agent_balance_result", balance="1000.00元"
    )
    assert await world.ledger.recharges(world.agent.agent_id) == []


async def test_balance_shortcut_refused_while_the_bound_phone_is_suspended(world: World) -> None:
    await world.ledger.set_subscriber_status(AGENT_PHONE, SubscriberStatus.SUSPENDED)
    assert await world.say(f"YE {TRADE_PIN}") == world.t("refusal_phone_suspended")
    await world.ledger.set_subscriber_status(AGENT_PHONE, SubscriberStatus.ACTIVE)
    assert await world.say(f"YE {TRADE_PIN}") == world.t(
        "agent_balance_result", balance="1000.00元"
    )


@pytest.mark.parametrize(
    "text", [f"CZ 2 {MOBILE} 50 {TRADE_PIN}", f"YE {TRADE_PIN}", f"CS {MOBILE}", "Y 135790"]
)
async def test_agent_shortcuts_from_other_phones_reveal_nothing(world: World, text: str) -> None:
    """From a phone that is not bound, a shortcut is answered like any unknown text."""
    first = await world.send(text, phone=SUBSCRIBER_PHONE)
    assert first == [world.t("sub_main")]
    unknown = await world.send(text, phone=SUBSCRIBER_PHONE)
    assert unknown == await world.send("hello", phone=SUBSCRIBER_PHONE)
    assert await world.ledger.recharges(world.agent.agent_id) == []


async def test_subscriber_menu(world: World) -> None:
    phone = SUBSCRIBER_PHONE
    menu = world.t("sub_main")
    assert await world.send("hi", phone=phone) == [menu]
    assert await world.send("9", phone=phone) == [world.t("reason_bad_choice") + "\n" + menu]
    assert await world.send("0", phone=phone) == [menu]
    assert await world.send("00", phone=phone) == [menu]
    assert await world.send("1", phone=phone) == [
        world.t("sub_balance_result", number=phone, balance="12.34元", valid="", held="")
    ]
    assert world.last[0].route.final
    assert await world.send("x", phone=phone) == [menu]
    assert await world.send("3", phone=phone) == [world.t("sub_topups_none")]
    assert await world.send(f"CZ 2 {phone} 20 {TRADE_PIN}") == []
    assert await world.send(f"CZ 2 {phone} 30 {TRADE_PIN}") == []
    await world.send("x", phone=phone)
    assert await world.send("3", phone=phone) == [
        world.t("sub_topups_result", lines="11-10 10:00 30.00元\n11-10 10:00 20.00元")
    ]
    assert await world.send("x", phone=phone) == [menu]
    assert await world.send("#", phone=phone) == [world.t("goodbye")]
    # a phone the ledger does not know at all
    assert await world.send("1", phone="13311110000") == [menu]
    assert await world.send("1", phone="13311110000") == [world.t("sub_unknown")]


async def test_a_resent_message_gets_the_same_reply_and_moves_no_money(world: World) -> None:
    """Messages whose response never reached the SMSC (``acked=False``) come again: the copy
    is answered as the first one was and changes nothing."""
    for text in ("x", "1", "1", "1", "2", MOBILE):
        await world.say(text)
    confirm = await world.send("50", acked=False)
    assert await world.send("50") == confirm  # the copy: the confirmation screen again
    assert await world.send(TRADE_PIN, acked=False) == []
    assert await world.send(TRADE_PIN) == []
    assert len(await world.ledger.recharges(world.agent.agent_id)) == 1
    assert await world.send(f"CZ 3 {PHS} 20 {TRADE_PIN}", acked=False) == []
    world.clock.advance(61)  # out of the duplicate window: only the message's key holds
    assert await world.send(f"CZ 3 {PHS} 20 {TRADE_PIN}") == []
    assert len(await world.ledger.recharges(world.agent.agent_id)) == 2
    assert len(await world.notices()) == 2  # one result notice per operation


async def test_identical_texts_in_a_row_are_separate_inputs(world: World) -> None:
    """ "1", "1", "1" from one phone, each answered before the next: three steps of the menu,
    not one input and two copies."""
    assert await world.say("1") == world.t("agent_main")
    assert await world.say("1") == world.t("agent_tianyi")
    assert await world.say("1") == world.t("agent_air")


async def test_a_burst_taken_in_while_the_first_is_handled_is_separate_inputs(
    world: World,
) -> None:
    """The SMSC flushes a queue: "1" three times, the second and third arriving before the
    first was answered. They wait for the phone and are answered as three inputs, in order."""
    replies = []

    async def one(text: str) -> None:
        replies.append(await world.send(text))

    await asyncio.gather(one("1"), one("1"), one("1"))
    assert replies == [[world.t("agent_main")], [world.t("agent_tianyi")], [world.t("agent_air")]]


async def test_a_copy_resent_after_the_smscs_timer_during_a_slow_handling_is_recognised(
    world: World,
) -> None:
    """The SMSC's response timer ran out while the first copy was still being handled: its
    copy (arriving at least ``inbound_resend_after_s`` later) waits for the phone, and gets the
    first copy's reply once the first copy's late response was written."""
    for text in ("x", "1", "1", "1", "2", MOBILE):
        await world.say(text)
    first = await world.engine.handle(world.inbound("50"))
    world.clock.advance(world.settings.inbound_resend_after_s)
    copy = asyncio.ensure_future(world.engine.handle(world.inbound("50")))
    await asyncio.sleep(0.05)
    assert not copy.done()  # the phone is held until the first copy's response is written
    await first.finish(True)
    again = await copy
    await again.finish(True)
    assert again.message_id == first.message_id
    assert [r.text for r in again.replies] == [r.text for r in first.replies]
    # the next "0" is a new input: back one screen from the confirmation
    assert await world.say("0") == world.t("agent_rc_amount")


async def test_a_message_failing_every_time_is_dead_lettered_and_answered(world: World) -> None:
    """A handler that raises leaves the message unanswered (the SMSC resends it); after
    ``inbound_max_attempts`` failures it is answered "try later", kept in the dead-letter list
    with its error and digits masked, and acknowledged."""
    attempts = world.settings.inbound_max_attempts
    real = world.ledger.balance

    async def broken(agent_id: int, pin: str) -> int:
        raise RuntimeError("the database went away")

    world.ledger.balance = broken  # type: ignore[method-assign]
    try:
        for _ in range(attempts - 1):
            with pytest.raises(RuntimeError):
                await world.send(f"YE {TRADE_PIN}", acked=False)
        assert await world.send(f"YE {TRADE_PIN}") == [world.t("service_busy")]
    finally:
        world.ledger.balance = real  # type: ignore[method-assign]
    (letter,) = await DeadLetters(world.ledger.engine).rows()
    assert letter.source == AGENT_PHONE and letter.attempts == attempts
    assert letter.text == "YE ******" and "RuntimeError" in letter.error
    assert TRADE_PIN not in repr(letter)
    # the same text again later is a new message, handled normally
    assert await world.say(f"YE {TRADE_PIN}") == world.t(
        "agent_balance_result", balance=format_yuan(world.agent.balance_fen)
    )


async def test_a_message_whose_copies_never_finish_is_dead_lettered(world: World) -> None:
    """A worker died handling it, every time (the crash loop): the next copy after
    ``inbound_max_attempts`` is not handled again but answered "try later"."""
    attempts = world.settings.inbound_max_attempts
    inbound = world.inbound("1")
    fingerprint = world.engine.fingerprint(inbound)
    now_ms = int(world.clock.now().timestamp() * 1000)
    for _ in range(attempts):  # taken in, then the worker died before answering
        claim = await world.store.claim(
            AGENT_PHONE, fingerprint, arrived_ms=now_ms, now_ms=now_ms, minute=0, limit=100
        )
        await world.store.finish(
            AGENT_PHONE, claim, fingerprint=fingerprint, acked=False, now_ms=now_ms
        )  # (its lock expired)
    assert await world.send("1") == [world.t("service_busy")]
    (letter,) = await DeadLetters(world.ledger.engine).rows()
    assert letter.attempts == attempts + 1 and letter.error == "never finished"


async def test_rate_limit(world: World) -> None:
    limit = world.settings.rate_limit_per_min
    for _ in range(limit):
        assert len(await world.send("x")) == 1
    assert await world.send("x") == [world.t("rate_limited")]
    assert await world.send(f"YE {TRADE_PIN}") == []  # dropped: told once only
    assert await world.send("1", phone=SUBSCRIBER_PHONE) == [world.t("sub_main")]  # others fine
    world.clock.advance(60)
    assert len(await world.send("x")) == 1


async def test_idle_timeout_starts_afresh(world: World) -> None:
    for text in ("x", "1", "1"):
        await world.say(text)
    world.clock.advance(world.settings.session_timeout_s - 1)
    assert await world.say("3") == world.t("agent_account")
    world.clock.advance(world.settings.session_timeout_s)
    assert await world.say("1") == world.t("agent_main")  # not the balance screen


async def test_session_expiring_at_the_confirmation_reserves_nothing(world: World) -> None:
    for text in ("x", "1", "1", "1", "2", MOBILE, "100"):
        await world.say(text)
    world.clock.advance(world.settings.session_timeout_s + 1)
    assert await world.say(TRADE_PIN) == world.t("agent_main")
    assert await world.ledger.recharges(world.agent.agent_id) == []
    agent = await world.ledger.agent(world.agent.agent_id)
    assert agent.balance_fen == world.agent.balance_fen
    assert await world.say(f"YE {TRADE_PIN}") == world.t(
        "agent_balance_result", balance=format_yuan(world.agent.balance_fen)
    )


async def test_ussd_dialogue_routes(world: World) -> None:
    def ussd(opening: bool = False) -> Route:
        return Route(Transport.USSD, UssdDialogue(42, 7, opening=opening))

    assert await world.send("*100#", route=ussd(opening=True)) == [world.t("agent_main")]
    assert world.last[0].route == Route(Transport.USSD, UssdDialogue(42, 7, True), final=False)
    for text in ("1", "1", "1", "2", MOBILE, "20"):
        await world.send(text, route=ussd())
        assert not world.last[0].route.final
    assert await world.send(TRADE_PIN, route=ussd()) == []
    (notice,) = await world.notices()
    assert notice.transport == "ussd" and notice.ussd_session == 42 and notice.final
    # a new dialogue opens afresh even while the old session would still be live
    await world.send("1", route=ussd())
    assert await world.send("*100#", route=ussd(opening=True)) == [world.t("agent_main")]
    assert await world.send("#", route=ussd()) == [world.t("goodbye")]
    assert world.last[0].route.final


@pytest.mark.parametrize("backend", ["redis+postgres"], indirect=True)
async def test_two_engines_on_one_redis_keep_one_phone_consistent(world: World) -> None:
    """Two workers (engines) sharing one Redis, as ``smsmenu serve`` scales out."""
    assert isinstance(world.store, RedisStore)
    twin_store = RedisStore(world.store.client, prefix=world.store.prefix, lock_ttl_s=2.0)
    twin = build_menu_engine(world.settings, world.ledger, twin_store, world.clock, world.texts)
    engines = [world.engine, twin]

    # one dialogue, its messages alternating between the workers
    script = ["x", "1", "1", "1", "2", MOBILE, "50"]
    replies = []
    for i, text in enumerate(script):
        replies.append(await engines[i % 2].answer(world.inbound(text)))
    assert replies[-1][0].text.startswith("C网手机")
    # the password reaches the first worker, whose link is lost before its response is
    # written; the SMSC resends it to the other worker's bind while the first still works
    first = await world.engine.handle(world.inbound(TRADE_PIN))
    resent = asyncio.ensure_future(twin.handle(world.inbound(TRADE_PIN)))
    await asyncio.sleep(0.05)
    await first.finish(False)
    again = await resent
    await again.finish(True)
    assert first.replies == again.replies == [] and again.message_id == first.message_id
    # a burst of one phone's messages spread over both runs one at a time
    burst = await asyncio.gather(
        *(
            engines[i % 2].answer(world.inbound(f"CZ 3 {PHS} {10 * (i + 1)} {TRADE_PIN}"))
            for i in range(6)
        )
    )
    assert all(reply == [] for reply in burst)
    views = await world.ledger.recharges(world.agent.agent_id)
    assert sorted((v.number, v.amount_fen) for v in views) == sorted(
        [(MOBILE, 5000)] + [(PHS, 1000 * (i + 1)) for i in range(6)]
    )
    agent = await world.ledger.agent(world.agent.agent_id)
    assert agent.balance_fen == world.agent.balance_fen - sum(v.debit_fen for v in views)
    # both see the same session afterwards, and "1" twice is two inputs
    assert (await twin.answer(world.inbound("1")))[0].text == world.t("agent_main")
    assert (await world.engine.answer(world.inbound("1")))[0].text == world.t("agent_tianyi")


@pytest.mark.parametrize("backend", ["redis+postgres"], indirect=True)
async def test_a_copy_resent_minutes_later_to_another_worker_changes_nothing(
    world: World,
) -> None:
    """A worker answered the PIN but its link was gone; the SMSC resends it minutes later
    (after a long outage) to another worker's bind: recognised, nothing moves again."""
    assert isinstance(world.store, RedisStore)
    twin_store = RedisStore(world.store.client, prefix=world.store.prefix, lock_ttl_s=2.0)
    twin = build_menu_engine(world.settings, world.ledger, twin_store, world.clock, world.texts)
    for text in ("x", "1", "1", "1", "2", MOBILE, "50"):
        await world.say(text)
    pin = world.inbound(TRADE_PIN)
    first = await world.engine.handle(pin)
    await first.finish(False)
    world.clock.advance(7 * 60)
    copy = await twin.handle(pin)
    await copy.finish(True)
    assert copy.message_id == first.message_id and copy.replies == []
    assert len(await world.ledger.recharges(world.agent.agent_id)) == 1
    assert len(await world.notices()) == 1


async def test_a_dead_workers_lock_expires(world: World) -> None:
    """A worker that died holding a phone's lock delays that phone until the lock expires
    (2 s in these tests), and never blocks other phones."""
    held = await world.store.claim(
        AGENT_PHONE, "dead-worker", arrived_ms=0, now_ms=0, minute=0, limit=1000
    )
    assert held.token
    # another phone goes through at once
    other = await asyncio.wait_for(world.send("1", phone=SUBSCRIBER_PHONE), 1.0)
    assert other == [world.t("sub_main")]
    started = asyncio.get_running_loop().time()
    assert await world.say("hello") == world.t("agent_main")
    assert asyncio.get_running_loop().time() - started >= 1.5


async def test_one_phones_messages_run_one_at_a_time(world: World) -> None:
    """A burst from one phone on one engine: each message sees the previous one's session."""
    replies = await asyncio.gather(*(world.send(f"CZ 2 {MOBILE} 50 {TRADE_PIN}") for _ in range(4)))
    duplicate = world.t("shortcut_duplicate", number=MOBILE, amount="50.00元")
    assert sorted(replies) == sorted([[], [duplicate], [duplicate], [duplicate]])
    assert len(await world.ledger.recharges(world.agent.agent_id)) == 1


async def test_many_phones_at_once(world: World) -> None:
    """More phones at once than the Redis client has connections (100): the scripts travel
    in a few pipelines."""
    phones = [f"1331{i:07d}" for i in range(150)]
    replies = await asyncio.gather(*(world.send("hi", phone=phone) for phone in phones))
    assert replies == [[world.t("sub_main")]] * len(phones)
    replies = await asyncio.gather(*(world.send("9", phone=phone) for phone in phones))
    assert replies == [[world.t("reason_bad_choice") + "\n" + world.t("sub_main")]] * len(phones)


@pytest.mark.parametrize("backend", ["redis+postgres"], indirect=True)
async def test_redis_session_key_lives_for_the_idle_timeout(world: World) -> None:
    assert isinstance(world.store, RedisStore)
    await world.say("hello")
    key = f"{world.store.prefix}session:{{{AGENT_PHONE}}}"
    ttl_ms = await world.store.client.pttl(key)
    assert (
        world.settings.session_timeout_s * 1000 - 5000
        < ttl_ms
        <= world.settings.session_timeout_s * 1000
    )
    lock = f"{world.store.prefix}lock:{{{AGENT_PHONE}}}"
    assert await world.store.client.exists(lock) == 0  # released after the step


async def test_a_failed_recharge_is_no_duplicate(world: World) -> None:
    """Nothing moved the first time, so the same shortcut again runs at once."""
    world.ledger.billing = ScriptedBilling(fail_numbers=[MOBILE])
    assert await world.send(f"CZ 2 {MOBILE} 50 {TRADE_PIN}") == []
    world.ledger.billing = ScriptedBilling()
    assert await world.send(f"CZ 2 {MOBILE} 50 {TRADE_PIN}") == []
    views = await world.ledger.recharges(world.agent.agent_id)
    assert sorted(v.status for v in views) == sorted(
        [RechargeStatus.FAILED, RechargeStatus.SUCCEEDED]
    )
    # the success is guarded
    assert await world.say(f"CZ 2 {MOBILE} 50 {TRADE_PIN}") == world.t(
        "shortcut_duplicate", number=MOBILE, amount="50.00元"
    )
