"""Money operations as values: every command has an operation name, its log fields never hold
a password, and a command line run gets a fresh key each time."""

from __future__ import annotations

import typing
from dataclasses import fields

from smsmenu.ledger import commands
from smsmenu.ledger.api import Kind, RechargeRequest

PIN, OTHER = "135790", "246801"


def test_every_command_has_an_operation_name() -> None:
    assert set(typing.get_args(commands.Command)) == set(commands.OPERATION)


def test_the_log_fields_name_the_operation_and_never_a_password() -> None:
    asked = [
        RechargeRequest(7, Kind.MOBILE, "13900000002", 5000, PIN, "k1", notify="13900000003"),
        commands.Retry(7, 41, PIN, "k2"),
        commands.Transfer(7, 5000, PIN, "k3"),
        commands.Deposit(7, 10000, "k4"),
        commands.OpenAgent("13800000001", PIN, OTHER, 50000, 200, "k5"),
        commands.CloseAgent(7, "k6"),
        commands.Reverse(41, "k7"),
    ]
    lines = [commands.describe(command) for command in asked]
    assert lines[0] == (
        "op=recharge agent=7 kind=mobile number=13900000002 amount_fen=5000 key=k1"
        " notify=13900000003"
    )
    assert lines[1] == "op=retry agent=7 of_tx=41 key=k2"
    assert lines[4] == "op=open phone=13800000001 deposit_fen=50000 commission_bp=200 key=k5"
    for command, line in zip(asked, lines, strict=True):
        assert PIN not in line and OTHER not in line
        assert PIN not in repr(command) and OTHER not in repr(command)
        assert line.startswith(f"op={commands.OPERATION[type(command)]} ")


def test_secret_fields_are_the_ones_left_out() -> None:
    secret = {f.name for c in commands.OPERATION for f in fields(c) if "pin" in f.name}
    assert secret == {"pin", "trade_pin", "mgmt_pin"}


def test_a_new_key_is_new_each_time() -> None:
    first, second = commands.new_key("cli-deposit"), commands.new_key("cli-deposit")
    assert first != second and first.startswith("cli-deposit-")


def test_card_and_closing_commands_hide_the_card_pin_and_the_code() -> None:
    redeem = commands.RedeemCard("13900000002", "9100000001", "246810", "D100", "k8")
    close = commands.CloseSubscriber("13900000002", "k9", "482913")
    sale = commands.SellItem(7, "13900000002", "P30", PIN, "k10")
    assert commands.describe(redeem) == (
        "op=card phone=13900000002 card_number=9100000001 item_code=D100 key=k8"
    )
    assert commands.describe(close) == "op=subscriber_close number=13900000002 key=k9"
    assert commands.describe(sale) == "op=sale agent=7 number=13900000002 item_code=P30 key=k10"
    for command, secret in ((redeem, "246810"), (close, "482913"), (sale, PIN)):
        assert secret not in commands.describe(command) and secret not in repr(command)
