"""A distributed deployment on loopback, as processes: API replicas, workers, or an embedded server.

Used by ``bench --suite scale`` and by the scale scenario test (tests/scale_cluster.py). Each
process is ``python -m cofounder_agent …`` from the checkout this module was imported from,
on the tiny model and the CPU, with its own log; all of them share one data dir (the blob store
every process mounts) and, for replicas and workers, one PostgreSQL database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

import cofounder_agent

HEALTH = "/api/media/health"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    """One started process: its role (``api``, ``worker`` or ``serve``), its output file and, for a server, its URL."""

    name: str
    role: str
    popen: subprocess.Popen[bytes]
    output: Path
    url: str | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


class ClusterError(RuntimeError):
    """A process did not start, or died, or a wait ran past its limit; the message carries the logs."""


class Cluster:
    """Start, kill and watch the processes of one deployment; everything is stopped on close."""

    def __init__(
        self, root: Path, database_url: str | None, settings: dict[str, str] | None = None, limit_s: float = 600.0
    ) -> None:
        self.root, self.database_url, self.limit_s = root, database_url, limit_s
        root.mkdir(parents=True, exist_ok=True)
        self.data_dir = root / "data"
        self.settings = {
            "IMAGE_MODEL": "tiny",
            "IMAGE_DEVICE": "cpu",
            "IMAGE_DATA_DIR": str(self.data_dir),
            "IMAGE_LOG_LEVEL": "INFO",
            # Short leases: a killed worker's job is reaped within seconds, not a minute.
            "IMAGE_LEASE_S": "6",
            **(settings or {}),
        }
        self.processes: dict[str, Process] = {}
        self.killed: set[str] = set()  # stopped on purpose: their exit fails no wait

    # --- starting -------------------------------------------------------------------------

    def _env(self, name: str, role: str, settings: dict[str, str]) -> dict[str, str]:
        # The machine's own IMAGE_*/PEXELS_* settings stay out: the runs are on the tiny model, offline.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_", "PEXELS_"))}
        src = str(Path(cofounder_agent.__file__).resolve().parents[1])  # this checkout's sources first
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
        env |= self.settings
        env["IMAGE_LOG_FILE"] = str(self.root / f"{name}.log")  # one log per process: they never interleave
        if self.database_url is not None and role != "serve":
            env["IMAGE_DATABASE_URL"] = self.database_url
        return env | settings

    def _spawn(self, name: str, role: str, args: list[str], settings: dict[str, str], url: str | None) -> Process:
        if name in self.processes and self.processes[name].alive():
            raise ClusterError(f"{name} is already running")
        output = self.root / f"{name}.out"
        with output.open("ab") as sink:
            # Our own CLI under this interpreter: fixed arguments, no outside input.
            popen = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "cofounder_agent", *args],
                env=self._env(name, role, settings),
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        process = Process(name, role, popen, output, url)
        self.processes[name] = process
        self.killed.discard(name)
        return process

    def start_api(self, name: str, **settings: str) -> Process:
        """An API replica (``serve --no-worker``) on a free loopback port; not waited for."""
        port = free_port()
        args = ["serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)]
        return self._spawn(name, "api", args, settings, f"http://127.0.0.1:{port}")

    def start_serve(self, name: str, **settings: str) -> Process:
        """The embedded default (``serve``: API and worker in one process, SQLite in its data dir)."""
        port = free_port()
        args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
        return self._spawn(name, "serve", args, settings, f"http://127.0.0.1:{port}")

    def start_worker(self, name: str, **settings: str) -> Process:
        """A worker process (``worker``): loads the model, claims jobs; not waited for."""
        return self._spawn(name, "worker", ["worker"], settings, None)

    # --- watching -------------------------------------------------------------------------

    def until(self, check: Callable[[], bool], what: str, *, watch: list[str] | None = None) -> None:
        """Poll ``check`` until it holds; fail when a watched process (default: every one not killed
        on purpose) exits or the limit passes. No deadline assumes a machine's speed: the limit
        only catches a hang.
        """
        names = watch if watch is not None else [n for n in self.processes if n not in self.killed]
        watched = [self.processes[n] for n in names]
        deadline = time.monotonic() + self.limit_s
        while not check():
            dead = [p.name for p in watched if not p.alive()]
            if dead:
                raise ClusterError(f"{what}: {', '.join(dead)} exited\n{self.logs()}")
            if time.monotonic() > deadline:
                raise ClusterError(f"{what} within {self.limit_s:.0f} s\n{self.logs()}")
            time.sleep(0.1)

    def wait_ready(self, *names: str) -> None:
        """Wait for each server's ``/readyz`` (a replica is ready once some worker is)."""
        for name in names:
            probe = f"{self.processes[name].url}/readyz"
            self.until(lambda: _status(probe) == 200, f"{name} did not become ready")  # noqa: B023

    def workers(self, api: str) -> list[dict[str, Any]]:
        """The live workers an API replica lists in its health answer."""
        try:
            answer = httpx.get(f"{self.processes[api].url}{HEALTH}", timeout=10)
        except httpx.TransportError:
            return []
        listed = answer.json().get("workers") if answer.status_code == 200 else None
        return [w for w in listed if isinstance(w, dict)] if isinstance(listed, list) else []

    def worker_ids(self, api: str) -> dict[str, str]:
        """Process name -> worker id (the name in a job's ``attempt_workers``), matched by pid."""
        by_pid = {int(w["pid"]): str(w["id"]) for w in self.workers(api) if "pid" in w and "id" in w}
        return {p.name: by_pid[p.pid] for p in self.processes.values() if p.role == "worker" and p.pid in by_pid}

    def wait_workers(self, api: str, *names: str) -> dict[str, str]:
        """Wait until the named workers are listed and ready; return their ids."""

        def listed() -> bool:
            ready = {int(w["pid"]) for w in self.workers(api) if w.get("ready") and "pid" in w}
            return all(self.processes[n].pid in ready for n in names)

        self.until(listed, f"workers {', '.join(names)} did not become ready", watch=[api, *names])
        return self.worker_ids(api)

    def logs(self, lines: int = 40) -> str:
        """The last lines of every process's output and log file, for a failure's message."""
        parts = [f"(all logs under {self.root})"]
        for process in self.processes.values():
            state = "running" if process.alive() else f"exited {process.popen.returncode}"
            for path in (process.output, self.root / f"{process.name}.log"):
                if path.exists():
                    tail = path.read_text(errors="replace").splitlines()[-lines:]
                    parts.append(f"--- {path.name} ({state}) ---\n" + "\n".join(tail))
        return "\n".join(parts)

    # --- stopping -------------------------------------------------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig``; for SIGKILL and SIGTERM, wait for the process to end."""
        process = self.processes[name]
        process.popen.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.killed.add(name)
            try:
                process.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()

    def stop(self, *names: str, grace_s: float = 15.0) -> None:
        """SIGTERM them all (SIGCONT first, in case one was paused), then SIGKILL what outlives the grace."""
        running = [self.processes[n].popen for n in names if self.processes[n].alive()]
        for popen in running:
            popen.send_signal(signal.SIGCONT)
            popen.terminate()
        deadline = time.monotonic() + grace_s
        for popen in running:
            try:
                popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()

    def close(self) -> None:
        self.stop(*self.processes)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=10).status_code
    except httpx.TransportError:
        return 0
