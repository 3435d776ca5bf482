"""Provider options for kind `gemini` (Google AI Studio or Vertex AI), validated at start-up.

Options (all optional) under `providers.<name>.options`:
  vertex            {project, location[, token_file]}: call Vertex AI instead of AI Studio.
                    Vertex wants an OAuth access token, sent as `Authorization: Bearer`. There
                    is no google-auth dependency: the token comes from the provider's api_key
                    (e.g. `${VERTEX_TOKEN}`, fine for short runs) or, for long-lived processes,
                    from `token_file`, a file a refresher keeps current (a sidecar running
                    `gcloud auth print-access-token`, a workload-identity agent ...). It is
                    re-read when it changes; tokens expire after an hour.
  api_version       URL version segment; default v1beta (AI Studio) or v1 (Vertex).
  safety_settings   list of {category, threshold} sent as safetySettings on every request.
  include_thoughts  true: ask for thought summaries (reasoning_content) even without
                    reasoning_effort.

AI Studio keys go in the `x-goog-api-key` header, never in the URL (URLs end up in logs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from core.providers.adapters.options import check_keys
from shared.config import ProviderConfig
from shared.configparse import ConfigError, keys_of, read_from

AI_STUDIO_URL = "https://generativelanguage.googleapis.com"
_VERSION = re.compile(r"^v\d+(?:(?:alpha|beta)\d*)?$")
_TRAILING_VERSION = re.compile(r"/(v\d+(?:(?:alpha|beta)\d*)?)$")
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9.:-]*$")
_LOCATION = re.compile(r"^[a-z0-9-]+$")


@dataclass(frozen=True, slots=True)
class Vertex:
    """`options.vertex`: call Vertex AI instead of AI Studio."""

    project: str
    location: str
    token_file: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """What requests need, resolved once; the options each field is read from are the keys
    `options` accepts (keys_of)."""

    # Everything before "{model}:generateContent"; models are appended per request.
    models_url: str = field(metadata=read_from("api_version"))
    vertex: bool
    # Static per provider: content type plus configured headers.
    headers: dict[str, str] = field(metadata=read_from())
    safety_settings: tuple[dict[str, Any], ...]
    include_thoughts: bool
    token_file: str | None = field(metadata=read_from())  # from options.vertex


_KNOWN = keys_of(Settings)
_VERTEX_KNOWN = keys_of(Vertex)


def vertex_host(location: str) -> str:
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def parse_settings(provider: ProviderConfig) -> Settings:
    path = f"providers.{provider.name}.options"
    options: dict[str, Any] = provider.options
    check_keys(options, _KNOWN, path)
    vertex = options.get("vertex")
    version = options.get("api_version")
    if version is not None and (not isinstance(version, str) or not _VERSION.match(version)):
        raise ConfigError(f"{path}.api_version: expected a version such as v1 or v1beta")
    on_vertex = None if vertex is None else _vertex(vertex, f"{path}.vertex")
    if on_vertex is None:
        models_url = _with_version(provider.base_url or AI_STUDIO_URL, version or "v1beta")
        models_url += "/models/"
    else:
        project, location = on_vertex.project, on_vertex.location
        base = _with_version(provider.base_url or vertex_host(location), version or "v1")
        models_url = f"{base}/projects/{project}/locations/{location}/publishers/google/models/"
    include = options.get("include_thoughts", False)
    if not isinstance(include, bool):
        raise ConfigError(f"{path}.include_thoughts: expected true or false")
    return Settings(
        models_url=models_url,
        vertex=vertex is not None,
        headers={"content-type": "application/json", **provider.headers},
        safety_settings=_safety(options.get("safety_settings"), f"{path}.safety_settings"),
        include_thoughts=include,
        token_file=on_vertex.token_file if on_vertex else None,
    )


def _with_version(base: str, version: str) -> str:
    """Tolerate a base URL that already names the version, as many example configs do."""
    base = base.rstrip("/")
    return base if _TRAILING_VERSION.search(base) else f"{base}/{version}"


def _vertex(raw: Any, path: str) -> Vertex:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with project and location")
    check_keys(raw, _VERTEX_KNOWN, path)
    project = raw.get("project")
    if not isinstance(project, str) or not _PROJECT.match(project):
        raise ConfigError(f"{path}.project: expected a Google Cloud project id")
    location = raw.get("location")
    if not isinstance(location, str) or not _LOCATION.match(location):
        raise ConfigError(f"{path}.location: expected a region such as us-central1, or global")
    token_file = raw.get("token_file")
    if token_file is not None and (not isinstance(token_file, str) or not token_file.strip()):
        raise ConfigError(f"{path}.token_file: expected a file path")
    return Vertex(project, location, token_file)


def _safety(raw: Any, path: str) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: expected a list of {{category, threshold}} mappings")
    out = []
    for i, entry in enumerate(raw):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("category"), str)
            or not isinstance(entry.get("threshold"), str)
        ):
            raise ConfigError(f"{path}[{i}]: expected a mapping with category and threshold")
        out.append(dict(entry))
    return tuple(out)
