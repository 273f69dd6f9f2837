"""The operator's card batch pages and the counter's 销户 over HTTP on SQLite and PostgreSQL:
a CSV import through the code of ``cards import`` with its progress page, a bad line refusing
the whole file, stats per batch, void (supervisors only), subscriber close with the rules of
menu 4, and an audit entry for each."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from smsmenu.ledger.api import SubscriberStatus
from smsmenu.web import audit, operator_cards
from smsmenu.web.card_imports import ImportJob
from smsmenu.web.operators import Role
from tests.web_fixtures import (
    AGENT_PHONE,
    FIXED,
    MOBILE,
    OPERATOR_PASSWORD,
    WebWorld,
    new_operator,
)

LOGIN = "/operator/login"
PAGE = "/operator/cards"
HEADER = "number,pin,value,expires\n"


def card_file(first: int, count: int, value: str = "50") -> str:
    rows = [f"{first + i},{123456 + i % 1000},{value},2027-01-31" for i in range(count)]
    return HEADER + "\n".join(rows) + "\n"


async def login(world: WebWorld, name: str, role: Role) -> None:
    await new_operator(world, name, role)
    done = await world.post_form(LOGIN, LOGIN, name=name, password=OPERATOR_PASSWORD)
    assert done.status_code == 303


async def upload(world: WebWorld, batch: str, text: str | bytes) -> httpx.Response:
    token = await world.csrf(PAGE)
    data = text.encode() if isinstance(text, str) else text
    return await world.http.post(
        "/operator/cards/import",
        data={"csrf": token, "batch": batch},
        files={"file": ("cards.csv", data, "text/csv")},
    )


async def finished(world: WebWorld, url: str) -> httpx.Response:
    """The import's page once it no longer reloads itself."""
    for _ in range(600):
        page = await world.http.get(url)
        assert page.status_code == 200
        if 'http-equiv="refresh"' not in page.text:
            return page
        await asyncio.sleep(0.05)
    raise AssertionError("the import did not finish")


async def outcomes(world: WebWorld) -> list[tuple[str, str, str]]:
    return [(r.action, r.target, r.outcome) for r in await audit.rows(world.web, 20)]


async def test_card_pages_need_an_operator(web_world: WebWorld) -> None:
    assert (await web_world.http.get(PAGE)).status_code == 303
    assert (await web_world.http.get("/operator/cards/imports/1")).status_code == 303


async def test_import_with_progress_then_stats(web_world: WebWorld) -> None:
    await login(web_world, "li", Role.STAFF)
    response = await upload(web_world, "B1", card_file(2000000000, 12_000))
    assert response.status_code == 303
    url = response.headers["location"]
    assert re.fullmatch(r"/operator/cards/imports/[0-9]+", url)
    page = await finished(web_world, url)
    assert "12000张" in page.text and "600000.00元" in page.text
    stats = await web_world.ledger.card_stats("B1")
    assert (stats.issued, stats.value_fen) == (12_000, 60_000_000)
    job = web_world.app.state.card_imports.get(int(url.rsplit("/", 1)[1]))
    assert job.done == job.total == 12_000  # the progress heard every step
    listing = await web_world.http.get(PAGE)
    row = listing.text.split('id="batch-B1"')[1].split("</tr>")[0]
    assert "12000" in row and "600000.00元" in row
    assert "/operator/cards/void" not in listing.text  # staff get no void button
    assert ("cards_import", "batch:B1", "ok") in await outcomes(web_world)
    assert "123456" not in listing.text + page.text


async def test_the_progress_page_reloads_itself_while_the_import_runs(
    web_world: WebWorld,
) -> None:
    await login(web_world, "li", Role.STAFF)
    jobs = web_world.app.state.card_imports
    running = ImportJob(10_000, "B9", 20_000, done=5_000)
    jobs._jobs[running.id] = running  # a job caught half-way (the import itself is tested above)
    page = await web_world.http.get(f"/operator/cards/imports/{running.id}")
    assert '<meta http-equiv="refresh" content="1">' in page.text
    assert "5000/20000" in page.text and 'max="20000" value="5000"' in page.text
    assert "<script" not in page.text
    missing = await web_world.http.get("/operator/cards/imports/99999")
    assert missing.status_code == 404


async def test_a_bad_line_refuses_the_whole_file_naming_it(web_world: WebWorld) -> None:
    await login(web_world, "li", Role.STAFF)
    text = card_file(3000000000, 5).replace("3000000002,123458,50", "3000000002,12x458,50")
    response = await upload(web_world, "BAD", text)
    assert response.status_code == 422 and "第4行" in response.text
    assert (await web_world.ledger.card_stats()).issued == 0
    assert ("cards_check", "batch:BAD", "refused:bad_card_file") in await outcomes(web_world)
    not_utf8 = await upload(web_world, "BAD", HEADER.encode() + b"\xff\xfe,1,1,1\n")
    assert not_utf8.status_code == 400
    no_file = await web_world.post_form("/operator/cards/import", PAGE, batch="X")
    assert no_file.status_code == 400


async def test_a_batch_name_taken_fails_on_the_progress_page(web_world: WebWorld) -> None:
    await login(web_world, "li", Role.STAFF)
    await finished(
        web_world, (await upload(web_world, "B1", card_file(4000000000, 2))).headers["location"]
    )
    again = await upload(web_world, "B1", card_file(4100000000, 2))
    page = await finished(web_world, again.headers["location"])
    assert 'class="error"' in page.text and "B1" in page.text
    assert (await web_world.ledger.card_stats()).issued == 2
    assert ("cards_import", "batch:B1", "refused:batch_exists") in await outcomes(web_world)


async def test_void_is_for_supervisors_only(web_world: WebWorld) -> None:
    ledger = web_world.ledger
    await ledger.import_cards("B1", ledger.parse_cards(card_file(5000000000, 3)))
    await login(web_world, "staff", Role.STAFF)
    staff = await web_world.post_form("/operator/cards/void", PAGE, batch="B1")
    assert staff.status_code == 403
    assert web_world.web.catalogue.render("web_refusal_supervisor_only") in staff.text
    assert (await ledger.card_stats("B1")).void == 0
    assert ("cards_void", "batch:B1", "refused:supervisor_only") in await outcomes(web_world)
    await login(web_world, "boss", Role.SUPERVISOR)
    listing = await web_world.http.get(PAGE)
    assert "/operator/cards/void" in listing.text
    done = await web_world.post_form("/operator/cards/void", PAGE, batch="B1")
    assert done.status_code == 200 and "3张" in done.text
    assert (await ledger.card_stats("B1")).void == 3
    unknown = await web_world.post_form("/operator/cards/void", PAGE, batch="NOPE")
    assert unknown.status_code == 422
    assert ("cards_void", "batch:B1", "ok") in await outcomes(web_world)


async def test_subscriber_close_at_the_counter(web_world: WebWorld) -> None:
    await login(web_world, "li", Role.STAFF)
    page = "/operator/subscribers"
    shown = await web_world.http.get(page, params={"number": MOBILE})
    assert 'id="subscriber-close"' in shown.text
    owed = await web_world.post_form(f"{page}/close", page, number=FIXED)
    assert owed.status_code == 422 and "30.00元" in owed.text
    bound = await web_world.post_form(f"{page}/close", page, number=AGENT_PHONE)
    assert bound.status_code == 422 and "绑定手机" in bound.text
    done = await web_world.post_form(f"{page}/close", page, number=MOBILE, key="counter-1")
    assert done.status_code == 200 and "5.00元" in done.text
    assert 'id="subscriber-close"' not in done.text
    view = await web_world.ledger.subscriber(MOBILE)
    assert view is not None and view.status is SubscriberStatus.CLOSED
    again = await web_world.post_form(f"{page}/close", page, number=MOBILE, key="counter-2")
    assert again.status_code == 422
    entries = await outcomes(web_world)
    assert ("subscriber_close", f"number:{MOBILE}", "ok") in entries
    assert ("subscriber_close", f"number:{FIXED}", "refused:close_owed") in entries
    assert ("subscriber_close", f"number:{AGENT_PHONE}", "refused:close_bound_phone") in entries
    assert (await web_world.ledger.trial_balance()).total_fen == 0


async def test_a_file_over_the_limit_is_refused(
    web_world: WebWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operator_cards, "MAX_FILE_MB", 0)  # any file is over a limit of 0 MB
    await login(web_world, "li", Role.STAFF)
    response = await upload(web_world, "BIG", card_file(6000000000, 2))
    assert response.status_code == 413 and "文件过大" in response.text
    assert (await web_world.ledger.card_stats()).issued == 0
