"""A bounded mixed load on a running server: jobs, cancels, boards, uploads, clients that leave, reads.

Each client picks actions at random (seeded) until the run's time or its action count is
spent; every request has a client timeout, so the run ends by itself. What the server
answered is tallied by route and status class; the checks after the run are in
:mod:`cofounder_agent.bench.load_checks`.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import re
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_ID = re.compile(r"[0-9a-f]{32}")


@dataclass
class LoadConfig:
    """What the clients do and for how long."""

    clients: int = 16
    duration_s: float = 180.0
    small_size: int = 64
    small_steps: int = 8  # ensemble needs steps x (1 - switch_at) >= 1: 8 clears the default 0.8
    large_size: int = 512
    large_steps: int = 10
    sync_leave_s: float = 1.0  # synchronous clients give up after about this long
    request_timeout_s: float = 30.0
    think_s: float = 0.05  # pause between a client's actions
    max_actions: int = 5000  # per client: the count bound next to the time bound
    grace_s: float = 300.0  # after the clients stop: how long jobs get to end
    seed: int = 0
    api_key: str | None = None
    # Every prompt starts with the tag: the run's jobs (the synchronous ones too) are found by it.
    tag: str = field(default_factory=lambda: f"mixed-load {uuid.uuid4().hex[:8]}")


def check_loopback(url: str) -> str:
    """Return ``url`` without a trailing slash; refuse any host but loopback."""
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"--url must point at loopback (127.0.0.1, localhost or ::1), not {host!r}")
    return url.rstrip("/")


def route_of(method: str, path: str) -> str:
    """``GET /v1/jobs/{id}``: ids folded, query keys kept (they make different reads)."""
    parts = urlsplit(path)
    keys = sorted({pair.split("=", 1)[0] for pair in parts.query.split("&") if pair})
    return f"{method} {_ID.sub('{id}', parts.path)}" + (f"?{'&'.join(keys)}" if keys else "")


@dataclass
class Tally:
    """Outcomes by route: 2xx..5xx, ``left`` (a client that went away on purpose), ``timeout``, ``error``."""

    routes: dict[str, Counter[str]] = field(default_factory=dict)
    codes: Counter[str] = field(default_factory=Counter)  # 4xx answers by route and code
    samples: dict[str, str] = field(default_factory=dict)  # the first body of each
    server_errors: list[str] = field(default_factory=list)  # the first few 5xx answers
    script_errors: list[str] = field(default_factory=list)  # bugs of this script, so they are seen

    def record(self, route: str, outcome: str) -> None:
        self.routes.setdefault(route, Counter())[outcome] += 1


@dataclass
class State:
    """What the clients share: their jobs, the boards they believe exist, every image id seen."""

    jobs: list[str] = field(default_factory=list)
    boards: list[str] = field(default_factory=list)
    images: set[str] = field(default_factory=set)
    counter: int = 0

    def next(self) -> int:
        self.counter += 1
        return self.counter


def tiny_png() -> bytes:
    """A 64x64 PNG to upload."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


class Client:
    """One simulated user: a seeded chooser of actions over a shared HTTP connection pool."""

    def __init__(self, http: httpx.AsyncClient, config: LoadConfig, tally: Tally, state: State, index: int) -> None:
        self.http, self.config, self.tally, self.state = http, config, tally, state
        self.rng = random.Random(config.seed * 1000 + index)
        self.png = tiny_png()

    async def call(
        self, method: str, path: str, *, leave_after: float | None = None, **kwargs: Any
    ) -> httpx.Response | None:
        """Send one request and tally its outcome; None when no answer came."""
        route = route_of(method, path)
        timeout = leave_after if leave_after is not None else self.config.request_timeout_s
        try:
            response = await self.http.request(method, path, timeout=timeout, **kwargs)
        except httpx.TimeoutException:
            self.tally.record(route, "left" if leave_after is not None else "timeout")
            return None
        except httpx.TransportError as exc:
            self.tally.record(route, "error")
            self.tally.script_errors.append(f"{route}: {type(exc).__name__}: {exc}")
            return None
        self.tally.record(route, f"{response.status_code // 100}xx")
        if 400 <= response.status_code < 500:
            key = f"{route} {response.status_code}"
            self.tally.codes[key] += 1
            self.tally.samples.setdefault(key, response.text[:300])
            if response.status_code == 422 and '"field":"board_id"' not in response.text:
                # Only a board deleted meanwhile makes this script's requests invalid; else it is our bug.
                self.tally.script_errors.append(f"refused: {route}: {response.text[:300]}")
        if response.status_code >= 500 and len(self.tally.server_errors) < 20:
            self.tally.server_errors.append(f"{route} {response.status_code}: {response.text[:300]}")
        return response

    async def run(self, deadline: float) -> None:
        """Act until the deadline or the action bound, whichever comes first."""
        actions = [
            (self.submit_small, 4),
            (self.submit_large, 1),
            (self.cancel, 1),
            (self.upload, 3),
            (self.create_board, 1),
            (self.delete_board, 1),
            (self.leave_sync, 1),
            (self.read, 5),
        ]
        choices, weights = zip(*actions, strict=True)
        for _ in range(self.config.max_actions):
            if time.monotonic() >= deadline:
                return
            action = self.rng.choices(choices, weights)[0]
            try:
                await action()
            except Exception as exc:  # a bug here must not end the run unseen: it is reported
                self.tally.script_errors.append(f"{action.__name__}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(self.config.think_s)

    def prompt(self, kind: str) -> str:
        return f"{self.config.tag} {kind} {self.state.next()}"

    async def submit(self, size: int, steps: int, kind: str) -> None:
        body: dict[str, Any] = {
            "prompt": self.prompt(kind),
            "width": size,
            "height": size,
            "steps": steps,
            "seed": self.rng.randrange(1_000_000),
        }
        if self.state.boards and self.rng.random() < 0.3:  # some results land in boards being deleted
            body["board_id"] = self.rng.choice(self.state.boards)
        response = await self.call("POST", "/v1/jobs", json=body)
        if response is not None and response.status_code in (200, 202):
            self.state.jobs.append(response.json()["id"])

    async def submit_small(self) -> None:
        await self.submit(self.config.small_size, self.config.small_steps, "small")

    async def submit_large(self) -> None:
        await self.submit(self.config.large_size, self.config.large_steps, "large")

    async def cancel(self) -> None:
        """Cancel one of the run's queued or running jobs (else a recent one, which may have ended)."""
        status = self.rng.choice(["queued", "running"])
        listed = await self.call("GET", f"/v1/jobs?status={status}&limit=50")
        mine = []
        if listed is not None and listed.status_code == 200:
            # Only jobs this run submitted: cancelling a synchronous client's job makes its answer a 503.
            submitted = set(self.state.jobs)
            mine = [j["id"] for j in listed.json()["data"] if j["id"] in submitted]
        if not mine:
            mine = self.state.jobs[-5:]
        if mine:
            await self.call("DELETE", f"/v1/jobs/{self.rng.choice(mine)}")

    async def upload(self) -> None:
        data = {"board_id": self.rng.choice(self.state.boards)} if self.state.boards else {}
        files = {"file": ("load.png", self.png, "image/png")}
        response = await self.call("POST", "/v1/images", data=data, files=files)
        if response is not None and response.status_code == 201:
            self.state.images.add(response.json()["id"])

    async def create_board(self) -> None:
        response = await self.call("POST", "/v1/boards", json={"name": self.prompt("board")})
        if response is not None and response.status_code == 201:
            self.state.boards.append(response.json()["id"])

    async def delete_board(self) -> None:
        """Delete a board others may be writing into (keep one at least, so uploads keep targeting boards)."""
        if len(self.state.boards) < 2:
            await self.create_board()
            return
        board = self.state.boards.pop(self.rng.randrange(len(self.state.boards)))
        suffix = "?delete_images=true" if self.rng.random() < 0.5 else ""
        await self.call("DELETE", f"/v1/boards/{board}{suffix}")

    async def leave_sync(self) -> None:
        """A synchronous generation whose client gives up mid-request."""
        leave_after = self.config.sync_leave_s * self.rng.uniform(0.5, 1.5)
        size = self.config.small_size
        if self.rng.random() < 0.5:
            body: dict[str, Any] = {
                "prompt": self.prompt("sync-media"),
                "use_generation": True,
                "use_pexels": False,
                "width": size,
                "height": size,
                "num_inference_steps": 20,
            }
            response = await self.call("POST", "/api/media/generate-image", json=body, leave_after=leave_after)
            if response is not None and response.status_code == 200:
                self.state.images.add(response.json()["image_id"])
        else:
            body = {"prompt": self.prompt("sync-openai"), "size": f"{size}x{size}"}
            await self.call("POST", "/v1/images/generations", json=body, leave_after=leave_after)

    async def read(self) -> None:
        """One read: the queued list, a job's status, or an image, its thumbnail or its metadata."""
        images = sorted(self.state.images)
        pick = self.rng.random()
        if pick < 0.25 or not (self.state.jobs or images):
            await self.call("GET", "/v1/jobs?status=queued&limit=20")
        elif pick < 0.55 and self.state.jobs:
            response = await self.call("GET", f"/v1/jobs/{self.rng.choice(self.state.jobs)}")
            if response is not None and response.status_code == 200:
                self.state.images.update(response.json()["image_ids"])
        elif images:
            image = self.rng.choice(images)
            path = self.rng.choice([f"/v1/images/{image}", f"/v1/images/{image}?variant=thumbnail"])
            await self.call("GET", self.rng.choice([path, f"/v1/images/{image}/metadata"]))


def http_client(url: str, config: LoadConfig) -> httpx.AsyncClient:
    """The clients' shared connection pool (enough connections for every client at once)."""
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    limits = httpx.Limits(max_connections=config.clients * 2 + 4)
    return httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=config.request_timeout_s)


async def drive(url: str, config: LoadConfig) -> tuple[Tally, State, float]:
    """Run the clients; return the tally, what they saw and the seconds they ran."""
    tally, state = Tally(), State()
    async with http_client(url, config) as http:
        for _ in range(2):  # boards to write into from the start
            await Client(http, config, tally, state, -1).create_board()
        start = time.monotonic()
        deadline = start + config.duration_s
        clients = [Client(http, config, tally, state, i).run(deadline) for i in range(config.clients)]
        # Each request ends within its timeout, so this bound is never reached but states the promise.
        await asyncio.wait_for(asyncio.gather(*clients), config.duration_s + config.request_timeout_s + 30)
        return tally, state, time.monotonic() - start


@contextmanager
def spawn_server(data_dir: Path, settings: dict[str, str], ready_s: float = 180.0) -> Iterator[str]:
    """Run ``python -m cofounder_agent serve`` on a free loopback port (tiny model); yield its URL.

    The server's log goes to ``data_dir/server.log``; the process is stopped on leaving.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The machine's own IMAGE_*/PEXELS_* settings stay out: the run is on the tiny model, offline.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_", "PEXELS_"))}
    env |= {"IMAGE_MODEL": "tiny", "IMAGE_DATA_DIR": str(data_dir / "data"), "IMAGE_LOG_FILE": ""}
    env |= {"IMAGE_LOG_LEVEL": "WARNING", **settings}
    command = [sys.executable, "-m", "cofounder_agent", "serve", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with (data_dir / "server.log").open("wb") as log:
        # Our own CLI under this interpreter: a fixed command, no user input.
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            deadline = time.monotonic() + ready_s
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the server did not become ready; see {data_dir / 'server.log'}")
                time.sleep(0.2)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
