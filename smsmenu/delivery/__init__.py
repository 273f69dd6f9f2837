"""Delivery: the outbox sender, which moves the ledger's notices to the phones over any
``links.Link`` and records what the operator made of them."""
