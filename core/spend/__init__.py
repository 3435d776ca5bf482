"""Spend: prices, cost per request and budgets (README: Spend)."""
