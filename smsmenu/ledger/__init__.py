"""The double-entry ledger: models, rules, service (units of work), billing backends."""
