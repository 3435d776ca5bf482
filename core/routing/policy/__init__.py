"""Routing policy (issue 12): rules from `routing` compiled once into closures (conditions.py),
evaluated per request over its facts (facts.py), first match wins (rules.py); rules that can
never match are found by shadow.py."""
