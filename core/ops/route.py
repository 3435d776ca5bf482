"""`interlock route explain`: asks a running core which routing rule a request would match and
how its route's candidates compare (the admin listener's POST /admin/route/explain, so the
answer reflects that core's live latency estimates, breakers and budget levels).

interlock route explain --tenant T --model M [--tier X] [--tag k=v ...] [--header k=v ...]
                        [--api chat|messages|embeddings|responses] [--core URL] [--json]
                        [request.json]

Without a request file the request is the smallest one the API accepts (one short user message;
`max_tokens` 1024 for messages, which requires it), so costs are priced for that; give the
real request (its `max_tokens`, tools, images) to see what it would meet.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from core.ops.prices import table
from shared.config import Config, load_config

TIMEOUT_S = 10.0
MINIMAL: dict[str, dict[str, Any]] = {
    "chat": {"messages": [{"role": "user", "content": "hello"}]},
    "messages": {"max_tokens": 1024, "messages": [{"role": "user", "content": "hello"}]},
    "embeddings": {"input": "hello"},
    "responses": {"input": "hello"},
}


def command(args: argparse.Namespace) -> int:
    """Runs `interlock route explain`: exit 2 (core.ops.cli) for bad options or a 4xx."""
    url = args.core or core_url(load_config(args.config))
    answer = call(url, ask(args))
    print(json.dumps(answer, indent=2) if args.json else render(answer))
    return 0


def add_parser(sub: Any) -> None:
    """`route explain` under the CLI's subcommands (core.ops.cli)."""
    route = sub.add_parser("route", help="routing policy tools").add_subparsers(
        dest="route_command", required=True
    )
    explain = route.add_parser("explain", help="which rule and target a request would get")
    explain.add_argument("--tenant", required=True)
    explain.add_argument("--model", help="the requested model (default: the request file's)")
    explain.add_argument("--tier", default="default", help="the token's tier")
    explain.add_argument("--tag", action="append", metavar="KEY=VALUE", help="repeatable")
    explain.add_argument("--header", action="append", metavar="NAME=VALUE", help="repeatable")
    explain.add_argument("--api", choices=sorted(MINIMAL), default="chat")
    explain.add_argument("--core", help="the core's admin URL (default: loopback, admin_port)")
    explain.add_argument("--json", action="store_true", help="print the endpoint's JSON")
    explain.add_argument("request", nargs="?", help="a request body (JSON file) to explain")
    explain.set_defaults(func=command)


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _request(args: argparse.Namespace) -> dict[str, Any]:
    if args.request is None:
        body = dict(MINIMAL[args.api])
    else:
        try:
            body = json.loads(Path(args.request).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{args.request}: not JSON ({error.msg})") from None
        if not isinstance(body, dict):
            raise ValueError(f"{args.request}: expected a JSON object (the request body)")
    if args.model is not None:
        body["model"] = args.model
    if "model" not in body:
        raise ValueError("--model: required when the request file names no model")
    return body


def ask(args: argparse.Namespace) -> dict[str, Any]:
    """The endpoint's body from the options."""
    return {
        "tenant": args.tenant,
        "tier": args.tier,
        "tags": _pairs(args.tag, "--tag"),
        "api": args.api,
        "headers": _pairs(args.header, "--header"),
        "request": _request(args),
    }


def call(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POSTs to the admin endpoint; ValueError with the core's message for a 4xx."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/admin/route/explain",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        raise ValueError(_error_text(error)) from None
    except urllib.error.URLError as error:
        raise ConnectionError(f"the core at {url} did not answer ({error.reason})") from None


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(error.read())["error"]
        return f"{detail.get('param') or 'request'}: {detail['message']}"
    except (ValueError, KeyError, TypeError):
        return f"the core answered {error.code}"


def core_url(config: Config) -> str:
    return f"http://127.0.0.1:{config.core.admin_port}"


def _cell(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def render(answer: dict[str, Any]) -> str:
    """The explanation as text: the rule, the route, then a row per candidate."""
    lines = [f"rule:     {answer['rule']}"]
    if answer.get("refused") is not None:
        lines.append(f"refused:  {answer['refused']}")
        return "\n".join(lines)
    ceiling = answer.get("latency_ceiling_ms")
    lines += [
        f"route:    {answer['route']}",
        f"strategy: {answer['strategy']}"
        + (f" (latency ceiling {ceiling:g} ms)" if ceiling is not None else ""),
        f"estimate: {answer['estimate']['input_tokens']} input tokens, "
        f"{_output(answer['estimate']['max_output_tokens'])}",
        "",
    ]
    rows = [["order", "target", "cost ($)", "latency (ms)", "error rate", "score", "status"]]
    for c in answer["candidates"]:
        cost = "unpriced" if c["unpriced"] else _cell(c["cost_usd"])
        status = "ok" if c["skipped"] is None else f"skipped: {c['skipped']}"
        if c["why"]:
            status += f" ({c['why']})"
        latency = _cell(c["latency_ms"], "{:.1f}")
        numbers = [cost, latency, f"{c['error_rate']:.3f}", _cell(c["score"]), status]
        rows.append([_cell(c["order"]), c["target"], *numbers])
    text = "\n".join(lines) + "\n" + table(rows)
    if answer["strategy"] == "weighted" and len(rows) > 2:
        text += "\n(weighted: each request draws its own order, by weight)"
    return text


def _output(tokens: int | None) -> str:
    return "output uncapped" if tokens is None else f"at most {tokens} output tokens"
