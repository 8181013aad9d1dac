"""Stage 2: the refiner continues the base latent (ensemble) or re-noises and refines it (img2img)."""

from __future__ import annotations

from typing import Any

import torch

from cofounder_agent.contract.checks import StepCallback, checkpoint, step_hook
from cofounder_agent.contract.params import GenerationParams
from cofounder_agent.engine.stages.base import negative_prompts


def refiner_schedule(params: GenerationParams) -> dict[str, Any]:
    """The schedule arguments of diffusers' documented recipe for each refiner mode."""
    if params.refiner_mode == "ensemble":
        # Same schedule as the base, picked up where the base stopped.
        return {"num_inference_steps": params.steps, "denoising_start": params.switch_at}
    # img2img: its own schedule; strength decides how far the finished latent is re-noised.
    return {"num_inference_steps": params.refiner_steps, "strength": params.refiner_strength}


def run_refiner(
    pipe: Any,
    batch: list[GenerationParams],
    latents: torch.Tensor,
    generators: list[torch.Generator],
    *,
    stage: str = "refiner",
    schedule: dict[str, Any] | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Denoise the batch's ``latents`` with an img2img pipeline and return the refined latents."""
    params = batch[0]
    checkpoint()
    out = pipe(
        prompt=[p.prompt for p in batch],
        negative_prompt=negative_prompts(batch),
        image=latents,
        guidance_scale=params.guidance_scale,
        generator=generators,
        output_type="latent",
        callback_on_step_end=step_hook(stage, on_step),
        **(schedule if schedule is not None else refiner_schedule(params)),
    )
    refined: torch.Tensor = out.images
    if refined.numel() == 0:  # diffusers returns an empty latent when no step is scheduled
        raise ValueError(f"the {stage} schedule is empty: no denoising step would run")
    return refined
