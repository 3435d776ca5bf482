"""Where a referenced secret's value comes from: one `SecretSource` per URL scheme.

A secret-valued setting may be a literal, `${ENV}` (configparse), or a reference such as
`aws-sm://<secret id or ARN>[#json-field]`. The reference is parsed at config load (a typo in
the scheme fails there); its value is read at start-up and refreshed in the background
(shared/secret_refresh.py), never on a request's path.

A source is blocking (boto3 is): callers run `read` in a worker thread. Its errors
(`SecretError`) name the reference and what is wrong with it, never a value. A second backend
(Vault: `vault://<path>#<field>`) is one more class with `read` and one more entry in
`SOURCES`; nothing else changes.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Protocol

import orjson

from shared.configparse import ConfigError
from shared.secret import Secret, SecretRef

CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://")
_PLANNED = frozenset({"vault"})  # schemes with a designed place here, not built yet


class SecretError(Exception):
    """A reference that cannot be read: the message names the reference, never a value."""


class SecretSource(Protocol):
    def read(self, reference: str, stage: str) -> str | None:
        """The value at `stage` (CURRENT or PENDING; a source without stages reads its one
        value for CURRENT and None for PENDING); None when that stage does not exist.
        Blocking; raises SecretError when the secret is missing, unreadable or malformed."""
        ...


def split_reference(reference: str) -> tuple[str, str | None]:
    """(secret id or ARN, JSON field or None) of `scheme://id[#field]`."""
    body = reference.split("://", 1)[1]
    secret_id, sep, field = body.partition("#")
    return secret_id, (field if sep else None)


def pick_field(reference: str, text: str, field: str | None) -> str:
    """The value a reference names: the whole secret string, or one field of its JSON."""
    if field is None:
        value: Any = text
    else:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise SecretError(f"{reference}: the secret is not JSON (#field needs JSON)") from None
        if not isinstance(document, dict) or field not in document:
            raise SecretError(f"{reference}: the secret's JSON has no field {field!r}")
        value = document[field]
    if not isinstance(value, str) or not value:
        raise SecretError(f"{reference}: expected a non-empty string value")
    return value


class AwsSecretsManager:
    """AWS Secrets Manager through boto3: credentials from the standard chain (environment,
    profile, the IAM role on Lambda, ECS or EKS), the endpoint from the standard
    AWS_ENDPOINT_URL(_SECRETS_MANAGER) variables. boto3 is imported on the first read only,
    so a process with no reference (the common edge on Lambda) never loads it."""

    def __init__(self) -> None:
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def _client(self, secret_id: str) -> Any:
        # An ARN names its region (arn:aws:secretsmanager:<region>:...); a name uses the default.
        parts = secret_id.split(":")
        region = parts[3] if secret_id.startswith("arn:") and len(parts) > 3 else None
        with self._lock:  # client creation is not thread-safe; a client is
            client = self._clients.get(region)
            if client is None:
                import boto3
                from botocore.config import Config

                config = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2})
                session = boto3.session.Session()
                client = session.client("secretsmanager", region_name=region, config=config)
                self._clients[region] = client
            return client

    def read(self, reference: str, stage: str) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        secret_id, field = split_reference(reference)
        try:
            answer = self._client(secret_id).get_secret_value(
                SecretId=secret_id, VersionStage=stage
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            if stage != CURRENT and code == "ResourceNotFoundException":
                return None  # no rotation under way
            raise SecretError(f"{reference}: Secrets Manager refused ({code})") from None
        except BotoCoreError as exc:
            what = type(exc).__name__
            raise SecretError(f"{reference}: Secrets Manager unreachable ({what})") from None
        text = answer.get("SecretString")
        if not isinstance(text, str):
            raise SecretError(f"{reference}: the secret has no string value (binary secret)")
        return pick_field(reference, text, field)


SOURCES: dict[str, SecretSource] = {"aws-sm": AwsSecretsManager()}


def as_secret(value: str | Secret, setting: str, wants_pending: bool = False) -> Secret:
    """A setting's value as a Secret: a reference (`aws-sm://...`) becomes a SecretRef, read
    at start-up; anything else is the literal. Raises ConfigError for a malformed reference."""
    if isinstance(value, Secret):
        return value
    match = _SCHEME.match(value)
    if match is None or (match.group(1) not in SOURCES and match.group(1) not in _PLANNED):
        return Secret(value)
    scheme = match.group(1)
    if scheme not in SOURCES:
        raise ConfigError(f"{setting}: {scheme}:// references are not supported yet")
    secret_id, field = split_reference(value)
    if not secret_id or field == "" or any(c.isspace() for c in value):
        raise ConfigError(f"{setting}: expected {scheme}://<secret id or ARN>[#json-field]")
    return SecretRef(value, setting, SOURCES[scheme], wants_pending)
