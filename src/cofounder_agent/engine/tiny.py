"""The built-in tiny model: SDXL's architecture at toy width, with fixed random weights.

It has everything real SDXL has that the service depends on: a base with two text
encoders, a refiner with only ``text_encoder_2`` and aesthetic-score conditioning, the real
SDXL scheduler configuration, and SDXL's latent geometry (VAE scale factor 8, 4 latent
channels, 128x128 latent for a 1024x1024 image). Weights come from a fixed seed, so every
build is bit-identical; nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

TINY_SEED = 20240726
TEXT_HIDDEN = 32  # both toy text encoders; the base UNet sees their concatenation (64)
TIME_EMBED = 8  # addition_time_embed_dim
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@dataclass
class TinyPipelines:
    base: StableDiffusionXLPipeline
    refiner: StableDiffusionXLImg2ImgPipeline


def _bytes_to_unicode() -> dict[int, str]:
    """Map every byte to a printable character, as GPT-2/CLIP byte-level BPE does."""
    printable = list(range(ord("!"), ord("~") + 1))
    printable += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping: dict[int, str] = {}
    extra = 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def build_tokenizer() -> CLIPTokenizer:
    """Build a byte-level CLIP tokenizer in code: one token per byte, no merges."""
    chars = list(_bytes_to_unicode().values())
    vocab = {BOS: 0, EOS: 1}
    for ch in chars:
        vocab[ch] = len(vocab)
    for ch in chars:
        vocab[ch + "</w>"] = len(vocab)
    # model_max_length must be set: without it truncation overflows (DESIGN.md §6).
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _text_config(vocab_size: int, projection: bool) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=64,
        projection_dim=TEXT_HIDDEN if projection else 512,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu",
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def _scheduler() -> EulerDiscreteScheduler:
    text = resources.files("cofounder_agent.engine").joinpath("sdxl_configs/scheduler.json")
    config = json.loads(text.read_text())
    return EulerDiscreteScheduler.from_config(config)


def _base_unet() -> UNet2DConditionModel:
    # SDXL base layout: no attention at the top level, two attention levels below.
    return UNet2DConditionModel(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 32, 64),
        layers_per_block=1,
        attention_head_dim=(2, 2, 4),
        transformer_layers_per_block=(1, 1, 2),
        cross_attention_dim=2 * TEXT_HIDDEN,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED,
        # original size + crop + target size (6 numbers) and the pooled text embedding
        projection_class_embeddings_input_dim=6 * TIME_EMBED + TEXT_HIDDEN,
        norm_num_groups=8,
    )


def _refiner_unet() -> UNet2DConditionModel:
    # SDXL refiner layout: four levels, attention in the middle two, text_encoder_2 only.
    return UNet2DConditionModel(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        attention_head_dim=(2, 2, 4, 4),
        transformer_layers_per_block=1,
        cross_attention_dim=TEXT_HIDDEN,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED,
        # original size + crop + aesthetic score (5 numbers) and the pooled text embedding
        projection_class_embeddings_input_dim=5 * TIME_EMBED + TEXT_HIDDEN,
        norm_num_groups=8,
    )


def _vae() -> AutoencoderKL:
    # Four blocks keep SDXL's scale factor 2**3 = 8; two would make the UNet crawl.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=1024,
        scaling_factor=0.13025,
        force_upcast=True,
    )


def build_tiny(seed: int = TINY_SEED) -> TinyPipelines:
    """Build the tiny base and refiner; the refiner shares the base's text_encoder_2 and VAE."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = build_tokenizer()
        vocab_size = len(tokenizer)
        text_encoder = CLIPTextModel(_text_config(vocab_size, projection=False))
        text_encoder_2 = CLIPTextModelWithProjection(_text_config(vocab_size, projection=True))
        unet = _base_unet()
        refiner_unet = _refiner_unet()
        vae = _vae()
    for module in (text_encoder, text_encoder_2, unet, refiner_unet, vae):
        module.eval()
    return assemble_sdxl(text_encoder, text_encoder_2, tokenizer, unet, refiner_unet, vae, _scheduler)


def assemble_sdxl(
    text_encoder: Any,
    text_encoder_2: Any,
    tokenizer: Any,
    unet: Any,
    refiner_unet: Any,
    vae: Any,
    scheduler: Callable[[], Any],
    *,
    refiner_text_encoder_2: Any = None,
    refiner_vae: Any = None,
    add_watermarker: bool | None = None,
) -> TinyPipelines:
    """SDXL 1.0's base and refiner pipelines over the given modules, configured as published.

    The refiner has no ``text_encoder``, conditions on an aesthetic score and encodes an empty
    negative prompt (SDXL's base zeroes it); it shares the base's ``text_encoder_2`` and VAE
    unless given its own (as the seed script loaded it). Used by the tiny model and by the
    benchmarks' full-size random-weight SDXL.
    """
    base = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler(),
        force_zeros_for_empty_prompt=True,
        add_watermarker=add_watermarker,
    )
    refiner = StableDiffusionXLImg2ImgPipeline(
        vae=refiner_vae if refiner_vae is not None else vae,
        text_encoder=None,
        text_encoder_2=refiner_text_encoder_2 if refiner_text_encoder_2 is not None else text_encoder_2,
        tokenizer=None,
        tokenizer_2=tokenizer,
        unet=refiner_unet,
        scheduler=scheduler(),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
        add_watermarker=add_watermarker,
    )
    return TinyPipelines(base=base, refiner=refiner)


def export_tiny(directory: Path) -> tuple[Path, Path]:
    """Write the tiny model as standard diffusers folders ``directory/base`` and ``/refiner``."""
    tiny = build_tiny()
    base_dir, refiner_dir = directory / "base", directory / "refiner"
    tiny.base.save_pretrained(base_dir, safe_serialization=True)
    tiny.refiner.save_pretrained(refiner_dir, safe_serialization=True)
    return base_dir, refiner_dir
