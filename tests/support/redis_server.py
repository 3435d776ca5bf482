"""A private redis-server per test session on a free port (REDIS_URL overrides).

Optional: a password (`requirepass`), TLS only (`tls=True`: a CA and a server certificate for
127.0.0.1 are generated, the URL carries the CA), a unix socket beside the port, and a start
that stays LOADING until `finish_loading()` (a saved dataset replayed with Redis's own
`key-load-delay`), so the Redis-down policy can be tested against the real server's replies.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import redis

from tests.support.net import free_port, wait_port
from tests.support.tls_certs import issue_pki

LOADING_KEYS = 30_000  # at 1 ms a key, LOADING lasts until finish_loading() (or 30 s)


class RedisServer:
    def __init__(self, workdir: Path, requirepass: str | None = None, tls: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.requirepass = requirepass
        self.tls = tls
        # A short path: unix socket paths are limited to about 100 bytes.
        self.socket = Path(tempfile.mkdtemp(prefix="rs")) / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_with(self.requirepass)

    def url_with(self, password: str | None) -> str:
        """The URL the gateway would be configured with, carrying `password`."""
        auth = f":{quote(password, safe='')}@" if password is not None else ""
        if not self.tls:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        ca = quote(str(self.workdir / "tls" / "ca.pem"))
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"

    @property
    def unix_url(self) -> str:
        auth = f":{quote(self.requirepass, safe='')}@" if self.requirepass is not None else ""
        return f"unix://{auth}{self.socket}?db=0"

    def _args(self, binary: str) -> list[str]:
        args = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.workdir), "--unixsocket", str(self.socket)]
        args += ["--unixsocketperm", "700", "--enable-debug-command", "local"]
        if self.requirepass is not None:
            args += ["--requirepass", self.requirepass]
        if not self.tls:
            return [*args, "--port", str(self.port)]
        pki = issue_pki(self.workdir / "tls")
        return [
            *args,
            *("--port", "0", "--tls-port", str(self.port)),
            *("--tls-cert-file", str(pki.cert), "--tls-key-file", str(pki.key)),
            *("--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "no"),
        ]

    def start(self, loading: bool = False) -> RedisServer:
        """`loading`: replay a saved dataset slowly, so the server answers LOADING until
        finish_loading(); `save_dataset()` must have run before."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; .ci/run installs it")
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = self._args(binary)
        if loading:
            args += ["--key-load-delay", "1000", "--loading-process-events-interval-bytes", "1024"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def admin(self) -> redis.Redis:
        """A direct client on the unix socket (works whatever the URL's password or TLS)."""
        return redis.Redis(unix_socket_path=str(self.socket), password=self.requirepass)

    def save_dataset(self, keys: int = LOADING_KEYS) -> None:
        """Writes a dataset big enough that a slow replay keeps the server LOADING."""
        with self.admin() as client:
            client.execute_command("DEBUG", "POPULATE", keys, "load")
            client.execute_command("SAVE")

    def finish_loading(self) -> None:
        with self.admin() as client:
            client.config_set("key-load-delay", 0)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def set_password(self, password: str) -> None:
        """CONFIG SET requirepass, live: new connections must use `password` from now on."""
        with self.admin() as client:
            client.config_set("requirepass", password)
        self.requirepass = password
