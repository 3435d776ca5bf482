"""Wire formats below the APIs: server-sent events, AWS event-stream frames, token estimates."""
