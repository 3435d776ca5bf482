"""`interlock`: keys, tenant tokens, and running the stack.

interlock keys init [--alg ES256|EdDSA] [--force]
interlock token issue --tenant T --ttl 15m --models 'a,b'|'*' [--tier free] [--cidrs ...] [--admin]
                      [--tag k=v ...]
interlock token revoke --jti J [--exp TIME] | --tenant T [--before TIME]
interlock up                      # edge + core on loopback (what `make run` does)
interlock serve edge|core         # one tier in the foreground (containers, Lambda)
interlock check-config [--verbose] # run the core's start-up checks on interlock.yaml, exit
                                  # (and warn of routing rules that can never match)
interlock config explain          # resolved config (secrets masked), models, routes and rules
interlock prices [--catalogue] [--check]  # target prices; --check: exit 1 if one is unpriced
interlock usage [--start T] [--end T] [--group-by day,model] [--tenant T] [--csv]  # the ledger
interlock route explain --tenant T --model M [request.json]  # a running core's routing decision
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.ops.explain_config import add_parsers as config_parsers
from core.ops.keys import ensure_hop_secret, init_keys, issue_token, secure_state_dir, write_private
from core.ops.revoke import revoke_tenant, revoke_token
from core.ops.route import add_parser as route_parser
from shared import claims
from shared.config import Config, LimitsConfig, load_config, load_edge_config
from shared.configparse import ConfigError, duration


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def cmd_keys_init(args: argparse.Namespace) -> int:
    config = _config(args)
    secure_state_dir(config.state_dir)
    jwk = init_keys(config.auth, args.alg, args.force)
    print(f"signing key: {config.auth.signing_key_file} (keep private)")
    print(f"public JWKS: {config.auth.jwks_file} (kid {jwk['kid']}, {jwk['alg']})")
    return 0


def _list(value: str | None, flag: str) -> list[str] | None:
    if value is None:
        return None
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise ValueError(
            f"{flag} is empty; name at least one (for --models, '*' means every model)"
        )
    return items


def _check_tier(limits: LimitsConfig, tenant: str, tier: str | None) -> None:
    """With tiers configured, refuse a token the core would refuse: an unknown --tier (a typo
    must not mint a token that fails at request time, even where a tenant override or the
    default tier would cover it), or none when the implied tier ("default") is neither
    configured nor covered by limits.default_tier or the tenant's own limits."""
    if not limits.tiers:
        return
    known = ", ".join(sorted(limits.tiers))
    if tier is not None and tier not in limits.tiers:
        raise ValueError(f"--tier {tier!r} is not a configured tier (limits.tiers: {known})")
    if tier is None and limits.for_caller(tenant, claims.DEFAULT_TIER) is None:
        raise ValueError(f"--tier is required: limits.tiers has {known} and no default_tier")


def cmd_token_issue(args: argparse.Namespace) -> int:
    """Models must be named: an unrestricted token takes an explicit --models '*'."""
    config = _config(args)
    ttl = duration({"ttl": args.ttl}, "ttl", "--ttl", 0)
    models = _list(args.models, "--models")
    _check_tier(config.limits, args.tenant, args.tier)
    cidrs = _list(args.cidrs, "--cidrs")
    token = issue_token(
        config.auth,
        args.tenant,
        ttl,
        models,
        args.tier,
        cidrs=cidrs,
        admin=args.admin,
        tags=_tags(args.tag),
    )
    print(token)
    return 0


def _tags(pairs: list[str] | None) -> dict[str, str] | None:
    """Repeated --tag k=v, each key once (issue_token checks the rules and the bound)."""
    if not pairs:
        return None
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key in tags:
            raise ValueError(f"--tag {pair!r}: expected key=value, each key once")
        tags[key] = value
    return tags


def _time(value: str | None, flag: str) -> float | None:
    """Epoch seconds or ISO 8601 (UTC unless it names a zone)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{flag}: expected epoch seconds or an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def cmd_token_revoke(args: argparse.Namespace) -> int:
    if (args.jti is not None and args.before) or (args.tenant is not None and args.exp):
        raise ValueError("--exp goes with --jti, --before with --tenant")
    config = _config(args)
    auth = config.auth
    secure_state_dir(config.state_dir)
    if args.jti is not None:
        until = revoke_token(auth, args.jti, _time(args.exp, "--exp"))
        print(f"revoked token {args.jti} (listed until {_iso(until)})")
    else:
        before = revoke_tenant(auth, args.tenant, _time(args.before, "--before"))
        print(f"revoked every token of tenant {args.tenant} issued before {_iso(before)}")
    where = (
        f"publish {auth.revocation_file} at {auth.revocation_url}; " if auth.revocation_url else ""
    )
    print(f"{where}edges apply it within {auth.revocation_refresh_s:g} s (auth.revocation_refresh)")
    return 0


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def cmd_capabilities(args: argparse.Namespace) -> int:
    from core.ops.captable import render

    print(render())
    return 0


def _server_args(tier: str) -> list[str]:
    """The one launcher (shared/server.py): header/body/keep-alive timeouts, connection budgets
    and, for the core, the admin listener, all from the config it reads ($INTERLOCK_CONFIG)."""
    return [sys.executable, "-m", "shared.server", tier]


def cmd_serve(args: argparse.Namespace) -> int:
    # Fail here, with the CLI's message, on an invalid config, read as the tier reads it.
    (load_edge_config if args.tier == "edge" else load_config)(args.config)
    env = dict(os.environ)
    if args.config:
        env["INTERLOCK_CONFIG"] = str(args.config)
    argv = _server_args(args.tier)
    os.execve(sys.executable, argv, env)
    return 0  # unreachable


def _wait_healthy(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process serving {url} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy in time")


def _examples(edge_url: str, token: str, model: str) -> str:
    """The banner; each command stays on one line so it can be copy-pasted whole."""
    message = '[{"role": "user", "content": "Hello!"}]'
    curl = (
        f"curl -sS {edge_url}/v1/chat/completions"
        ' -H "Authorization: Bearer $INTERLOCK_TOKEN"'
        " -H 'content-type: application/json'"
        f""" -d '{{"model": "{model}", "messages": {message}}}'"""
    )
    python = (
        "python3 -c 'from openai import OpenAI; "
        f"""c = OpenAI(base_url="{edge_url}/v1", api_key="'$INTERLOCK_TOKEN'"); """
        f"""print(c.chat.completions.create(model="{model}", messages={message})"""
        ".choices[0].message.content)'"
    )
    return "\n".join(
        [
            "",
            f"interlock is up: edge {edge_url}  (tenant token for 'demo' below; valid 1 h)",
            "",
            f"export INTERLOCK_TOKEN='{token}'",
            "",
            curl,
            "",
            python,
            "",
            "Ctrl-C stops both tiers.",
            "",
        ]
    )


def cmd_up(args: argparse.Namespace) -> int:
    config = _config(args)
    secure_state_dir(config.state_dir)
    if not config.auth.signing_key_file.exists():
        jwk = init_keys(config.auth)
        print(f"created signing key {config.auth.signing_key_file} (kid {jwk['kid']})", flush=True)
    env = dict(os.environ)
    if args.config:
        env["INTERLOCK_CONFIG"] = str(Path(args.config).resolve())
    if not config.hop.secret and not env.get("INTERLOCK_HOP_SECRET"):
        ensure_hop_secret(config.state_dir)
    core = subprocess.Popen(_server_args("core"), env=env)
    edge = subprocess.Popen(_server_args("edge"), env=env)
    children = (core, edge)

    def stop(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    edge_url = f"http://{config.edge.host}:{config.edge.port}"
    try:
        deadline = time.monotonic() + 60
        admin = f"http://{config.core.admin_host}:{config.core.admin_port}"
        _wait_healthy(f"{admin}/readyz", core, deadline)
        _wait_healthy(f"{edge_url}/healthz", edge, deadline)
    except RuntimeError as exc:
        print(f"interlock up failed: {exc}", file=sys.stderr)
        stop(0, None)
        return 1
    token = issue_token(config.auth, "demo", min(3600.0, config.auth.max_ttl_s))
    write_private(config.state_dir / "demo-token", (token + "\n").encode())
    model = next(iter(config.aliases), None) or next(iter(config.models), "mock-1")
    print(_examples(edge_url, token, model), flush=True)
    code = 0
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    stop(0, None)
    for child in children:
        code = code or (child.wait() or 0)
    return code if code > 0 else 0


def cmd_prices(args: argparse.Namespace) -> int:
    from core.ops.prices import report  # builds providers: only for this command

    text, unpriced = report(_config(args), args.catalogue)
    print(text)
    return 1 if args.check and unpriced else 0


def cmd_usage(args: argparse.Namespace) -> int:
    from core.ops.usage import OPTIONS, report  # opens the ledger store: only this command

    params = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    params["limit"] = str(args.page_size)
    print(report(_config(args), params, args.csv))
    return 0


def _usage_parser(sub: Any) -> None:
    usage = sub.add_parser("usage", help="spend and tokens from the ledger (every tenant)")
    usage.add_argument("--start", help="epoch s or RFC 3339 (default: today 00:00 UTC)")
    usage.add_argument("--end", help="epoch s or RFC 3339, exclusive (default: tomorrow)")
    usage.add_argument(
        "--group-by",
        help="comma list: minute|hour|day, tenant, model, provider, served_model, tag:<key>",
    )
    for name in ("tenant", "model", "provider", "served-model"):
        usage.add_argument(f"--{name}", help=f"only this {name}")
    usage.add_argument("--tag", help="only records tagged <key>:<value>")
    usage.add_argument("--page-size", type=int, default=1000, help=argparse.SUPPRESS)
    usage.add_argument("--csv", action="store_true", help="CSV instead of a table")
    usage.set_defaults(func=cmd_usage)


def _token_parser(sub: Any) -> None:
    """`interlock token issue | revoke`."""
    token = sub.add_parser("token", help="tenant tokens").add_subparsers(
        dest="token_command", required=True
    )
    issue = token.add_parser("issue", help="print a signed, short-lived tenant JWT")
    issue.add_argument("--tenant", required=True)
    issue.add_argument("--ttl", default="15m", help="lifetime, e.g. 15m (capped by auth.max_ttl)")
    issue.add_argument(
        "--models",
        required=True,
        help="comma-separated model names or globs the tenant may use; '*' for every model",
    )
    issue.add_argument("--tier", help="rate-limit/budget tier (one of limits.tiers)")
    issue.add_argument("--cidrs", help="comma-separated client networks, e.g. 10.0.0.0/8")
    issue.add_argument(
        "--admin", action="store_true", help="an operator token: reads every tenant's usage"
    )
    issue.add_argument(
        "--tag",
        action="append",
        metavar="KEY=VALUE",
        help="a billing tag on every request of the token (repeatable; wins over the request's)",
    )
    issue.set_defaults(func=cmd_token_issue)

    revoke = token.add_parser("revoke", help="revoke one token (jti) or a tenant's tokens")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("--jti", help="the token's jti")
    target.add_argument("--tenant", help="revoke every token of this tenant")
    revoke.add_argument("--exp", help="with --jti: the token's exp (epoch s or ISO 8601)")
    revoke.add_argument(
        "--before", help="with --tenant: tokens issued before this time (default: now)"
    )
    revoke.set_defaults(func=cmd_token_revoke)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interlock", description="interlock LLM gateway")
    parser.add_argument(
        "--config",
        help="path to interlock.yaml (default: $INTERLOCK_CONFIG, ./interlock.yaml, built-in)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    keys = sub.add_parser("keys", help="manage signing keys").add_subparsers(
        dest="keys_command", required=True
    )
    init = keys.add_parser("init", help="create a signing key pair and public JWKS")
    init.add_argument("--alg", choices=["ES256", "EdDSA"])
    init.add_argument("--force", action="store_true", help="replace existing keys")
    init.set_defaults(func=cmd_keys_init)

    _token_parser(sub)

    sub.add_parser("up", help="run edge and core on loopback").set_defaults(func=cmd_up)
    serve = sub.add_parser("serve", help="run one tier in the foreground")
    serve.add_argument("tier", choices=["edge", "core"])
    serve.set_defaults(func=cmd_serve)
    config_parsers(sub)  # check-config, config explain
    sub.add_parser("capabilities", help="print the provider x feature table").set_defaults(
        func=cmd_capabilities
    )
    prices = sub.add_parser("prices", help="what each configured target costs")
    prices.add_argument("--catalogue", action="store_true", help="also list the catalogue")
    prices.add_argument("--check", action="store_true", help="exit 1 if a target is unpriced")
    prices.set_defaults(func=cmd_prices)
    _usage_parser(sub)
    route_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (ConfigError, ValueError, FileExistsError, OSError) as exc:
        print(f"interlock: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
