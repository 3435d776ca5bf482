"""Billing tags, so one tenant key can be billed per department, project or end customer (the
ledger records them, budgets match on them). They come from, in order of precedence:

1. the token's `tags` claim (the operator's attribution: checked at the edge, signed on the hop);
2. the `x-interlock-tags: project=search,env=prod` header;
3. the request body: OpenAI's `metadata` entries and `user` (tag `user`), Anthropic's
   `metadata.user_id` (tag `user`).

A key already set by an earlier source keeps its value. Same rules everywhere (shared.claims:
at most 10 tags, keys of 1-64 [a-z0-9_.-], values of 1-128 printable ASCII but ','). The header
is the gateway's own: anything wrong in it is a 400 naming it, never silently dropped (a typo
would otherwise bill to nobody). The body's fields are the APIs' own and accept more than a tag
may hold (OpenAI: metadata keys up to 64 characters of any kind, values up to 512), so a body
entry that does not fit the rules, or no longer fits under the bound, is simply not a tag.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from core.ledger.record import Tags
from shared.claims import MAX_TAGS, TAG_RULES, valid_tag
from shared.errors import Api, GatewayError

HEADER = "x-interlock-tags"
USER_TAG = "user"


def _invalid(why: str) -> GatewayError:
    return GatewayError(400, f"{HEADER}: {why}", param=HEADER, code="invalid_tags")


def parse_tags(header: str | None) -> Tags:
    """The header's tags, sorted by key; () when there is none."""
    if header is None or not header.strip():
        return ()
    tags: dict[str, str] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        value = value.strip()
        if not sep or not valid_tag(key, value):
            raise _invalid(f"expected key=value pairs, {TAG_RULES}")
        if key in tags:
            raise _invalid(f"the tag {key!r} is given twice")
        tags[key] = value
        if len(tags) > MAX_TAGS:
            raise _invalid(f"at most {MAX_TAGS} tags")
    return tuple(sorted(tags.items()))


def with_header(token_tags: Tags, header: str | None) -> Tags:
    """The token's tags and the header's: a key the token sets keeps the token's value; a
    header that takes the total past the bound is a 400 (it would otherwise be cut silently)."""
    merged = dict(parse_tags(header))
    merged.update(token_tags)
    if len(merged) > MAX_TAGS:
        raise _invalid(f"at most {MAX_TAGS} tags, counting the {len(token_tags)} of the token")
    return tuple(sorted(merged.items()))


def with_body(tags: Tags, api: Api, payload: dict[str, Any]) -> Tags:
    """`tags` plus the body's tags that fit the rules, keys not yet set, up to the bound."""
    merged = dict(tags)
    for key, value in _body_entries(api, payload):
        if len(merged) >= MAX_TAGS:
            break
        if key not in merged and valid_tag(key, value):
            merged[key] = value
    return tags if len(merged) == len(tags) else tuple(sorted(merged.items()))


def _body_entries(api: Api, payload: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    """Candidate tags from the API's own fields, in precedence order (any JSON: unchecked)."""
    metadata = payload.get("metadata")
    if api == "anthropic":
        if isinstance(metadata, dict) and "user_id" in metadata:
            yield USER_TAG, metadata["user_id"]
        return
    if isinstance(metadata, dict):
        yield from metadata.items()
    if "user" in payload:
        yield USER_TAG, payload["user"]
