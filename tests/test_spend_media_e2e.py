"""Media spend end to end, through a real edge and core with the official OpenAI SDK against the
wire-faithful media fakes (the stack of test_media_e2e.py, a fresh one for this module): an
image's cost follows its quality and size (x-interlock-cost), and the units media are billed
by (images, seconds of audio, characters) reach the ledger's raw rows, `GET /v1/usage` and
`interlock usage`, where the totals equal the raw records."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import pytest

from core.ops.cli import main
from tests.support.fake_media import make_wav
from tests.support.ledger_load import sqlite_rows
from tests.support.stack import Stack
from tests.support.usage_stack import usage
from tests.test_media_e2e import client, fakes, media, stack  # noqa: F401 - the fixtures

REQUESTS = 4


def _traffic(stack: Stack) -> None:  # noqa: F811 - the fixture's name
    sdk = client(stack)
    hd = sdk.images.with_raw_response.generate(
        model="dalle", prompt="a boat", quality="hd", size="1792x1024"
    )
    assert hd.headers["x-interlock-cost"] == "0.120000"  # dall-e-3 hd 1792x1024: $0.12
    premium = sdk.images.with_raw_response.generate(
        model="canvas", prompt="a boat", n=2, quality="hd", size="1024x1024"
    )
    assert premium.headers["x-interlock-cost"] == "0.120000"  # 2 x Nova Canvas premium $0.06
    sdk.audio.transcriptions.create(model="whisper", file=("a.wav", make_wav(4.0)))
    with sdk.audio.speech.with_streaming_response.create(
        model="tts", voice="alloy", input="hello world"
    ) as speech:
        speech.read()


def _usage_when_written(stack: Stack, **params: Any) -> dict[str, Any]:  # noqa: F811
    deadline = time.monotonic() + 15
    while True:
        answer = usage(stack, stack.token(), **params)
        assert answer.status == 200, answer.body.decode()
        body: dict[str, Any] = answer.json()
        if body["totals"]["requests"] >= REQUESTS or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_media_units_reach_the_ledger_the_usage_api_and_the_cli(
    stack: Stack,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    _traffic(stack)
    body = _usage_when_written(stack, group_by="model")
    units = {
        row["model"]: (row["images"], row["audio_seconds"], row["characters"])
        for row in body["data"]
    }
    expected = {
        "canvas": (2, 0, 0),
        "dalle": (1, 0, 0),
        "tts": (0, 0, 11),
        "whisper": (0, 4, 0),
    }
    # Seen once in a full run (not reproduced since): the speech row missing after 15 s. The
    # logs say whether the core accounted it, and how the stream ended.
    assert units == expected, f"{body}\n{stack.read_logs()[-6000:]}"
    totals = body["totals"]
    assert (totals["images"], totals["audio_seconds"], totals["characters"]) == (3, 4, 11)
    rows = sqlite_rows(stack.workdir / "state" / "ledger.sqlite3", REQUESTS)
    raw = [(r["images"], r["audio_ms"], r["characters"]) for r in rows]
    assert sorted(raw) == [(0, 0, 11), (0, 4000, 0), (1, 0, 0), (2, 0, 0)]
    assert sum(r["cost_micros"] for r in rows) == totals["cost_micros"]

    config = ["--config", str(stack.config_path)]
    assert main([*config, "usage", "--group-by", "model", "--csv"]) == 0
    cli = {
        row["model"]: (row["images"], row["audio_seconds"], row["characters"])
        for row in csv.DictReader(io.StringIO(capsys.readouterr().out))
    }
    assert cli == {model: tuple(str(v) for v in u) for model, u in units.items()}
