"""A private PostgreSQL per test session: `initdb` and `postgres` on a free loopback port in a
temp dir, trust auth, no unix socket (POSTGRES_URL overrides, e.g. a CI service).

Binaries: on PATH, else `pg_config --bindir`, else /usr/lib/postgresql/<newest>/bin (.ci/run
installs the `postgresql` package when `initdb` is missing). initdb and the server refuse to
run as root, so as root both run as the `postgres` user (or `nobody`) in a temp dir it owns.
The server runs in its own process group: `kill9()` kills it whole, as a crash would, and
`start()` brings it back on the same port and data (WAL recovery).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from tests.support.net import free_port, wait_port

_numbers = itertools.count()


def bindir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    except (OSError, subprocess.CalledProcessError):
        pass
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if versions:
        return versions[-1].parent
    raise RuntimeError("PostgreSQL server binaries not found; .ci/run installs them")


def _run_as() -> str | None:
    """The unprivileged user to run as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root with neither a postgres nor a nobody user")


class PostgresServer:
    def __init__(self, fsync: bool = False) -> None:
        self.port = free_port()
        self.user = _run_as()
        # Outside pytest's 0700 tmp tree, so the unprivileged user can reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="interlock-pg-"))
        self.data = self.dir / "data"
        self.fsync = fsync
        self.process: subprocess.Popen[bytes] | None = None
        self._bin = bindir()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _init(self) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [str(self._bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"],
            user=self.user,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
        )

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self._init()
        args = [str(self._bin / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        args += ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
        args += ["-c", f"fsync={'on' if self.fsync else 'off'}", "-c", "max_connections=200"]
        log = (self.dir / "server.log").open("ab")
        self.process = subprocess.Popen(
            args, user=self.user, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        wait_port(self.port, timeout=30)
        self._wait_accepting()
        return self

    def _wait_accepting(self) -> None:
        """The port opens before recovery ends: wait until a connection is accepted."""

        async def probe() -> None:
            con = await asyncpg.connect(self.url, timeout=2)
            await con.close()

        deadline = time.monotonic() + 30
        while True:
            try:
                asyncio.run(probe())
                return
            except (OSError, asyncpg.PostgresError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def database(self) -> str:
        """The URL of a new empty database (a test's own schema, nothing shared)."""
        name = f"t{os.getpid()}_{next(_numbers)}"

        async def create() -> None:
            con = await asyncpg.connect(self.url, timeout=5)
            try:
                await con.execute(f"CREATE DATABASE {name}")
            finally:
                await con.close()

        asyncio.run(create())
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def kill9(self) -> None:
        """SIGKILL to the whole server (postmaster and backends), as a crash would."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()
            self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
