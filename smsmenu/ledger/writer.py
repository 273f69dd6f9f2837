"""The recharge writer: one per database, carrying out plans (``recharge_plan``).

Every recharge — from the menus, a shortcut, the command line, a retry, the recovery of a
crash — is planned once and written by the writer of its database: ``writer_sqlite`` (the
embedded default: one transaction on a connection of its own, in one thread call) or
``writer_pg`` (PostgreSQL: one round trip, the database functions of migration 0005). With
internal billing a recharge is ``recharge``d at once; through an external billing system it is
``reserve``d, then ``resolve``d (posted or voided) once billing answered, or by the recovery
of a crash. Both writers book a posted recharge the same way (credit, prepaid validity,
journal, notices).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from smsmenu.ledger import passwords
from smsmenu.ledger.api import RechargeRequest
from smsmenu.ledger.recharge_plan import Claim, Validity, Written


@dataclass(frozen=True)
class RechargeOp:
    """A recharge to write: the request, its key's fingerprint, the proof of its password
    (None: the verify cache's word, or ``Unchecked``) and the claim of its notices."""

    request: RechargeRequest
    fingerprint: str
    proof: passwords.Proof | None
    claim: Claim | None


@dataclass(frozen=True)
class Resolution:
    """How a reserved recharge ends: posted (billing credited it) or voided; its notices
    (``notices.recharge_result`` with markers for the balances) and their claim; the validity
    a posted one adds to a prepaid target."""

    txn: int
    posted: bool
    error: str | None
    notices: tuple[dict[str, Any], ...]
    claim: Claim | None
    validity: Validity


class RechargeWriter(Protocol):
    async def recharge(self, op: RechargeOp) -> Written:
        """Plan and write a recharge at once (internal billing). Raises the rules'
        ``Refusal``, ``passwords.Unchecked`` or ``KeyTaken``."""
        ...

    async def reserve(self, op: RechargeOp) -> Written:
        """Plan a recharge and reserve its funds (its row pending, no notices yet)."""
        ...

    async def resolve(self, resolution: Resolution) -> Written | None:
        """Post or void a reserved recharge, once: None if it was resolved already."""
        ...

    async def agent_id_for_phone(self, phone: str) -> int | None:
        """The agent bound to ``phone`` (not closed), if any."""
        ...

    async def aclose(self) -> None: ...
