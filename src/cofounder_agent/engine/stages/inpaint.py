"""The inpaint stage: refine only a masked region (the seed's enhance_region), leave the rest be."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from PIL import Image, ImageFilter

from cofounder_agent.contract.checks import StepCallback, checkpoint, step_hook
from cofounder_agent.contract.stage import RefinePass
from cofounder_agent.engine.stages.decode import decode_latents
from cofounder_agent.engine.stages.img2img import fit8


@contextlib.contextmanager
def vae_dtype_kept(vae: Any) -> Iterator[None]:
    """The inpaint pipeline casts the shared VAE to the UNet's dtype after encoding: undo that."""
    dtype = vae.dtype
    try:
        yield
    finally:
        if vae.dtype != dtype:
            vae.to(dtype)


def _as_mask(mask: Image.Image) -> Image.Image:
    """White = refine; a mask painted as alpha over a flat picture uses its alpha channel."""
    if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
        rgba = mask.convert("RGBA")
        grey = rgba.convert("L")
        if grey.getextrema()[0] == grey.getextrema()[1]:  # flat colour: the drawing is in the alpha
            return rgba.getchannel("A")
        return grey
    return mask.convert("L")


def inpaint_region(
    pipe: Any,
    image: Image.Image,
    mask: Image.Image,
    ask: RefinePass,
    generator: torch.Generator,
    *,
    feather: int,
    on_step: StepCallback | None = None,
) -> Image.Image:
    """Denoise the masked region again with the prompt; outside the feathered mask, keep every pixel."""
    image = image.convert("RGB")
    mask = _as_mask(mask).resize(image.size)
    if mask.getbbox() is None:
        raise ValueError("the mask is empty: nothing to refine")
    work = fit8(image)  # the pipeline takes multiples of 8; the composite happens at the input's size
    checkpoint()
    with vae_dtype_kept(pipe.vae):
        out = pipe(
            prompt=ask.prompt,
            negative_prompt=ask.negative_prompt,
            image=work,
            mask_image=mask.resize(work.size),
            strength=ask.strength,
            num_inference_steps=ask.steps,
            guidance_scale=ask.guidance_scale,
            width=work.width,
            height=work.height,
            generator=generator,
            output_type="latent",
            callback_on_step_end=step_hook("inpaint", on_step),
        )
    painted = decode_latents(pipe, out.images)
    if painted.size != image.size:
        painted = painted.resize(image.size, Image.Resampling.LANCZOS)
    # The VAE round trip changes every pixel slightly: composite so only the region (and a
    # feathered border of about 2x feather pixels) differs from the input.
    soft = mask.filter(ImageFilter.GaussianBlur(feather)) if feather else mask
    return Image.composite(painted, image, soft)
