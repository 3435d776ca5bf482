"""The durable usage ledger: one record per request outcome, batched off the hot path."""
