"""The web dashboard (README: Dashboard): static files served by the core (and relayed by the
edge), and the small JSON reads the usage API does not answer (core.dashboard.api)."""
