"""Calling targets safely: the attempt loop (retries, failover, timeouts by kind), leased
attempts, circuit breakers shared across replicas, key pools and latency estimates."""
