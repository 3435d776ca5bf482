"""TLS from the edge to its core pools (https:// URLs in edge.pools).

Edge -> core traffic carries tenant identity and prompts: it must run over TLS or a private
network. The context is built once at start-up (file reads are not for the request path).
"""

from __future__ import annotations

import ssl

from shared.config_edge import EdgeConfig
from shared.configparse import ConfigError


def core_tls_context(edge: EdgeConfig) -> ssl.SSLContext | None:
    """One TLS context for every https:// core, built at start-up: the configured CA bundle
    (else the system's) and, for mTLS, the edge's client certificate. None when no option is
    set, so https pools verify against the system CAs with aiohttp's default context."""
    if edge.core_ca_file is None and edge.core_client_cert is None:
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(edge.core_ca_file) if edge.core_ca_file else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"edge.core_ca_file: cannot load the CA bundle ({exc})") from None
    if edge.core_client_cert is not None and edge.core_client_key is not None:
        try:
            context.load_cert_chain(edge.core_client_cert, edge.core_client_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"edge.core_client_cert: cannot load the client certificate and key ({exc})"
            ) from None
    return context
