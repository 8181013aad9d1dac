"""Pixels to latent: the VAE encoder, as diffusers' img2img does it but in the VAE's own dtype.

The img2img pipeline, given a picture, upcasts the shared VAE for encoding and then casts it
back to the UNet's dtype — which would leave our fp32-kept VAE in fp16. Encoding here and
handing the pipeline a latent keeps the shared VAE untouched (and the generator's draws in the
same order: the encoder's sample, then the noise).
"""

from __future__ import annotations

from typing import Any

import torch
from PIL.Image import Image

from cofounder_agent.contract.checks import checkpoint


@torch.no_grad()
def encode_image(pipe: Any, image: Image, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Return the scaled latent of ``image`` in ``dtype`` (the UNet's)."""
    checkpoint()
    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(image).to(device=vae.device, dtype=vae.dtype)
    latents = vae.encode(pixels).latent_dist.sample(generator).to(dtype)
    config = vae.config
    if getattr(config, "latents_mean", None) is not None and getattr(config, "latents_std", None) is not None:
        mean = torch.tensor(config.latents_mean).view(1, 4, 1, 1).to(latents)
        std = torch.tensor(config.latents_std).view(1, 4, 1, 1).to(latents)
        normalised: torch.Tensor = (latents - mean) * config.scaling_factor / std
        return normalised
    scaled: torch.Tensor = config.scaling_factor * latents
    return scaled
