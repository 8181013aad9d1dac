"""Typed inputs and outputs of the engine; torch-free so the web tier can build them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

from cofounder_agent.contract.schedule import ensemble_split, img2img_steps, min_strength

if TYPE_CHECKING:
    from PIL.Image import Image

RefinerMode = Literal["ensemble", "img2img", "none"]
SchedulerName = Literal["euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "heun", "unipc"]
Precision = Literal["fp32", "fp16", "bf16"]

REFINER_MODES: tuple[str, ...] = get_args(RefinerMode)
SCHEDULER_NAMES: tuple[str, ...] = get_args(SchedulerName)

# Seeds are drawn from and accepted in [0, 2**32): the range A1111, ComfyUI and InvokeAI use.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class LoadOptions:
    """What to load and how; mirrors the IMAGE_* settings without depending on them."""

    model: str = "auto"
    refiner_model: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    fp32_min_vram_gb: float = 28.0
    allow_download: bool = False
    vae: str | None = None  # an fp16-safe VAE (e.g. a local copy of madebyollin/sdxl-vae-fp16-fix)
    single_file_config: str | None = None  # diffusers folder or hub id with the components' configs
    refiner_single_file_config: str | None = None


@dataclass(frozen=True)
class GenerationParams:
    """One two-stage generation: everything that decides the pixels."""

    prompt: str
    seed: int
    negative_prompt: str | None = None
    width: int = 1024
    height: int = 1024
    steps: int = 50
    guidance_scale: float = 8.0
    scheduler: SchedulerName = "euler"
    refiner_mode: RefinerMode = "ensemble"
    # ensemble: fraction of the schedule the base runs before handing its latent over.
    switch_at: float = 0.8
    # img2img: the refiner's own schedule length and how far it re-noises the base latent.
    refiner_steps: int = 30
    refiner_strength: float = 0.3

    def schedule_problem(self) -> tuple[str, str] | None:
        """Name the field that leaves a stage with no denoising step, or None when all run.

        diffusers silently returns an empty latent for an empty schedule; the caller turns
        this into a 422 (HTTP) or a usage error (CLI) before anything runs. The counts are
        the ones diffusers runs (``engine.schedule``), not products of floats.
        """
        if (
            self.refiner_mode == "img2img"
            and img2img_steps(self.refiner_steps, self.refiner_strength, self.scheduler) < 1
        ):
            lowest = min_strength(self.refiner_steps)
            return "refiner_strength", (
                f"{self.refiner_steps} refiner steps at strength {self.refiner_strength} run no refiner step: "
                f"use a strength of at least {lowest:.4g}, more refiner steps, or refiner mode none"
            )
        if self.refiner_mode == "ensemble":
            base, refiner = ensemble_split(self.steps, self.switch_at, self.scheduler)
            if base < 1:
                return "switch_at", (
                    f"with {self.steps} steps ({self.scheduler}), switch_at {self.switch_at} leaves the base no "
                    "step: raise switch_at, use more steps, or refiner mode none"
                )
            if refiner < 1:
                return "switch_at", (
                    f"with {self.steps} steps ({self.scheduler}), switch_at {self.switch_at} leaves the refiner "
                    "no step: lower switch_at, use more steps, or refiner mode none"
                )
        return None


def batch_key(params: GenerationParams, keep_base: bool = False) -> tuple[object, ...]:
    """What generations must share to run as one batched call: all but prompts and seeds.

    A missing negative prompt means zero embeddings (SDXL's ``force_zeros_for_empty_prompt``)
    while a given one is encoded: diffusers takes one or the other for a whole batch.
    """
    p = params
    schedule = (p.steps, p.scheduler, p.refiner_mode, p.switch_at, p.refiner_steps, p.refiner_strength)
    return (p.width, p.height, p.guidance_scale, *schedule, p.negative_prompt is None, keep_base)


@dataclass
class StageRecord:
    """What one stage did: its outcome, how long it took and why it fell back, if it did."""

    name: str
    seconds: float
    outcome: Literal["ok", "fallback", "skipped"] = "ok"
    detail: str | None = None
    steps: int | None = None


@dataclass
class GenerationResult:
    """The finished image plus everything needed to reproduce and explain it."""

    image: Image
    params: GenerationParams
    stages: list[StageRecord] = field(default_factory=list)
    refiner_applied: bool = False
    refiner_fallback_reason: str | None = None
    # Pictures of earlier stages, kept on request: (stage name, image).
    intermediates: list[tuple[str, Image]] = field(default_factory=list)
    batch_size: int = 1  # generations that shared the call (micro-batching); timings are the batch's

    @property
    def timings(self) -> dict[str, float]:
        out = {f"{s.name}_s": round(s.seconds, 4) for s in self.stages}
        out["total_s"] = round(sum(s.seconds for s in self.stages), 4)
        return out
