"""The HTTP server of the web part: uvicorn, run as a task of the process's own loop."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp


class QuietServer(uvicorn.Server):
    """uvicorn's server without its signal handlers: the process that owns the loop decides
    when it stops (``should_exit``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_server(app: ASGIApp, host: str, port: int) -> QuietServer:
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="off", log_config=None, server_header=False
    )
    return QuietServer(config)
