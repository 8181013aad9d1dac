"""A throwaway PostgreSQL server for the tests and the scale bench: Debian's binaries, loopback only.

The test command installs the ``postgresql`` package where it is missing; nothing here skips.
PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path


def _bindir() -> Path:
    """Where initdb and pg_ctl live: Debian keeps them per version under /usr/lib/postgresql."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (scripts/test.sh does)")
    return Path(initdb).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], *, check: bool = True) -> None:
    """Run one of PostgreSQL's own programs (fixed arguments, no outside input), its output kept for errors."""
    subprocess.run(command, check=check, capture_output=True, timeout=120)  # noqa: S603


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a cluster on a free loopback port; yield the admin URL (``postgresql://…/postgres``)."""
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    bindir, port = _bindir(), _free_port()
    try:
        _run(
            _as_owner(
                [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale"]
            )
        )
        # fsync off: a test cluster need not survive a power cut, and fsyncs are most of its time.
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
        _run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]))
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if data.exists():
            _run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), check=False)
        shutil.rmtree(root, ignore_errors=True)


def create_database(admin_url: str) -> str:
    """A fresh, empty database on the server; its SQLAlchemy URL (asyncpg driver)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    host_port = admin_url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    psql = shutil.which("psql") or str(_bindir() / "psql")
    _run(
        [
            psql,
            "-h",
            host,
            "-p",
            port,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            f"CREATE DATABASE {name}",
        ]
    )
    return f"postgresql+asyncpg://postgres@{host_port}/{name}"
