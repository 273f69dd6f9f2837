"""Recharge card commands (SPEC §8, §12): import a batch, show a card, count a batch, void it.

``cards import FILE --batch NAME`` checks the whole file first (a bad row or a number already
known refuses it, naming the line) and stores it in one transaction, with a progress bar on a
terminal for large files; importing books nothing in the journal.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from smsmenu.cli import emit, fail, json_option
from smsmenu.cli.ledger import run_ledger
from smsmenu.ledger.api import CardStats, CardView
from smsmenu.money import format_yuan

if TYPE_CHECKING:
    from smsmenu.ledger.service import LedgerService


@click.group()
def cards() -> None:
    """Recharge cards (充值卡): batches, cards, counts."""


@cards.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch", required=True, help="The new batch's name.")
@json_option
def cards_import(file: Path, batch: str, as_json: bool) -> None:
    """Import a batch of cards from a CSV file with the header number,pin,value,expires."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {type(exc).__name__}")

    async def action(ledger: LedgerService) -> dict[str, Any]:
        rows = ledger.parse_cards(text)
        if as_json:
            value = await ledger.import_cards(batch, rows)
        else:
            with click.progressbar(length=len(rows), label=f"batch {batch}") as bar:
                value = await ledger.import_cards(batch, rows, bar.update)
        return {"batch": batch, "cards": len(rows), "value_fen": value}

    result = run_ledger(action)
    emit(
        as_json,
        result,
        lambda r: f"batch {r['batch']}: {r['cards']} cards, {format_yuan(r['value_fen'])}",
    )


def card_json(view: CardView) -> dict[str, Any]:
    return {
        "number": view.number,
        "batch": view.batch,
        "value_fen": view.value_fen,
        "expires": view.expires.isoformat(),
        "status": view.status,
    }


@cards.command("show")
@click.option("--number", required=True)
@json_option
def cards_show(number: str, as_json: bool) -> None:
    """One card (never its PIN)."""
    view = run_ledger(lambda ledger: ledger.card(number))
    emit(
        as_json,
        card_json(view),
        lambda c: (
            f"card {c['number']}  batch {c['batch']}  {format_yuan(c['value_fen'])}"
            f"  expires {c['expires']}  {c['status']}"
        ),
    )


def stats_json(stats: CardStats) -> dict[str, Any]:
    return {
        "batch": stats.batch,
        "issued": stats.issued,
        "redeemed": stats.redeemed,
        "expired": stats.expired,
        "void": stats.void,
        "locked": stats.locked,
        "value_fen": stats.value_fen,
        "redeemed_fen": stats.redeemed_fen,
    }


@cards.command("stats")
@click.option("--batch", default=None, help="One batch (default: every batch).")
@json_option
def cards_stats(batch: str | None, as_json: bool) -> None:
    """Cards issued, redeemed, expired, void and locked, and their face values."""
    stats = run_ledger(lambda ledger: ledger.card_stats(batch))
    emit(
        as_json,
        stats_json(stats),
        lambda s: (
            f"batch {s['batch'] or '(all)'}: issued {s['issued']}  redeemed {s['redeemed']}"
            f"  expired {s['expired']}  void {s['void']}  locked {s['locked']}"
            f"  value {format_yuan(s['value_fen'])}  redeemed {format_yuan(s['redeemed_fen'])}"
        ),
    )


@cards.command("void")
@click.option("--batch", required=True)
@json_option
def cards_void(batch: str, as_json: bool) -> None:
    """Void every card of a batch not yet redeemed (a lost box of cards)."""
    count = run_ledger(lambda ledger: ledger.void_cards(batch))
    emit(as_json, {"batch": batch, "voided": count}, lambda v: f"batch {batch}: {count} voided")
