"""The built-in tiny model keeps SDXL's structure and geometry, deterministically."""

from __future__ import annotations

from pathlib import Path

import torch

from cofounder_agent.engine.tiny import build_tiny, build_tokenizer


def test_latent_geometry_matches_sdxl() -> None:
    tiny = build_tiny()
    assert tiny.base.vae_scale_factor == 8
    assert tiny.base.unet.config.in_channels == 4 and tiny.base.vae.config.latent_channels == 4
    # A 1024x1024 request makes a 128x128 latent, as real SDXL does.
    latents = tiny.base.prepare_latents(1, 4, 1024, 1024, torch.float32, "cpu", torch.Generator().manual_seed(0))
    assert latents.shape == (1, 4, 128, 128)
    assert tiny.base.default_sample_size * tiny.base.vae_scale_factor == 1024


def test_base_and_refiner_have_sdxl_conditioning() -> None:
    tiny = build_tiny()
    base, refiner = tiny.base, tiny.refiner
    assert base.text_encoder is not None and base.text_encoder_2 is not None
    assert refiner.text_encoder is None
    assert refiner.text_encoder_2 is base.text_encoder_2 and refiner.vae is base.vae
    assert refiner.config.requires_aesthetics_score and base.config.force_zeros_for_empty_prompt
    # base: 6 time ids (sizes, crop); refiner: 5 (sizes, crop, aesthetic score)
    te2 = base.text_encoder_2.config.projection_dim
    time_dim = base.unet.config.addition_time_embed_dim
    assert base.unet.config.projection_class_embeddings_input_dim == te2 + 6 * time_dim
    assert refiner.unet.config.projection_class_embeddings_input_dim == te2 + 5 * time_dim
    assert base.unet.config.cross_attention_dim == (
        base.text_encoder.config.hidden_size + base.text_encoder_2.config.hidden_size
    )
    assert base.scheduler.__class__.__name__ == "EulerDiscreteScheduler"


def test_weights_are_fixed_by_the_seed() -> None:
    first, second = build_tiny().base.unet.state_dict(), build_tiny().base.unet.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = build_tiny(seed=1).base.unet.state_dict()
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_tokenizer_pads_and_truncates_to_77() -> None:
    tokenizer = build_tokenizer()
    long = tokenizer("castle " * 100, padding="max_length", max_length=77, truncation=True).input_ids
    short = tokenizer("a castle", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(long) == len(short) == 77
    assert short[0] == tokenizer.bos_token_id and tokenizer.eos_token_id in short
    assert tokenizer.decode(short, skip_special_tokens=True) == "a castle"


def test_export_writes_standard_diffusers_folders(tiny_dirs: tuple[Path, Path]) -> None:
    base, refiner = tiny_dirs
    assert (base / "model_index.json").is_file() and (refiner / "model_index.json").is_file()
    weights = sorted(p.name for p in base.rglob("*") if p.suffix in (".safetensors", ".bin", ".ckpt", ".pt"))
    assert weights and all(name.endswith(".safetensors") for name in weights)
    assert not (refiner / "text_encoder").exists()  # the refiner has text_encoder_2 only
