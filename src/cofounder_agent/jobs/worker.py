"""The worker: claims queued jobs (with batch companions), runs them side by side, records their end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import uuid

from cofounder_agent.config import Settings
from cofounder_agent.contract.control import JobControl
from cofounder_agent.jobs.bus import Subscription
from cofounder_agent.jobs.ending import JobEnding
from cofounder_agent.jobs.events import CancelRequested
from cofounder_agent.jobs.ports import BlobStore, Engine, EventBus, JobQueue
from cofounder_agent.jobs.recorder import JobOutcome, Recorder
from cofounder_agent.jobs.runner import JobRunner
from cofounder_agent.jobs.store import Store
from cofounder_agent.jobs.tables import JobRow

log = logging.getLogger(__name__)
# How often a running job's cancel flag is read besides listening for the cancel event (a
# safety net for a bus that may drop events across processes), and how long an idle worker
# waits for the queue's signal before looking again.
CANCEL_POLL_S = 2.0
IDLE_POLL_S = 5.0


class Worker:
    """One loop per device; jobs run one batch after another on the engine."""

    def __init__(
        self,
        queue: JobQueue,
        bus: EventBus,
        runner: JobRunner,
        recorder: Recorder,
        settings: Settings,
        image_volume: str | None = None,
    ) -> None:
        self.queue, self.bus, self.runner, self.recorder, self.settings = queue, bus, runner, recorder, settings
        # The identity of the image directory it writes into, for API replicas to compare with theirs.
        self.image_volume = image_volume
        self.id = uuid.uuid4().hex  # its name in the workers table and on the jobs it leases
        self._controls: dict[str, JobControl] = {}
        self._task: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self._current: set[str] = set()

    def start(self) -> None:
        self._beat = asyncio.create_task(self._beating(), name="job-worker-heartbeat")
        self._task = asyncio.create_task(self._loop(), name="job-worker")

    async def stop(self) -> None:
        """Stop at the next denoising step; the interrupted job goes back to the queue."""
        current = set(self._current)
        for control in self._controls.values():
            control.cancel()
        for task in (self._task, self._beat):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for job_id in current:
            # A clean stop is not the job's fault: it does not use up its one retry.
            await self.queue.release(job_id, self.id)
        try:
            await self.queue.deregister(self.id)
        except Exception:  # its row stops beating and drops out of the live list by itself
            log.exception("could not remove worker %s from the workers table", self.id)

    async def _beating(self) -> None:
        """Every third of a lease: say it is alive, renew its jobs' leases, reap expired ones.

        It also beats as soon as its models finish loading, so replicas that report the
        workers' readiness turn ready at once, not a third of a lease later.
        """
        registered = False
        loaded = asyncio.ensure_future(self.runner.engine.wait_ready())
        try:
            while True:
                try:
                    registered = await self._beat_once(registered)
                    await self._renew()
                    await self._reap()
                except Exception:  # e.g. the database briefly away: the next beat tries again
                    log.exception("worker heartbeat failed; trying again")
                if loaded.done():
                    await asyncio.sleep(self.settings.image_lease_s / 3)
                else:
                    await asyncio.wait({loaded}, timeout=self.settings.image_lease_s / 3)
        finally:
            loaded.cancel()

    async def _beat_once(self, registered: bool) -> bool:
        """Update its row in the workers table (add it when missing); True once it has one."""
        status = self.runner.engine.status
        ready, model = status.state == "ready", status.base_model or self.settings.image_model
        engine = {**status.as_json(), "image_volume": self.image_volume}
        if registered and await self.queue.heartbeat(
            self.id, ready=ready, job_ids=self._current, model=model, engine=engine
        ):
            return True
        # First beat, or its row was removed meanwhile.
        await self.queue.register_worker(
            self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            device=status.device or self.settings.image_device,
            model=model,
            precision=status.precision or "unknown",
            ready=ready,
            engine=engine,
        )
        return True

    async def _renew(self) -> None:
        """Extend the leases of the running jobs; stop those whose lease was lost (fenced anyway)."""
        current = set(self._current)
        held = await self.queue.renew(self.id, current)
        for job_id in current - held:
            control = self._controls.get(job_id)
            if control is not None:
                log.warning("job %s: lease lost (reaped while this worker ran it); stopping it", job_id)
                control.cancel()

    async def _reap(self) -> None:
        """Queue again the jobs of workers that stopped renewing; end those out of attempts."""
        requeued, failed = await self.queue.reap()
        if requeued:
            log.warning("re-queued %s job(s) whose worker stopped renewing its lease", len(requeued))
        for job_id in failed:  # their last event, as for any job that ends (hooks: the outbox)
            row = await self.queue.get_job(job_id)
            if row is not None:
                await self.recorder.ending.finished(row)

    async def _loop(self) -> None:
        await self.runner.engine.wait_ready()  # a failed load still lets jobs run (and fail with the reason)
        while True:
            try:
                job = await self.queue.claim_next(self.id)
                if job is None:
                    await self.queue.wait_for_work(IDLE_POLL_S)
                    continue
                # Known as running before the wait for companions: a stop meanwhile releases it.
                self._current = {job.id}
                try:
                    group = [job, *await self._companions(job)]
                    self._current = {j.id for j in group}
                    try:
                        await self.recorder.ending.announce_positions()
                    except Exception:  # news for waiting streams; the claimed jobs run regardless
                        log.exception("could not announce queue positions")
                    # Listening before reading the flags: a cancel lands in one or the other.
                    listening = [(j, await self.bus.subscribe(j.id)) for j in group]
                    asked = [await self._asked(j) for j in group]
                    # Side by side, so their generations meet in the engine's batcher (no await
                    # before each reaches the engine).
                    await asyncio.gather(
                        *(self._run_safely(j, s, cancel) for (j, s), cancel in zip(listening, asked, strict=True))
                    )
                finally:
                    self._current = set()
            except Exception:  # e.g. "database is locked": the loop must outlive it
                log.exception("worker loop error; retrying in 1 s")
                await asyncio.sleep(1)

    async def _companions(self, job: JobRow) -> list[JobRow]:
        """Queued jobs that can share ``job``'s batched generation (micro-batching), claimed now."""
        limit = self.settings.image_batch_max - 1
        if limit < 1 or job.batch_key is None:
            return []
        found: list[JobRow] = []
        try:
            found += await self.queue.claim_companions(job, limit, self.id)
            if len(found) < limit and self.settings.image_batch_wait_s > 0:
                await asyncio.sleep(self.settings.image_batch_wait_s)  # a little latency for a fuller batch
                found += await self.queue.claim_companions(job, limit - len(found), self.id)
        except Exception:  # the claimed job runs whatever happens here, with what was found
            log.exception("could not gather batch companions for job %s", job.id)
        return found

    async def _asked(self, job: JobRow) -> bool:
        """Whether a cancel came for the job since it was queued (a failed read: the watcher looks again)."""
        try:
            return job.cancel_requested or await self.queue.cancel_requested(job.id)
        except Exception:
            log.exception("could not read the cancel flag of job %s", job.id)
            return False

    async def _run_safely(self, job: JobRow, subscription: Subscription, cancelled: bool) -> None:
        control = self._controls[job.id] = JobControl(self.settings.image_job_timeout_s, threading.Event())
        if cancelled:
            control.cancel()  # asked between the claim and now: it stops before its first step
        watcher = asyncio.create_task(self._watch_cancel(subscription, control), name=f"cancel-{job.id}")
        try:
            outcome = await self.runner.run(job, control)
        except Exception:  # a bug in a job's handling fails that job, not the worker
            log.exception("job %s crashed the worker step", job.id)
            outcome = JobOutcome("failed", "internal error; see the server log")
        finally:
            self._controls.pop(job.id, None)
            watcher.cancel()
            subscription.close()
        try:
            done = await self.recorder.finish(job, outcome, self.id)
        except Exception:  # e.g. a result the store refused: the job still ends
            log.exception("could not record the end of job %s", job.id)
            done = await self.recorder.finish(job, JobOutcome("failed", "internal error; see the server log"), self.id)
        if done is None:  # fenced: the lease ran out meanwhile, and the job's next run is what counts
            log.warning("job %s: lease lost before its end; this run's end was not recorded", job.id)

    async def _watch_cancel(self, subscription: Subscription, control: JobControl) -> None:
        """Stop the job when the API asks: its cancel event, or its flag read now and then."""
        with subscription:
            while not control.cancel_flag.is_set():
                try:
                    async with asyncio.timeout(CANCEL_POLL_S):
                        while not isinstance((await subscription.get()).event, CancelRequested):
                            pass
                except TimeoutError:
                    if not await self.queue.cancel_requested(subscription.job_id):
                        continue
                control.cancel()


def build_worker(
    store: Store, bus: EventBus, engine: Engine, files: BlobStore, ending: JobEnding, settings: Settings
) -> Worker:
    """The worker and its parts, wired over the ports."""
    recorder = Recorder(store, bus, files, ending)
    runner = JobRunner(engine, files, recorder, store, settings.image_job_timeout_s)
    return Worker(store, bus, runner, recorder, settings, files.volume_id)
