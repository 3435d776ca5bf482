"""The official SDKs pointed at a running stack's edge, with the tenant token as the API key.

SDK retries are off: the gateway's own retries and failover are what the tests observe.
"""

from __future__ import annotations

import anthropic
import openai

from tests.support.stack import Stack


def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token(), max_retries=0)


def async_client(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token(), max_retries=0)


def anthropic_client(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.edge_url, api_key=stack.token(), max_retries=0)
