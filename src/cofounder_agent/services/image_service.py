"""ImageService: load the SDXL pipelines once and run generations off the event loop.

All engine work — loading and every generation — runs on one single-thread executor per
device, so requests queue up instead of touching a (non-thread-safe) pipeline at the same
time, and the event loop never waits on torch. torch itself is imported on that thread,
when the models load: importing this module (and the web tier) stays torch-free.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from cofounder_agent.config import Settings
from cofounder_agent.contract.checks import Check, checked_by, checkpoint, every_member
from cofounder_agent.contract.control import JobControl
from cofounder_agent.contract.errors import Unavailable
from cofounder_agent.contract.params import GenerationParams, GenerationResult, LoadOptions
from cofounder_agent.services.batcher import Batcher

if TYPE_CHECKING:
    from PIL.Image import Image

    from cofounder_agent.contract.checks import StepCallback
    from cofounder_agent.contract.stage import StageOutput, StageSpec
    from cofounder_agent.engine.generate import TwoStageGenerator
    from cofounder_agent.engine.stage_runner import StageRunner

log = logging.getLogger(__name__)
T = TypeVar("T")

State = Literal["idle", "loading", "ready", "failed"]


class ModelNotReady(Unavailable):
    """Generation was asked for before the models finished loading (or after they failed)."""


@dataclass(frozen=True)
class EngineStatus:
    """What health endpoints report about the engine."""

    state: State
    error: str | None = None
    base_model: str | None = None
    refiner_model: str | None = None
    is_tiny: bool = False
    note: str | None = None
    device: str | None = None
    device_name: str | None = None
    vram_gb: float | None = None
    precision: str | None = None
    vae_dtype: str | None = None
    fast_path: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The status as the workers table keeps it (``workers.engine``)."""
        return {**asdict(self), "fast_path": list(self.fast_path)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EngineStatus:
        """A status read back from the workers table; a row not yet written reads as idle."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["fast_path"] = tuple(values.get("fast_path") or ())
        return cls(**{"state": "idle", **values})

    def summary(self) -> str:
        """One line for the log: what loaded, where, at which precision."""
        refiner = f", refiner {self.refiner_model}" if self.refiner_model else ", no refiner"
        name = f" ({self.device_name})" if self.device_name and self.device_name != self.device else ""
        fast = f", fast path {', '.join(self.fast_path)}" if self.fast_path else ""
        return f"base {self.base_model}{refiner} on {self.device}{name}, {self.precision}, VAE {self.vae_dtype}{fast}"


class ImageService:
    """Owns the device executor, the loaded models and their state."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._generator: TwoStageGenerator | None = None
        self._stages: StageRunner | None = None
        self._fast_path: tuple[str, ...] = ()
        self._status = EngineStatus(state="idle")
        self._load_task: asyncio.Task[None] | None = None
        self._batcher = (
            Batcher(self._generate_batch, settings.image_batch_max) if settings.image_batch_max > 1 else None
        )

    @property
    def ready(self) -> bool:
        return self._status.state == "ready"

    @property
    def status(self) -> EngineStatus:
        return self._status

    def start(self) -> asyncio.Task[None]:
        """Begin loading in the background; health answers meanwhile, readiness waits."""
        if self._load_task is None:
            self._status = EngineStatus(state="loading")
            self._load_task = asyncio.create_task(self._load(), name="load-models")
        return self._load_task

    async def wait_ready(self) -> bool:
        """Wait for loading to end; True when the models are usable."""
        if self._load_task is not None:
            await asyncio.shield(self._load_task)
        return self.ready

    async def generate(
        self,
        params: GenerationParams,
        on_step: StepCallback | None = None,
        keep_base: bool = False,
        control: JobControl | None = None,
    ) -> GenerationResult:
        """Run one generation on the device executor (batched with compatible ones when enabled).

        ``control`` is the job's: its clock runs while this runs on the engine, and its check
        stops the work at the next step, VAE block or tile.
        """
        if self._batcher is not None:
            return await self._batcher.generate(params, on_step, keep_base, control)
        generator = self._loaded()
        return await self._on_engine([control], generator.generate, params, _guarded(on_step, control), keep_base)

    async def _generate_batch(
        self,
        batch: list[GenerationParams],
        on_steps: list[StepCallback | None],
        keep_base: bool,
        controls: list[JobControl | None],
    ) -> list[GenerationResult | BaseException]:
        generator = self._loaded()
        guarded = [_guarded(on_step, control) for on_step, control in zip(on_steps, controls, strict=True)]
        return await self._on_engine(controls, generator.generate_batch, batch, guarded, keep_base)

    async def run_stage(
        self,
        spec: StageSpec,
        image: Image,
        params: GenerationParams,
        index: int,
        on_step: StepCallback | None = None,
        inputs: Mapping[str, Image | None] | None = None,
        control: JobControl | None = None,
    ) -> StageOutput:
        """Run one recipe stage on the device executor, on ``control``'s clock (see ``generate``)."""
        generator = self._loaded()
        if self._stages is None:
            from cofounder_agent.engine.stage_runner import StageRunner

            self._stages = StageRunner(generator.models, self._settings.models_dir)
        run, guarded = self._stages.run, _guarded(on_step, control)
        return await self._on_engine([control], run, spec, image, params, index, guarded, inputs)

    def _loaded(self) -> TwoStageGenerator:
        if self._generator is None:
            raise ModelNotReady(f"the image model is not ready ({self._describe_state()})", code="not_ready")
        return self._generator

    async def _on_engine(self, controls: list[JobControl | None], fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the engine thread for the jobs of ``controls``, carrying the caller's context.

        The context carries the job id of log records; the call runs on its jobs' clocks.
        """
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, context.run, _engine_call, controls, fn, args)

    async def gpu_memory(self) -> dict[str, int]:
        """torch's allocated and reserved bytes on the CUDA device; empty on CPU."""
        device = self._status.device
        if device is None or not device.startswith("cuda"):
            return {}
        import torch  # only reached when the engine (and so torch) is loaded on CUDA

        return {
            "allocated": int(torch.cuda.memory_allocated(device)),
            "reserved": int(torch.cuda.memory_reserved(device)),
        }

    async def close(self) -> None:
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        # Running work cannot be interrupted mid-kernel; queued work is dropped.
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _describe_state(self) -> str:
        s = self._status
        return f"{s.state}: {s.error}" if s.error else s.state

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            generator = await loop.run_in_executor(self._executor, self._load_sync)
        except Exception as exc:  # any load failure is reported by health, not raised at startup
            self._status = EngineStatus(state="failed", error=f"{type(exc).__name__}: {exc}")
            log.error("model loading failed: %s", self._status.error)
            return
        self._generator = generator
        models = generator.models
        self._status = EngineStatus(
            state="ready",
            base_model=models.base_source.location,
            refiner_model=models.refiner_source.location,
            is_tiny=models.is_tiny,
            note=models.base_source.note,
            device=models.device.device,
            device_name=models.device.name,
            vram_gb=round(models.device.vram_gb, 2) if models.device.vram_gb else None,
            precision=models.precision,
            vae_dtype=models.vae_dtype,
            fast_path=self._fast_path,
        )
        log.info("models ready: %s", self._status.summary())

    def _load_sync(self) -> TwoStageGenerator:
        # Imported here, on the engine thread: torch and diffusers take seconds to import.
        from cofounder_agent.engine.generate import TwoStageGenerator
        from cofounder_agent.engine.models import load_models

        s = self._settings
        options = LoadOptions(
            model=s.image_model,
            refiner_model=s.image_refiner_model,
            device=s.image_device,
            precision=s.image_precision,
            fp32_min_vram_gb=s.image_fp32_min_vram_gb,
            allow_download=s.image_allow_download,
            vae=s.image_vae,
            single_file_config=s.image_single_file_config,
            refiner_single_file_config=s.image_refiner_single_file_config,
        )
        models = load_models(options)
        if s.image_channels_last or s.image_fuse_qkv or s.image_compile:
            from cofounder_agent.engine.fastpath import FastPath, apply_fast_path

            fast = FastPath(
                channels_last=s.image_channels_last,
                fuse_qkv=s.image_fuse_qkv,
                compile=s.image_compile,
                compile_mode=s.image_compile_mode,
                compile_sizes=tuple((size, size) for size in s.image_compile_sizes),
                compile_batches=tuple(range(1, s.image_batch_max + 1)) if s.image_compile else (1,),
            )
            log.info("fast path: %s", apply_fast_path(models, fast))
            self._fast_path = fast.enabled
        return TwoStageGenerator(models)


def _guarded(on_step: StepCallback | None, control: JobControl | None) -> StepCallback | None:
    return on_step if control is None else control.guard(on_step)


def _engine_call(controls: list[JobControl | None], fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """On the engine thread: run ``fn`` with its jobs' clocks running and their check reachable.

    Every phase calls ``checkpoint`` (before each pipeline call, between VAE blocks, upscale
    tiles and faces); for a batch it stops only once every member has stopped.
    """
    jobs = [control for control in controls if control is not None]
    # A member without a control never stops, so neither does its batch's shared work.
    check: Check | None = every_member([c.check for c in jobs]) if jobs and len(jobs) == len(controls) else None
    for control in jobs:
        control.enter()
    try:
        with checked_by(check):
            checkpoint()  # cancelled while the call waited for the engine: do not start it
            return fn(*args)
    finally:
        for control in jobs:
            control.leave()
