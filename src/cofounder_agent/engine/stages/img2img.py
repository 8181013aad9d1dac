"""The refine stage: an img2img pass over a picture (generated or uploaded) with a prompt."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image as PILImage
from PIL.Image import Image

from cofounder_agent.contract.checks import StepCallback, checkpoint, step_hook
from cofounder_agent.contract.schedule import img2img_runs
from cofounder_agent.contract.stage import RefinePass
from cofounder_agent.engine.stages.decode import decode_batch, decode_latents
from cofounder_agent.engine.stages.encode import encode_image


def fit8(image: Image) -> Image:
    """The picture at the nearest size the VAE takes (multiples of 8), in RGB."""
    width, height = (max(8, round(side / 8) * 8) for side in image.size)
    rgb = image.convert("RGB")
    return rgb if rgb.size == (width, height) else rgb.resize((width, height), PILImage.Resampling.LANCZOS)


def restore_size(picture: Image, size: tuple[int, int]) -> Image:
    """Back to the caller's size, so every stage returns the size it was given."""
    return picture if picture.size == size else picture.resize(size, PILImage.Resampling.LANCZOS)


def refine_image(
    pipe: Any,
    image: Image,
    spec: RefinePass,
    generator: torch.Generator,
    *,
    stage: str = "refine",
    on_step: StepCallback | None = None,
) -> Image:
    """Re-noise ``image`` by ``strength`` and denoise it again; return the new picture."""
    if not img2img_runs(spec.steps, spec.strength):
        raise ValueError(f"{spec.steps} steps at strength {spec.strength}: no denoising step would run")
    size = image.size
    latents = encode_image(pipe, fit8(image), generator, pipe.unet.dtype)
    checkpoint()
    out = pipe(
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt,
        image=latents,
        strength=spec.strength,
        num_inference_steps=spec.steps,
        guidance_scale=spec.guidance_scale,
        generator=generator,
        output_type="latent",
        callback_on_step_end=step_hook(stage, on_step),
    )
    return restore_size(decode_latents(pipe, out.images), size)


def refine_variations(
    pipe: Any,
    image: Image,
    prompts: list[str],
    spec: RefinePass,
    generator: torch.Generator,
    *,
    on_step: StepCallback | None = None,
) -> list[Image]:
    """Refine one picture under several prompts in one batched call (one encode, one denoising loop)."""
    if not img2img_runs(spec.steps, spec.strength):
        raise ValueError(f"{spec.steps} steps at strength {spec.strength}: no denoising step would run")
    latents = encode_image(pipe, fit8(image), generator, pipe.unet.dtype)
    checkpoint()
    out = pipe(
        prompt=prompts,
        negative_prompt=[spec.negative_prompt or ""] * len(prompts) if spec.negative_prompt else None,
        image=latents.repeat(len(prompts), 1, 1, 1),
        strength=spec.strength,
        num_inference_steps=spec.steps,
        guidance_scale=spec.guidance_scale,
        generator=generator,
        output_type="latent",
        callback_on_step_end=step_hook("variations", on_step),
    )
    return [restore_size(picture, image.size) for picture in decode_batch(pipe, out.images)]
