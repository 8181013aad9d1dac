"""Stage 3: the VAE turns the final latent into pixels, safely in every precision."""

from __future__ import annotations

from typing import Any

import torch
from PIL.Image import Image

from cofounder_agent.contract.checks import checkpoint


def decode_latents(pipe: Any, latents: torch.Tensor) -> Image:
    """Decode a single latent (see ``decode_batch``)."""
    return decode_batch(pipe, latents)[0]


@torch.no_grad()
def decode_batch(pipe: Any, latents: torch.Tensor) -> list[Image]:
    """Decode like diffusers' SDXL pipelines, but in the VAE's own dtype.

    The model loader keeps the SDXL VAE in fp32 when the UNets run in fp16 (it overflows to
    NaN/black images in fp16), so latents are cast to the VAE's dtype here instead of
    up- and down-casting the shared VAE on every call as the pipelines do.
    """
    checkpoint()
    vae = pipe.vae
    latents = latents.to(device=vae.device, dtype=vae.dtype)
    config = vae.config
    if getattr(config, "latents_mean", None) is not None and getattr(config, "latents_std", None) is not None:
        mean = torch.tensor(config.latents_mean).view(1, 4, 1, 1).to(latents)
        std = torch.tensor(config.latents_std).view(1, 4, 1, 1).to(latents)
        latents = latents * std / config.scaling_factor + mean
    else:
        latents = latents / config.scaling_factor
    image = vae.decode(latents, return_dict=False)[0]
    if getattr(pipe, "watermark", None) is not None:
        image = pipe.watermark.apply_watermark(image)
    pictures: list[Image] = pipe.image_processor.postprocess(image, output_type="pil")
    return pictures
