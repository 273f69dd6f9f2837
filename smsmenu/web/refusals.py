"""Refusals of the web layer (permissions, codes, logins), named like the ledger's rules.

The ledger's ``Refusal`` names a ``ledger.api.Rule``; what only the web refuses (a missing
key, a scope, a one-time code) is a ``WebRefusal`` naming its own rule. Both become a 4xx
``{"error": {"rule", "message"}}`` in the API and a message on a page; the message is the
catalogue's ``web_refusal_<rule>``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from smsmenu.ledger.api import Refusal

if TYPE_CHECKING:
    from smsmenu.web.context import WebContext


class WebRule(StrEnum):
    UNAUTHORIZED = "unauthorized"  # no or an unknown/revoked API key, not logged in
    FORBIDDEN = "forbidden"  # the key's scope or the operator's role does not allow it
    SUPERVISOR_ONLY = "supervisor_only"  # a reversal by staff
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BAD_REQUEST = "bad_request"  # a body or parameter that does not fit
    IDEMPOTENCY_KEY_MISSING = "idempotency_key_missing"
    CODE_RATE_LIMITED = "code_rate_limited"
    CODE_WRONG = "code_wrong"
    LOGIN_FAILED = "login_failed"
    OPERATOR_LOCKED = "operator_locked"
    BAD_FORM = "bad_form"  # a CSRF token that does not fit: the form is stale
    PAYMENTS_OFF = "payments_off"
    NAME_TAKEN = "name_taken"
    BAD_SCOPE = "bad_scope"
    WEAK_PASSWORD = "weak_password"
    PASSWORDS_DIFFER = "passwords_differ"  # the new password typed twice, two different ones
    FILE_TOO_LARGE = "file_too_large"  # an uploaded card batch file


STATUS = {
    WebRule.UNAUTHORIZED: 401,
    WebRule.FORBIDDEN: 403,
    WebRule.SUPERVISOR_ONLY: 403,
    WebRule.NOT_FOUND: 404,
    WebRule.METHOD_NOT_ALLOWED: 405,
    WebRule.CODE_RATE_LIMITED: 429,
    WebRule.FILE_TOO_LARGE: 413,
}


class WebRefusal(Exception):
    def __init__(self, rule: WebRule, **params: object) -> None:
        super().__init__(rule.value)
        self.rule = rule
        self.params = params

    @property
    def status(self) -> int:
        return STATUS.get(self.rule, 400)


def explain(web: WebContext, exc: Refusal | WebRefusal) -> str:
    """The text a person reads for a refusal (a page, a CLI line, the API's message)."""
    if isinstance(exc, Refusal):
        return web.ledger.explain(exc)
    return web.catalogue.render_lenient(f"web_refusal_{exc.rule.value}", **exc.params)
