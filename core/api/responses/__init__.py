"""The inbound OpenAI Responses API (POST /v1/responses, GET and DELETE /v1/responses/{id}).

Targets that speak the API (OpenAI itself, Azure's v1 API) get the client's request as-is
(passthrough.py); every other target gets it translated to the canonical chat shape
(validate.py, request.py) and its answer translated back (response.py, stream.py). plan.py
makes both kinds of target one failover sequence, store.py keeps responses per tenant for
`previous_response_id` and the GET/DELETE routes, items.py lists a stored response's input
items (GET /v1/responses/{id}/input_items), cached.py is the API's part of the response cache
and coalescing (core.cache.stage's `Cached` seam), and handler.py is what the API brings to
the one request pipeline (core.pipeline).
"""
