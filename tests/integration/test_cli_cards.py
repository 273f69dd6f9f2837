"""The card and 销户 commands of SPEC §8 / §12, run for real on SQLite and PostgreSQL: their
JSON shapes, one-line refusals, and `subscriber show` with validity and allowances."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_cli_ledger import Cli, cli, seed  # noqa: F401 (the fixture)

CARD_KEYS = {"number", "batch", "value_fen", "expires", "status"}
STATS_KEYS = {
    "batch",
    "issued",
    "redeemed",
    "expired",
    "void",
    "locked",
    "value_fen",
    "redeemed_fen",
}


def batch_file(tmp_path: Path, rows: str, name: str = "cards.csv") -> str:
    path = tmp_path / name
    path.write_text("number,pin,value,expires\n" + rows, encoding="utf-8")
    return str(path)


def test_cards_import_show_stats_void(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    seed(cli)
    rows = "".join(f"70000000{i:02d},{100000 + i},50,2099-12-31\n" for i in range(12))
    imported = cli.json("cards", "import", batch_file(tmp_path, rows), "--batch", "B1")
    assert imported == {"batch": "B1", "cards": 12, "value_fen": 60000}
    shown = cli.json("cards", "show", "--number", "7000000003")
    assert isinstance(shown, dict) and set(shown) == CARD_KEYS
    assert shown == {
        "number": "7000000003",
        "batch": "B1",
        "value_fen": 5000,
        "expires": "2099-12-31",
        "status": "issued",
    }
    stats = cli.json("cards", "stats", "--batch", "B1")
    assert isinstance(stats, dict) and set(stats) == STATS_KEYS
    assert (stats["issued"], stats["value_fen"], stats["redeemed_fen"]) == (12, 60000, 0)
    text = cli(
        "cards",
        "import",
        batch_file(tmp_path, "8000000001,1234,10,2099-01-01\n", "b.csv"),
        "--batch",
        "B2",
    ).stdout
    assert "batch B2: 1 cards, 10.00元" in text
    assert cli.json("cards", "void", "--batch", "B1") == {"batch": "B1", "voided": 12}
    stats = cli.json("cards", "stats")
    assert isinstance(stats, dict) and stats["batch"] is None
    assert (stats["void"], stats["issued"], stats["value_fen"]) == (12, 1, 61000)
    assert cli.json("ledger", "check")["ok"] is True  # type: ignore[index]


def test_cards_refusals_are_one_line(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    seed(cli)
    bad = batch_file(tmp_path, "7000000001,123456,50,2099-12-31\n7000000002,12,50,2099-12-31\n")
    line = cli.refused("bad_card_file", "cards", "import", bad, "--batch", "B1")
    assert "第3行" in line
    cli.refused("batch_unknown", "cards", "stats", "--batch", "B1")
    cli.refused("card_unknown", "cards", "show", "--number", "7000000001")
    good = batch_file(tmp_path, "7000000001,123456,50,2099-12-31\n", "good.csv")
    cli("cards", "import", good, "--batch", "B1")
    cli.refused("batch_exists", "cards", "import", good, "--batch", "B1")
    line = cli.refused("bad_card_file", "cards", "import", good, "--batch", "B2")
    assert "第2行" in line and "卡号已存在" in line


def test_subscriber_show_and_close_at_the_counter(cli: Cli) -> None:  # noqa: F811
    seed(cli)
    cli(
        "subscriber",
        "add",
        "--number",
        "13900000077",
        "--kind",
        "mobile",
        "--billing",
        "prepaid",
        "--balance",
        "12.50",
    )
    shown = cli.json("subscriber", "show", "--number", "13900000077")
    assert isinstance(shown, dict)
    assert shown["valid_until"] is None and shown["allowances"] == []
    closed = cli.json("subscriber", "close", "--number", "13900000077")
    assert isinstance(closed, dict)
    assert (closed["status"], closed["refund_fen"], closed["balance_fen"]) == ("closed", 1250, 0)
    assert cli.json("subscriber", "show", "--number", "13900000077")["status"] == "closed"  # type: ignore[index]
    cli.refused("subscriber_closed", "subscriber", "close", "--number", "13900000077")
    cli(
        "subscriber",
        "add",
        "--number",
        "02787654399",
        "--kind",
        "fixed",
        "--billing",
        "postpaid",
        "--balance",
        "-30",
    )
    line = cli.refused("close_owed", "subscriber", "close", "--number", "02787654399")
    assert "30.00元" in line
    postpaid = cli.json("subscriber", "show", "--number", "02787654399")
    assert isinstance(postpaid, dict) and "valid_until" not in postpaid
    cli.refused("close_bound_phone", "subscriber", "close", "--number", "13800000001")
    assert cli.json("ledger", "check")["ok"] is True  # type: ignore[index]


def test_refunds_show_in_the_daily_report(cli: Cli) -> None:  # noqa: F811
    seed(cli)
    cli.json("subscriber", "close", "--number", "13900000002")  # prepaid, 5.00 yuan
    assert "closed accounts (销户): 1, refunds owed 5.00元" in cli("report", "daily").stdout
    (refund,) = cli.json("report", "refunds")  # type: ignore[misc]
    assert (refund["number"], refund["refund_fen"]) == ("13900000002", 500)
