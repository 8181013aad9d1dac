"""Typed inputs and outputs of the engine; torch-free so the web tier can build them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

from cofounder_agent.contract.schedule import (
    ensemble_min_steps,
    ensemble_split,
    ensemble_switch_range,
    img2img_min_steps,
    img2img_runs,
    min_strength,
)

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

    def schedule_problem(self, names: Mapping[str, str] | None = None) -> tuple[str, str] | None:
        """Name the option that leaves a stage with no denoising step, and the ways out; None when all run.

        diffusers silently returns an empty latent for an empty schedule; the caller turns
        this into a 422 (HTTP) or a usage error (CLI) before anything runs. The counts are
        the ones diffusers runs (``engine.schedule``), not products of floats. ``names`` is a
        caller's table (``contract.fields.FIELDS``): the advice names the caller's own fields.
        """
        names = names or _OWN_NAMES
        if self.refiner_mode == "img2img" and not img2img_runs(self.refiner_steps, self.refiner_strength):
            return "refiner_strength", self._img2img_advice(names)
        if self.refiner_mode == "ensemble":
            base, refiner = ensemble_split(self.steps, self.switch_at, self.scheduler)
            if min(base, refiner) < 1:
                # With a schedule too short for any switch point, the steps are what must change.
                option = "switch_at" if ensemble_switch_range(self.steps, self.scheduler) else "steps"
                return option, self._ensemble_advice(names, "base" if base < 1 else "refiner")
        return None

    def _ensemble_advice(self, names: Mapping[str, str], starved: str) -> str:
        steps, switch, off = names["advice.steps"], names["advice.switch_at"], names["advice.refiner_off"]
        said = f"{steps or 'steps'} {self.steps} ({self.scheduler}) and {switch or 'switch_at'} {self.switch_at}"
        problem = f"with {said}, the {starved} gets no denoising step"
        ways: list[str] = []
        fewest = ensemble_min_steps(self.switch_at, self.scheduler)
        if steps and fewest is not None:
            ways.append(f"{steps} at least {fewest}")
        span = ensemble_switch_range(self.steps, self.scheduler)
        if switch and span is not None:
            ways.append(f"{switch} between {span[0]} and {span[1]}")
        if off:
            ways.append(off)
        note = f" (no {switch} works with {self.steps} steps)" if switch and span is None else ""
        return _with_ways(problem, ways) + note

    def _img2img_advice(self, names: Mapping[str, str]) -> str:
        steps, strength = names["advice.refiner_steps"], names["advice.refiner_strength"]
        off = names["advice.refiner_off"]
        said = f"{steps or 'refiner steps'} {self.refiner_steps} and {strength or 'strength'} {self.refiner_strength}"
        ways: list[str] = []
        if strength:
            ways.append(f"{strength} at least {min_strength(self.refiner_steps):.4g}")
        fewest = img2img_min_steps(self.refiner_strength)
        if steps and fewest is not None:
            ways.append(f"{steps} at least {fewest}")
        if off:
            ways.append(off)
        return _with_ways(f"with {said}, the refiner gets no denoising step", ways)


# A table that names every option by itself, for callers without one (the engine, tests).
_OWN_NAMES: Mapping[str, str] = {
    "advice.steps": "steps",
    "advice.switch_at": "switch_at",
    "advice.refiner_steps": "refiner_steps",
    "advice.refiner_strength": "refiner_strength",
    "advice.refiner_off": "refiner_mode none",
}


def _with_ways(problem: str, ways: list[str]) -> str:
    """``problem`` and what the caller can change; a caller who can change nothing is told whose settings these are."""
    if not ways:
        return f"{problem}: this server's step and refiner settings decide it; ask its operator"
    return f"{problem}; use {', or '.join(ways)}"


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
