"""Shared fixtures: the exported tiny model, reference pipelines and real servers on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from cofounder_agent.config import Settings
from cofounder_agent.jobs.bus import LocalEventBus
from cofounder_agent.jobs.ending import JobEnding
from cofounder_agent.jobs.store import Store, sqlite_url
from cofounder_agent.jobs.worker import Worker, build_worker
from cofounder_agent.main import GRACEFUL_SHUTDOWN_S, KEEP_ALIVE_S, create_app
from cofounder_agent.services.image_service import ImageService
from cofounder_agent.storage import ImageStore
from webhook_receiver import Receiver

# The outer limit of any wait on work (model loads, jobs, servers starting): generous, since a
# loaded machine is only slower. Waits end on states; this only catches a hang.
LIMIT_S = 600


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny model written as standard diffusers folders, as `export-tiny` does."""
    from cofounder_agent.engine.tiny import export_tiny

    return export_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def reference(tiny_dirs: tuple[Path, Path]) -> Any:
    """The documented diffusers SDXL recipe, loaded independently of the service's code."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    base = StableDiffusionXLPipeline.from_pretrained(tiny_dirs[0], use_safetensors=True)
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        tiny_dirs[1], text_encoder_2=base.text_encoder_2, vae=base.vae, use_safetensors=True
    )
    for pipe in (base, refiner):
        pipe.set_progress_bar_config(disable=True)
    return base, refiner


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    """An empty job store in its own SQLite file."""
    db = Store(sqlite_url(tmp_path))
    await db.init()
    return db


@asynccontextmanager
async def in_process_worker(settings: Settings) -> AsyncIterator[tuple[Store, Worker]]:
    """A store and a (not yet started) worker on the tiny model, wired as the app does; closed after."""
    db = Store(sqlite_url(settings.image_data_dir))
    await db.init()
    images = ImageService(settings)
    images.start()
    files, bus = ImageStore(settings.image_data_dir), LocalEventBus()
    worker = build_worker(db, bus, images, files, JobEnding(db, bus, files), settings)
    try:
        yield db, worker
    finally:
        await worker.stop()
        await images.close()
        await db.close()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings isolated from the environment and .env of the machine running the tests."""
    values: dict[str, Any] = {
        "image_model": "tiny",
        "image_refiner_model": "auto",
        "image_data_dir": tmp_path / "data",
        "image_log_file": None,
        "pexels_api_key": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextmanager
def running_server(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None, *, embedded_worker: bool = True
) -> Iterator[str]:
    """Serve the real app with uvicorn on a free loopback port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(settings, http_transport=transport, embedded_worker=embedded_worker)
    config = uvicorn.Config(
        app, log_level="warning", timeout_keep_alive=KEEP_ALIVE_S, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + LIMIT_S
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def wait_ready(base_url: str, timeout: float = LIMIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{base_url}/readyz").status_code == 200:
            return
        time.sleep(0.1)
    raise TimeoutError("models did not load")


TERMINAL = ("succeeded", "failed", "cancelled")


def wait_job(client: httpx.Client, job_id: str, timeout: float = LIMIT_S) -> dict[str, Any]:
    """Poll a job until it ends; fail only when the outer limit passes (no machine speed assumed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.05)
    raise TimeoutError(job_id)


@pytest.fixture(scope="session")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ready server on the built-in tiny model, no Pexels key."""
    with running_server(make_settings(tmp_path_factory.mktemp("srv"))) as url:
        wait_ready(url)
        yield url


def pixels(png: bytes | Path) -> np.ndarray[Any, Any]:
    """Decode an image to an int array for pixel comparisons."""
    import io

    source = io.BytesIO(png) if isinstance(png, bytes) else png
    with Image.open(source) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def max_diff(a: Any, b: Any) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def fetch_image(client: httpx.Client, response: httpx.Response) -> np.ndarray[Any, Any]:
    assert response.status_code == 200, response.text
    got = client.get(response.json()["image_url"])
    assert got.status_code == 200
    assert got.headers["content-type"] == "image/png"
    return pixels(got.content)


GenerateFn = Callable[..., httpx.Response]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback that fails its first request with a 500."""
    server = Receiver(failures=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """One real PostgreSQL server for the whole session (tests/postgres.py)."""
    from postgres import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> str:
    """A fresh database on the session's PostgreSQL server, as a SQLAlchemy asyncpg URL."""
    from postgres import create_database

    return create_database(postgres_admin_url)
