"""Billing tags from `x-interlock-tags`: validated and bounded, a 400 naming the header."""

from __future__ import annotations

import pytest

from core.api.tags import parse_tags
from shared.errors import GatewayError


def test_tags_are_parsed_sorted_and_trimmed() -> None:
    assert parse_tags(None) == () and parse_tags("  ") == ()
    assert parse_tags("project=search, env=prod,cost.centre=R&D 42") == (
        ("cost.centre", "R&D 42"),
        ("env", "prod"),
        ("project", "search"),
    )


@pytest.mark.parametrize(
    "header",
    [
        "project",  # no value
        "Project=x",  # key not [a-z0-9_.-]
        "k" * 65 + "=x",
        "project=",
        "project=" + "v" * 129,
        "project=caf\u00e9",  # not printable ASCII
        "project=a\x07b",
        "a=1,a=2",
        ",".join(f"k{i}=v" for i in range(11)),
    ],
)
def test_bad_tags_are_a_400_naming_the_header(header: str) -> None:
    with pytest.raises(GatewayError) as error:
        parse_tags(header)
    assert error.value.status == 400 and error.value.param == "x-interlock-tags"
