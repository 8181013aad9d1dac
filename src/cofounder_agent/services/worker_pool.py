"""One engine and one worker per device of IMAGE_DEVICE, in this process (serve's embedded workers, `worker`)."""

from __future__ import annotations

import asyncio
import logging

from cofounder_agent.config import Settings
from cofounder_agent.jobs.ending import JobEnding
from cofounder_agent.jobs.ports import BlobStore, EventBus
from cofounder_agent.jobs.store import Store
from cofounder_agent.jobs.worker import build_worker
from cofounder_agent.services.image_service import ImageService

log = logging.getLogger(__name__)


class WorkerPool:
    """The engines (ImageService, one per device) and the workers that feed them jobs."""

    def __init__(self, store: Store, bus: EventBus, files: BlobStore, ending: JobEnding, settings: Settings) -> None:
        # Each engine gets settings naming only its own device: ImageService loads on image_device.
        self.engines = [ImageService(settings.for_device(device)) for device in settings.devices]
        self.workers = [
            build_worker(store, bus, engine, files, ending, engine_settings)
            for engine, engine_settings in zip(self.engines, map(settings.for_device, settings.devices), strict=True)
        ]

    def by_worker(self) -> dict[str, ImageService]:
        """Each engine by the id of the worker that feeds it."""
        return {worker.id: engine for worker, engine in zip(self.workers, self.engines, strict=True)}

    def start(self) -> None:
        """Begin loading the models (in the background) and claiming jobs once they are loaded."""
        for engine in self.engines:
            engine.start()
        for worker in self.workers:
            worker.start()
            log.info("worker %s on %s: loading the models", worker.id, worker.settings.image_device)

    async def wait_ready(self) -> bool:
        """Wait for every engine's load to end; log each; True when all of them are usable."""
        for engine, worker in zip(self.engines, self.workers, strict=True):
            loaded = await engine.wait_ready()
            s, device = engine.status, worker.settings.image_device
            if loaded:
                log.info("worker %s ready on %s (%s, %s)", worker.id, s.device, s.precision, s.base_model)
            else:
                log.error("worker %s on %s: the models did not load: %s", worker.id, device, s.error)
        return all(engine.ready for engine in self.engines)

    async def stop(self) -> None:
        """Stop every worker at its next denoising step (their jobs go back to the queue); free the engines."""
        await asyncio.gather(*(worker.stop() for worker in self.workers))
        for engine in self.engines:
            await engine.close()
