"""Card batch imports started from the operator's page, run in the background of this process
so that a page can show how far each got (``ledger.import_cards`` in one transaction, as
``smsmenu cards import``). A job is known to the process that runs it: after a restart its
page is gone, and the batch either exists whole or not at all."""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass

from smsmenu.ledger import cards
from smsmenu.ledger.api import Refusal
from smsmenu.web import audit
from smsmenu.web.context import WebContext

log = logging.getLogger("smsmenu.web")
KEEP = 50  # finished jobs remembered for their pages


@dataclass
class ImportJob:
    id: int
    batch: str
    total: int
    done: int = 0
    value_fen: int | None = None  # set when the batch is stored
    error: str | None = None  # the refusal's text when it is not

    @property
    def finished(self) -> bool:
        return self.value_fen is not None or self.error is not None

    def advance(self, stored: int) -> None:
        self.done += stored


class ImportJobs:
    def __init__(self) -> None:
        self._jobs: dict[int, ImportJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)

    def get(self, job_id: int) -> ImportJob | None:
        return self._jobs.get(job_id)

    def start(
        self, web: WebContext, actor: str, batch: str, rows: list[cards.CardRow]
    ) -> ImportJob:
        """Import ``rows`` (checked already) as ``batch`` in a task; its audit entry when done."""
        job = ImportJob(next(self._ids), batch, len(rows))
        self._jobs[job.id] = job
        for old in [j for j in self._jobs.values() if j.finished][:-KEEP]:
            del self._jobs[old.id]
        task = asyncio.create_task(self._run(web, actor, job, rows))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(
        self, web: WebContext, actor: str, job: ImportJob, rows: list[cards.CardRow]
    ) -> None:
        try:
            job.value_fen = await audit.audited(
                web,
                actor,
                "cards_import",
                f"batch:{job.batch}",
                lambda: web.ledger.import_cards(job.batch, rows, job.advance),
            )
        except Refusal as exc:
            job.error = web.ledger.explain(exc)
        except Exception as exc:  # the page says it failed; the log says why
            log.error("card import of batch %s failed: %s", job.batch, type(exc).__name__)
            job.error = web.catalogue.render("internal_error")
