"""Restoring a menu machine at a saved configuration runs no entry action, and a pooled
machine reused for another phone carries nothing over. Pure: the ledger is never asked."""

from __future__ import annotations

import asyncio

import pytest
from statemachine.orderedset import OrderedSet

from smsmenu.menus.agent import AgentMenu
from smsmenu.menus.base import MachinePool, MenuMachine, MenuModel
from smsmenu.menus.subscriber import SubscriberMenu
from smsmenu.texts import Catalogue
from tests.unit.test_menu_screens import TEXTS, screens, turn

BACK_TO = {
    "main": "main",
    "tianyi": "main",
    "air": "tianyi",
    "rc_kind": "air",
    "rc_number": "rc_kind",
    "rc_amount": "rc_number",
    "rc_notify": "rc_amount",
    "rc_confirm": "rc_notify",  # the data is a broadband recharge: it has a notify step
    "exc_menu": "air",
    "retry_pick": "exc_menu",
    "retry_pin": "retry_pick",
    "account": "air",
    "bal_pin": "account",
    "tp_old": "account",
    "tp_new": "tp_old",
    "tp_again": "tp_new",
    "rec_pin": "account",
    "tr_amount": "account",
    "tr_pin": "tr_amount",
    "business": "air",
    "mp_old": "business",
    "mp_new": "mp_old",
    "mp_again": "mp_new",
}


def screen(machine: type[MenuMachine], state: str) -> str:
    instance = machine(MenuModel(OrderedSet(["idle"])))
    instance.model.turn = turn()
    instance.show(state)
    return instance.model.turn.parts[0]


def test_every_agent_screen_has_a_way_back() -> None:
    assert set(BACK_TO) == set(screens(AgentMenu))


def test_restore_runs_no_entry_action() -> None:
    """Constructing on a model whose state is already set shows nothing."""
    for state in screens(AgentMenu):
        t = turn()
        model = MenuModel(OrderedSet(["session", state]))
        model.turn = t
        machine = AgentMenu(model)
        assert list(machine.configuration_values) == ["session", state]
        assert t.parts == []


@pytest.mark.parametrize("state", list(BACK_TO))
async def test_back_after_restore_shows_only_the_previous_screen(state: str) -> None:
    pool = MachinePool(AgentMenu)
    t = turn()
    after = await pool.step(("session", state), "back", t)
    assert after == ("session", BACK_TO[state])
    assert t.parts == [screen(AgentMenu, BACK_TO[state])]


@pytest.mark.parametrize("machine", [AgentMenu, SubscriberMenu])
async def test_home_and_end_from_every_screen(machine: type[MenuMachine]) -> None:
    pool = MachinePool(machine)
    main = screen(machine, "main")
    for state in screens(machine):
        t = turn()
        assert await pool.step(("session", state), "home", t) == ("session", "main")
        assert t.parts == [main]
        assert t.data == {}  # the main menu forgets every input
        t = turn()
        assert await pool.step(("session", state), "end", t) == ("idle",)
        assert t.parts == [TEXTS.render("goodbye")]
    assert pool.built == 1  # one instance served every step


async def test_pooled_machine_carries_nothing_to_the_next_phone() -> None:
    pool = MachinePool(AgentMenu)
    first = turn()
    await pool.step(("session", "rc_kind"), "input", first, "2")
    assert first.data["kind"] == "mobile"
    second = turn({})
    second.phone = "18900000002"
    assert await pool.step(("idle",), "open", second) == ("session", "main")
    assert second.parts == [screen(AgentMenu, "main")]
    assert "kind" not in second.data and pool.built == 1


BAD_INPUT = {
    "main": ("2", "reason_bad_choice"),
    "tianyi": ("2", "reason_bad_choice"),
    "air": ("5", "reason_bad_choice"),
    "rc_kind": ("0 1", "reason_bad_kind"),
    "rc_number": ("13812345678", "reason_bad_area_number"),  # the data is a broadband recharge
    "rc_amount": ("15", "reason_bad_amount"),
    "rc_notify": ("2", "reason_bad_notify"),
    "rc_confirm": ("12345", "reason_bad_pin"),
    "exc_menu": ("2", "reason_bad_choice"),
    "retry_pick": ("2", "reason_bad_choice"),  # one failed recharge listed
    "retry_pin": ("1234567", "reason_bad_pin"),
    "account": ("5", "reason_bad_choice"),
    "bal_pin": ("abcdef", "reason_bad_pin"),
    "tp_old": ("12345", "reason_bad_pin"),
    "tp_new": ("222222", "reason_weak_pin"),
    "tp_again": ("12", "reason_bad_pin"),
    "rec_pin": ("1", "reason_bad_pin"),
    "tr_amount": ("1010", "reason_bad_amount"),
    "tr_pin": ("12", "reason_bad_pin"),
    "business": ("2", "reason_bad_choice"),
    "mp_old": ("x", "reason_bad_pin"),
    "mp_new": ("654321", "reason_weak_pin"),
    "mp_again": ("9", "reason_bad_pin"),
}


def test_every_screen_has_a_bad_input_case() -> None:
    assert set(BAD_INPUT) == set(screens(AgentMenu))


@pytest.mark.parametrize("state", list(BAD_INPUT))
async def test_bad_input_reprompts_with_its_reason_and_changes_nothing(state: str) -> None:
    text, reason = BAD_INPUT[state]
    t = turn()
    before = dict(t.data)
    after = await MachinePool(AgentMenu).step(("session", state), "input", t, text)
    assert after == ("session", state)
    assert t.data == before
    assert t.parts == [TEXTS.render(reason), screen(AgentMenu, state)]


async def test_invalid_input_changes_nothing() -> None:
    pool = MachinePool(AgentMenu)
    for state, text in [("main", "9"), ("air", "x"), ("rc_amount", "15"), ("tr_pin", "12")]:
        t = turn()
        before = dict(t.data)
        assert await pool.step(("session", state), "input", t, text) == ("session", state)
        assert t.data == before
        assert len(t.parts) == 2 and t.parts[1] == screen(AgentMenu, state)


async def test_a_failed_step_drops_its_machine() -> None:
    pool = MachinePool(AgentMenu)
    t = turn()
    t.texts = Catalogue({"x": "x"}, "zh")  # entering any screen fails
    with pytest.raises(KeyError):
        await pool.step(("session", "main"), "input", t, "1")
    assert pool.built == 1
    await pool.step(("session", "main"), "back", turn())
    assert pool.built == 2


async def test_machines_do_no_io_and_operations_run_after_the_step() -> None:
    """The machine only asks for the balance; the pool asks the ledger once the step is over
    and the machine has been given back."""
    pool = MachinePool(AgentMenu)
    with pytest.raises(AssertionError, match="asked the ledger for balance"):
        await pool.step(("session", "bal_pin"), "input", turn(), "135790")
    assert pool.built == 1
    assert AgentMenu(MenuModel(OrderedSet(["idle"])))._engine.__class__.__name__ == "SyncEngine"


@pytest.mark.parametrize("machine", [AgentMenu, SubscriberMenu])
def test_state_ids_are_unique_and_match_their_values(machine: type[MenuMachine]) -> None:
    """One namespace for state names (LIBRARY-NOTES): an alias or a duplicate would rename."""
    ids = [state.id for state in machine.states_map.values()]
    assert len(ids) == len(set(ids))
    assert all(state.id == value for value, state in machine.states_map.items())


@pytest.mark.parametrize("machine", [AgentMenu, SubscriberMenu])
async def test_machines_are_synchronous_and_one_instance_serves_concurrent_steps(
    machine: type[MenuMachine],
) -> None:
    instance = machine(MenuModel(OrderedSet(["idle"])))
    assert type(instance._engine).__name__ == "SyncEngine"  # no async callback anywhere
    pool = MachinePool(machine)
    await asyncio.gather(*(pool.step(("session", "main"), "back", turn()) for _ in range(20)))
    assert pool.built == 1
