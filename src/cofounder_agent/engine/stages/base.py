"""Stage 1: the SDXL base denoises from noise to a latent (complete, or up to the switch point)."""

from __future__ import annotations

from typing import Any

import torch

from cofounder_agent.contract.checks import StepCallback, checkpoint, step_hook
from cofounder_agent.contract.params import GenerationParams


def negative_prompts(batch: list[GenerationParams]) -> list[str] | None:
    """None for all (zero embeddings, SDXL's default) or each member's own."""
    if batch[0].negative_prompt is None:
        return None
    return [p.negative_prompt or "" for p in batch]


def run_base(
    pipe: Any,
    batch: list[GenerationParams],
    generators: list[torch.Generator],
    *,
    denoising_end: float | None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Return the batch's base latents; with ``denoising_end`` they stop early, as the ensemble recipe does.

    The members share everything but prompts and seeds (``batch_key``); each draws its noise
    from its own generator, so a member's latent is the one it would get alone.
    """
    params = batch[0]
    checkpoint()  # text encoding, before the first step, cannot be interrupted (but is bounded: 77 tokens)
    out = pipe(
        prompt=[p.prompt for p in batch],
        negative_prompt=negative_prompts(batch),
        width=params.width,
        height=params.height,
        num_inference_steps=params.steps,
        guidance_scale=params.guidance_scale,
        denoising_end=denoising_end,
        generator=generators,
        output_type="latent",
        callback_on_step_end=step_hook("base", on_step),
    )
    latents: torch.Tensor = out.images
    return latents
