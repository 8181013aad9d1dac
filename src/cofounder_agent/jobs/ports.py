"""The job system's ports: the only way the API side and the worker side talk to each other.

Each is a small interface with an in-process adapter (``Store`` on SQLite, ``LocalEventBus``,
``ImageStore``) and, for the queue and the bus, a PostgreSQL one (``Store`` on PostgreSQL,
``PgEventBus``), held to one contract suite (tests/test_queue_contract.py). The engine port
lets the job logic run against a fake engine in tests.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from cofounder_agent.contract.params import GenerationParams, GenerationResult

if TYPE_CHECKING:
    from PIL.Image import Image

    from cofounder_agent.contract.checks import StepCallback
    from cofounder_agent.contract.control import JobControl
    from cofounder_agent.contract.stage import StageOutput, StageSpec
    from cofounder_agent.jobs.bus import Subscription
    from cofounder_agent.jobs.events import JobEvent, Progress
    from cofounder_agent.jobs.tables import JobRow, WorkerRow
    from cofounder_agent.services.image_service import EngineStatus
    from cofounder_agent.storage import StoredImage


class JobQueue(Protocol):
    """Jobs waiting, running and ended: the database is their only source of truth."""

    async def add_job(
        self,
        recipe: dict[str, Any],
        *,
        priority: int = 0,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        callback_url: str | None = None,
        board_id: str | None = None,
        max_queued: int | None = None,
        batch_key: str | None = None,
    ) -> tuple[JobRow, bool]: ...
    async def get_job(self, job_id: str) -> JobRow | None: ...
    async def claim_next(self, worker_id: str | None = None) -> JobRow | None: ...
    async def claim_companions(self, job: JobRow, limit: int, worker_id: str | None = None) -> list[JobRow]: ...
    async def wait_for_work(self, timeout_s: float) -> None: ...
    async def release(self, job_id: str, worker_id: str | None = None) -> None: ...
    async def finish(
        self,
        job_id: str,
        status: str,
        *,
        error: str | None = None,
        image_ids: list[str] | None = None,
        results: list[dict[str, Any]] | None = None,
        worker_id: str | None = None,
    ) -> JobRow | None: ...
    async def cancel_if_queued(self, job_id: str, reason: str) -> JobRow | None: ...
    async def request_cancel(self, job_id: str) -> bool: ...
    async def cancel_requested(self, job_id: str) -> bool: ...
    async def set_progress(self, job_id: str, worker_id: str | None, progress: Progress) -> None: ...
    async def queue_position(self, job: JobRow) -> int: ...
    async def queued_positions(self, job_ids: Collection[str]) -> dict[str, int]: ...
    # Leases (a claim by a named worker leases the job to it, on the database's clock).
    async def renew(self, worker_id: str, job_ids: Collection[str]) -> set[str]: ...
    async def reap(self) -> tuple[list[str], list[str]]: ...
    # The workers table.
    # ``engine``: the worker's EngineStatus.as_json(), what replicas without an engine report.
    async def register_worker(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        device: str,
        model: str,
        precision: str,
        ready: bool,
        engine: Mapping[str, Any] | None = None,
    ) -> None: ...
    async def heartbeat(
        self,
        worker_id: str,
        *,
        ready: bool,
        job_ids: Collection[str],
        model: str | None = None,
        engine: Mapping[str, Any] | None = None,
    ) -> bool: ...
    async def live_workers(self, within_s: float) -> Sequence[WorkerRow]: ...
    async def deregister(self, worker_id: str) -> None: ...


class EventBus(Protocol):
    """Each job's events, numbered from 1 in publishing order; a stream can resume from a number.

    ``publish`` never blocks (the engine's step callbacks call it): it hands the event over in
    order, and a subscription begun after it returned sees it (replayed or live).
    """

    def publish(self, event: JobEvent) -> None: ...
    async def subscribe(self, job_id: str, after: int | None = None) -> Subscription: ...
    def subscribed(self) -> list[str]: ...
    def ended(self, job_id: str) -> None: ...
    async def close(self) -> None: ...


class BlobStore(Protocol):
    """Image files by id (a local dir today; a shared volume or object storage later)."""

    # The directory's identity: processes that share the store agree on it (docs/scaling.md).
    volume_id: str

    def save_png(self, image: Image, metadata: dict[str, Any]) -> StoredImage: ...
    def open_rgb(self, image_id: str) -> Image | None: ...
    def delete(self, image_id: str) -> bool: ...
    def ids(self, min_age_s: float = 0.0) -> set[str]: ...


class Engine(Protocol):
    """What a worker asks of its device: generations and recipe stages, on a job's control."""

    @property
    def status(self) -> EngineStatus: ...
    async def wait_ready(self) -> bool: ...
    async def generate(
        self,
        params: GenerationParams,
        on_step: StepCallback | None = None,
        keep_base: bool = False,
        control: JobControl | None = None,
    ) -> GenerationResult: ...
    async def run_stage(
        self,
        spec: StageSpec,
        image: Image,
        params: GenerationParams,
        index: int,
        on_step: StepCallback | None = None,
        inputs: Mapping[str, Image | None] | None = None,
        control: JobControl | None = None,
    ) -> StageOutput: ...
