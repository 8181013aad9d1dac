"""Stage 1: the SDXL base denoises from noise to a latent (complete, or up to the switch point)."""

from __future__ import annotations

from typing import Any

import torch

from cofounder_agent.engine.params import GenerationParams
from cofounder_agent.engine.stages.common import StepCallback, step_hook


def run_base(
    pipe: Any,
    params: GenerationParams,
    generator: torch.Generator,
    *,
    denoising_end: float | None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Return the base latent; with ``denoising_end`` it stops early, as the ensemble recipe does."""
    out = pipe(
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        width=params.width,
        height=params.height,
        num_inference_steps=params.steps,
        guidance_scale=params.guidance_scale,
        denoising_end=denoising_end,
        generator=generator,
        output_type="latent",
        callback_on_step_end=step_hook("base", on_step),
    )
    latents: torch.Tensor = out.images
    return latents
