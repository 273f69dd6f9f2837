"""The operator's card batch pages (SPEC §8, §12 ``cards``): import a CSV file through the code
of ``smsmenu cards import`` (the whole file checked first: a bad line refuses it, naming the
line) with a progress page that reloads itself (``<meta http-equiv="refresh">``, no script)
while the import runs in the background (``card_imports``); stats per batch; void a batch
(supervisors only). Every operation has its audit entry."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from smsmenu.ledger.api import CardStats, Refusal
from smsmenu.ledger.cards import CardRow
from smsmenu.ledger.models import card_batches
from smsmenu.web.card_imports import ImportJobs
from smsmenu.web.operator_pages import audited, operator_page
from smsmenu.web.operators import OperatorView, Role
from smsmenu.web.pages import PAGE_SIZE, field, form_of, redirect, render, web_of
from smsmenu.web.refusals import WebRefusal, WebRule, explain

MAX_FILE_MB = 32
REFRESH_S = 1


def jobs_of(request: Request) -> ImportJobs:
    jobs: ImportJobs = request.app.state.card_imports
    return jobs


async def _stats(request: Request) -> tuple[CardStats, list[CardStats]]:
    """Every batch together, and each of the newest ``PAGE_SIZE`` batches."""
    ledger = web_of(request).ledger
    newest = select(card_batches.c.name).order_by(card_batches.c.id.desc()).limit(PAGE_SIZE)
    async with ledger.engine.connect() as conn:
        names = [row.name for row in await conn.execute(newest)]
    return await ledger.card_stats(), [await ledger.card_stats(name) for name in names]


async def _page(
    request: Request, operator: OperatorView, status: int = 200, **extra: Any
) -> Response:
    total, batches = await _stats(request)
    context = {"operator": operator, "total": total, "batches": batches}
    return render(request, "operator_cards.html", status, **context, **extra)


async def _refused(
    request: Request, operator: OperatorView, exc: Refusal | WebRefusal, **extra: Any
) -> Response:
    """The page with the refusal's message (and its status)."""
    status = exc.status if isinstance(exc, WebRefusal) else 422
    return await _page(request, operator, status, error=explain(web_of(request), exc), **extra)


async def cards_page(request: Request, operator: OperatorView) -> Response:
    return await _page(request, operator)


async def _file_text(upload: object) -> str:
    """The uploaded file as text (BAD_REQUEST: no file, not UTF-8; FILE_TOO_LARGE)."""
    if not isinstance(upload, UploadFile):
        raise WebRefusal(WebRule.BAD_REQUEST)
    data = await upload.read(MAX_FILE_MB * 1024 * 1024 + 1)
    if len(data) > MAX_FILE_MB * 1024 * 1024:
        raise WebRefusal(WebRule.FILE_TOO_LARGE, mb=MAX_FILE_MB)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise WebRefusal(WebRule.BAD_REQUEST) from None


async def import_post(request: Request, operator: OperatorView) -> Response:
    """Check the whole file now (a refusal names its line), then import it in the background
    and show its progress page."""
    web = web_of(request)
    batch = ""
    try:
        async with request.form():  # the uploaded file is closed however this ends
            form = await form_of(request)
            batch = field(form, "batch", 64)
            text = await _file_text(form.get("file"))
        rows = await audited(
            request,
            operator,
            "cards_check",
            f"batch:{batch}",
            lambda: _parsed(request, text),
        )
    except (Refusal, WebRefusal) as exc:
        return await _refused(request, operator, exc, batch=batch)
    job = jobs_of(request).start(web, f"operator:{operator.name}", batch, rows)
    return redirect(f"/operator/cards/imports/{job.id}")


async def _parsed(request: Request, text: str) -> list[CardRow]:
    return web_of(request).ledger.parse_cards(text)


async def import_status(request: Request, operator: OperatorView) -> Response:
    """How far the import got; the page reloads itself every ``REFRESH_S`` until it is done."""
    job = jobs_of(request).get(request.path_params["job_id"])
    if job is None:
        raise WebRefusal(WebRule.NOT_FOUND)
    refresh = None if job.finished else REFRESH_S
    return render(request, "operator_card_import.html", operator=operator, job=job, refresh=refresh)


async def void_post(request: Request, operator: OperatorView) -> Response:
    """Void the cards of a batch not yet redeemed (a lost box): supervisors only."""
    web = web_of(request)
    try:
        form = await form_of(request)
        batch = field(form, "batch", 64)

        async def run() -> int:
            if operator.role is not Role.SUPERVISOR:
                raise WebRefusal(WebRule.SUPERVISOR_ONLY)
            return await web.ledger.void_cards(batch)

        count = await audited(request, operator, "cards_void", f"batch:{batch}", run)
    except (Refusal, WebRefusal) as exc:
        return await _refused(request, operator, exc)
    notice = web.catalogue.render("web_cards_voided", batch=batch, count=count)
    return await _page(request, operator, notice=notice)


routes = [
    Route("/operator/cards", operator_page(cards_page), methods=["GET"]),
    Route("/operator/cards/import", operator_page(import_post), methods=["POST"]),
    Route("/operator/cards/imports/{job_id:int}", operator_page(import_status), methods=["GET"]),
    Route("/operator/cards/void", operator_page(void_post), methods=["POST"]),
]
