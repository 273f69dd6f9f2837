"""The double-entry ledger: models, rules, service (units of work), billing backends.

Public entry points:

* ``smsmenu.app.open_ledger(settings, clock=None, *, catalogue=None, billing=None)`` builds a
  ``ledger.service.LedgerService`` from Settings (``close_ledger`` disposes of it);
  ``LedgerService(engine, clock, catalogue, settings, billing=None, *, pins=None, keys=None,
  faults=None, billing_timeout_s=10.0, agent_cache=None)`` implements ``ledger.api.AgentLedger``
  plus the operator's functions, reports, ``trial_balance`` and ``recover_pending``.
* ``ledger.api``: values, ``Rule``, ``Refusal``; ``LedgerService.explain(refusal)`` gives the text.
* ``ledger.outbox``: ``add``/``row`` inside units of work, ``Outbox(engine, clock)`` for the sender.
* ``ledger.billing``: ``BillingBackend`` (protocol), ``InternalBilling`` (default),
  ``ScriptedBilling`` and ``FileBilling`` (external test backends).
* ``ledger.db``: ``create_engine``, ``upgrade`` (Alembic, ``smsmenu db upgrade``), ``check_schema``.
* ``ledger.rules``: the pure rules (amounts, commission, PINs, numbers, reversal eligibility).

``LedgerService`` is a thin façade; its docstring lists the modules that do the work, one job
each (admission, recharge, recharge_plan, the writers, agent_cache, two_phase,
operator_functions, transfer, reversal, passwords, account, queries, reports, and the helpers
views, notices, entries, statements, unit_of_work, context).
"""
