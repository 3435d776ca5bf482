"""The inbound Anthropic Messages API (POST /v1/messages).

Anthropic targets get the client's request as-is (passthrough.py), so nothing is lost; any other
target gets it translated to the canonical OpenAI shape (request.py) and its answer translated
back (response.py, stream.py). plan.py makes both kinds of target one failover sequence, and
handler.py is what Messages bring to the one request pipeline (core.pipeline).
"""
