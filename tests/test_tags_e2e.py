"""Billing tags through a real edge and core into the SQLite ledger, with the official SDKs:
a token's `tags` claim (`interlock token issue --tag`) wins over the request's header and body,
OpenAI's metadata/user and Anthropic's metadata.user_id become tags, and a token whose tags
claim is malformed is a 401 at the edge; `interlock token issue --tag` signs only valid tags."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anthropic
import jwt
import openai
import pytest

from core.ops.keys import issue_token, load_signing_key
from tests.support.budget_core import BUDGET_CORE
from tests.support.ledger_load import sqlite_rows
from tests.support.stack import Stack
from tests.test_token_cli import claims_of, config_file, issue

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("tags"), {"ledger": {"flush_interval": "50ms"}})
    yield running.start()
    running.stop()


def tagged_token(stack: Stack, tags: dict[str, str]) -> str:
    return issue_token(stack.config.auth, "acme", 600, ["*"], tags=tags)


def ledger_tags(stack: Stack, count: int) -> list[dict[str, str]]:
    rows = sqlite_rows(stack.workdir / "state" / "ledger.sqlite3", count)
    assert len(rows) >= count
    return [json.loads(row["tags"]) for row in rows[:count]]


def test_token_tags_win_and_body_tags_join_in_the_ledger(stack: Stack) -> None:
    token = tagged_token(stack, {"project": "billing", "team": "core"})
    sdk = openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=token, max_retries=0)
    sdk.chat.completions.create(
        model="mock-1",
        messages=MESSAGES,  # type: ignore[arg-type]
        metadata={"project": "tenant-says", "customer": "c-42", "Not A Tag": "kept out"},
        user="end-user-7",
        extra_headers={"x-interlock-tags": "project=header-says,env=prod"},
    )
    claude = anthropic.Anthropic(base_url=stack.edge_url, api_key=token, max_retries=0)
    claude.messages.create(
        model="mock-1",
        max_tokens=5,
        messages=MESSAGES,  # type: ignore[arg-type]
        metadata={"user_id": "u-9"},
    )
    chat, messages = ledger_tags(stack, 2)
    assert chat == {
        "project": "billing",
        "team": "core",
        "env": "prod",
        "customer": "c-42",
        "user": "end-user-7",
    }
    assert messages == {"project": "billing", "team": "core", "user": "u-9"}


def test_a_header_past_the_bound_with_the_token_tags_is_a_400(stack: Stack) -> None:
    token = tagged_token(stack, {f"t{i}": "v" for i in range(5)})
    sdk = openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=token, max_retries=0)
    header = ",".join(f"h{i}=v" for i in range(6))
    with pytest.raises(openai.BadRequestError) as error:
        sdk.chat.completions.create(
            model="mock-1",
            messages=MESSAGES,  # type: ignore[arg-type]
            extra_headers={"x-interlock-tags": header},
        )
    assert error.value.param == "x-interlock-tags"  # type: ignore[attr-defined]


@pytest.mark.parametrize("tags", [{"Project": "x"}, ["project=x"], {"project": "a,b"}])
def test_a_malformed_tags_claim_is_a_401_at_the_edge(stack: Stack, tags: object) -> None:
    auth = stack.config.auth
    private, alg, kid = load_signing_key(auth)
    now = int(time.time())
    claims = {
        "iss": auth.issuer,
        "aud": auth.audience,
        "sub": "acme",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "tags": tags,
    }
    token = jwt.encode(claims, private, algorithm=alg, headers={"kid": kid})
    sdk = openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=token, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as error:
        sdk.chat.completions.create(model="mock-1", messages=MESSAGES)  # type: ignore[arg-type]
    assert "tags claim" in str(error.value)


def test_the_cli_signs_repeated_tags_and_refuses_what_the_edge_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path)
    assert issue(path, "--models", "*", "--tag", "project=search", "--tag", "env=prod") == 0
    assert claims_of(capsys.readouterr().out)["tags"] == {"project": "search", "env": "prod"}
    too_many = [f"k{i}=v" for i in range(11)]
    for bad in (["Project=x"], ["project"], ["a=1", "a=2"], ["a=x,y"], too_many):
        tags = [arg for pair in bad for arg in ("--tag", pair)]
        assert issue(path, "--models", "*", *tags) == 2


def test_a_budget_scoped_by_a_tag_matches_the_token_claim_over_the_header(
    tmp_path: Path,
) -> None:
    budgets = {"billing": {"tags": {"project": "billing"}, "limit": "0.000001"}}
    budgeted = Stack(tmp_path, {"budgets": budgets}).start(core_app=BUDGET_CORE)
    try:
        claimed = tagged_token(budgeted, {"project": "billing"})
        sdk = openai.OpenAI(base_url=f"{budgeted.edge_url}/v1", api_key=claimed, max_retries=0)
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.chat.completions.create(
                model="mock-1",
                messages=MESSAGES,  # type: ignore[arg-type]
                extra_headers={"x-interlock-tags": "project=elsewhere"},
            )
        assert caught.value.code == "budget_exceeded"
        untagged = openai.OpenAI(
            base_url=f"{budgeted.edge_url}/v1", api_key=budgeted.token(), max_retries=0
        )
        untagged.chat.completions.create(model="mock-1", messages=MESSAGES)  # type: ignore[arg-type]
    finally:
        budgeted.stop()
