"""Web access (SPEC §9): agent and operator pages and the HTTP API under /api/v1.

``app.build_app`` makes the ASGI application from a ``context.WebContext`` (the ledger, the
secret's keys, the catalogue, a payment provider); ``smsmenu.app.web_part`` builds it from
Settings. Every money operation goes through the ledger's commands (``LedgerService``), so a
web or API call gets the same rules, idempotency keys and ``smsmenu.money`` log line as SMS.
"""
