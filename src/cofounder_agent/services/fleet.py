"""The fleet: the workers that run jobs, as the web tier sees them (the local engines, the workers table).

A `serve` process with embedded workers answers for its own engines, as it always has; an API
replica (`serve --no-worker`) has no engine and reports the live workers' rows instead: each
worker writes its engine's status there on every heartbeat. Nothing here loads torch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from cofounder_agent.jobs.ports import JobQueue
from cofounder_agent.jobs.tables import WorkerRow, utcnow
from cofounder_agent.services.image_service import EngineStatus, ImageService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveWorker:
    """A worker that beat within the liveness window, and its engine's last reported status."""

    id: str
    host: str
    pid: int
    device: str
    model: str
    precision: str
    ready: bool
    current_job_ids: list[str]
    heartbeat_age_s: float
    engine: EngineStatus
    image_volume: str | None  # the identity of the image directory it writes into

    @classmethod
    def of(cls, row: WorkerRow) -> LiveWorker:
        # The age on this host's clock (liveness itself is decided on the database's).
        age = max(0.0, (utcnow() - row.heartbeat_at).total_seconds())
        return cls(
            id=row.id,
            host=row.host,
            pid=row.pid,
            device=row.device,
            model=row.model,
            precision=row.precision,
            ready=row.ready,
            current_job_ids=list(row.current_job_ids),
            heartbeat_age_s=round(age, 1),
            engine=EngineStatus.from_json(row.engine or {}),
            image_volume=(row.engine or {}).get("image_volume"),
        )


class Fleet:
    """Readiness and engine status for health, metrics and the featured-image flow."""

    def __init__(
        self, queue: JobQueue, local: Mapping[str, ImageService], within_s: float, image_volume: str | None = None
    ) -> None:
        # local: this process's engines by the id of the worker feeding each (none on a replica).
        # within_s: a worker beats every third of a lease, so one lease without a beat means it
        # missed three; its leases then run out too and its jobs are queued again.
        # image_volume: this process's image directory's identity (None: not compared).
        self.queue, self.local, self.within_s, self.image_volume = queue, dict(local), within_s, image_volume

    def same_image_dir(self, worker: LiveWorker) -> bool | None:
        """Whether the worker writes into this process's image directory (None: cannot tell)."""
        if self.image_volume is None or worker.image_volume is None:
            return None
        return worker.image_volume == self.image_volume

    @property
    def embedded(self) -> bool:
        """Whether this process runs engines itself (plain `serve`)."""
        return bool(self.local)

    async def workers(self) -> list[LiveWorker]:
        """The live workers, oldest first (an embedded worker is in the table too)."""
        return [LiveWorker.of(row) for row in await self.queue.live_workers(self.within_s)]

    async def status(self) -> EngineStatus:
        """The engine status to report: a local engine's, else a ready live worker's, else why none is ready."""
        if self.local:
            engines = list(self.local.values())
            return next((e.status for e in engines if e.ready), engines[0].status)
        live = await self.workers()
        return _fleet_status([w for w in live if self.same_image_dir(w) is not False], live)

    async def engine_of(self, worker_id: str | None) -> EngineStatus:
        """The engine of the worker that ran a job; the fleet's status when that worker is gone."""
        if worker_id in self.local:
            return self.local[worker_id].status
        found = [w.engine for w in await self.workers() if w.id == worker_id]
        return found[0] if found else await self.status()

    async def ready(self) -> bool:
        """Whether a job submitted now can run: some engine (local, or a live worker's) is ready."""
        return (await self.status()).state == "ready"

    async def gpu_memory(self) -> dict[str, dict[str, int]]:
        """torch's memory per local CUDA engine (device → kind → bytes); nothing without a local engine."""
        engines = self.local.values()
        return {e.status.device: memory for e in engines if e.status.device and (memory := await e.gpu_memory())}


def _fleet_status(workers: list[LiveWorker], live: list[LiveWorker]) -> EngineStatus:
    """A replica's view: the first ready worker's engine; else a status saying why none is ready.

    ``workers``: the live workers that write where this replica reads (``live``: all of them).
    """
    for worker in workers:
        if worker.ready:
            return worker.engine
    elsewhere = [w for w in live if w.ready and w not in workers]
    if elsewhere:
        w = elsewhere[0]
        return EngineStatus(
            state="failed",
            error=(
                f"no worker is ready here: worker {w.id} on {w.host} writes its images into another "
                "directory than this replica's IMAGE_DATA_DIR, so their images could not be served "
                "(mount the same directory on every host; see docs/scaling.md)"
            ),
        )
    if not workers:
        return EngineStatus(state="idle", error="no worker is ready: none is live (start one: cofounder-agent worker)")
    loading = [w for w in workers if w.engine.state in ("idle", "loading")]
    if loading:
        return EngineStatus(state="loading", error=f"no worker is ready: {len(loading)} loading the models")
    failed = workers[0]
    return EngineStatus(
        state="failed", error=f"no worker is ready: worker {failed.id} failed: {failed.engine.error or 'unknown error'}"
    )
