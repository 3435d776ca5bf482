"""What the core tells operators: the usage line per request (no content), Prometheus text for
the admin listener, and the request context that breaker attribution reads."""
