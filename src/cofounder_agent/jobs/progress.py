"""A running job's progress: counted in memory each step, recorded in the store a few times a second."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from cofounder_agent.jobs.events import Progress
from cofounder_agent.jobs.ports import JobQueue

log = logging.getLogger(__name__)
# At most this many progress writes a second per job, plus one at each stage change.
WRITES_PER_S = 4


@dataclass
class Live:
    """Progress of the running job, kept in memory (it changes every denoising step)."""

    total_steps: int
    stage: str | None = None
    step: int = 0
    stage_total: int = 0
    steps_done: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def progress(self) -> float:
        return min(1.0, self.steps_done / self.total_steps) if self.total_steps else 0.0

    @property
    def eta_s(self) -> float | None:
        if not self.steps_done:
            return None
        elapsed = time.monotonic() - self.started
        return round(elapsed / self.steps_done * max(0, self.total_steps - self.steps_done), 2)

    def record(self) -> Progress:
        return Progress(
            stage=self.stage, step=self.step, total=self.stage_total, progress=self.progress, eta_s=self.eta_s
        )


class ProgressWriter:
    """Coalesces a job's progress into few store writes, one at a time and in order."""

    def __init__(self, queue: JobQueue, job_id: str, worker_id: str | None = None) -> None:
        self.queue, self.job_id, self.worker_id = queue, job_id, worker_id  # the writes are fenced by its lease
        self._latest: Progress | None = None
        self._changed = asyncio.Event()
        self._new_stage = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def note(self, progress: Progress, urgent: bool = False) -> None:
        """Remember the latest progress; ``urgent`` (a new stage) skips the wait between writes."""
        self._latest = progress
        self._changed.set()
        if urgent:
            self._new_stage.set()
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._write(), name=f"progress-{self.job_id}")

    async def close(self) -> None:
        """Stop writing: a write in flight completes (a cancelled one could break the session)."""
        self._closed = True
        self._changed.set()
        self._new_stage.set()
        if self._task is not None:
            await self._task

    async def _write(self) -> None:
        gap = 1.0 / WRITES_PER_S
        while True:
            await self._changed.wait()
            if self._closed:
                return
            self._changed.clear()
            self._new_stage.clear()
            latest = self._latest
            if latest is None:
                continue
            try:
                await self.queue.set_progress(self.job_id, self.worker_id, latest)
            except Exception:  # progress is news, not state: the job runs on regardless
                log.exception("could not record the progress of job %s", self.job_id)
            with contextlib.suppress(TimeoutError):  # the pause between writes; a new stage ends it
                async with asyncio.timeout(gap):
                    await self._new_stage.wait()
