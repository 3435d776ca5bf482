"""Budgets: spend caps per tenant, tag, provider, model or provider key, enforced across core
replicas by reserve-then-settle (core.budgets.enforce), with alerts (core.budgets.alerts)."""
