"""Tenant rate limits (RPM/TPM per tier or tenant, across replicas) and the admission step that
reserves an estimate and settles it to actual usage."""
