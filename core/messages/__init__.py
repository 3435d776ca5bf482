"""The inbound Anthropic Messages API (POST /v1/messages).

Anthropic targets get the client's request as-is (passthrough.py), so nothing is lost; any other
target gets it translated to the canonical OpenAI shape (request.py) and its answer translated
back (response.py, stream.py). handler.py plans and fails over across both kinds of target.
"""
