"""Secrets never print: repr, str, f-strings, containers and dataclass reprs stay masked."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import pytest

from shared.secret import Secret


@dataclass(frozen=True)
class _Holder:
    key: Secret
    keys: tuple[Secret, ...]


def test_secret_is_masked_everywhere_it_could_print() -> None:
    secret = Secret("sk-live-abcdef123456")
    rendered = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        repr([secret]),
        repr({"k": secret}),
        repr(_Holder(secret, (secret,))),
    ]
    for text in rendered:
        assert "sk-live" not in text
        assert "********" in text
    assert secret.reveal() == "sk-live-abcdef123456"


def test_secret_compares_by_value_and_refuses_pickling() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert len({Secret("a"), Secret("a")}) == 1
    assert bool(Secret("")) is False
    with pytest.raises(TypeError):
        pickle.dumps(Secret("x"))
