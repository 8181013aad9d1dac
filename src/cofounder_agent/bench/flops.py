"""Suite ``flops``: the work of one SDXL image, counted, and the compute floor it implies.

Counts use ``torch.utils.flop_counter.FlopCounterMode`` on modules built on the meta device:
shapes propagate, nothing is allocated or computed, so full-size SDXL counts in seconds on a
CPU. A multiply-add is 2 FLOPs; attention is counted through its matmuls. The floor of a
setting is its FLOPs divided by the accelerator's throughput: no real run can be faster, and
``floor / measured`` says how much of the hardware a setting uses (the gpu suite prints it).

What is counted for one image: the UNet forwards (with classifier-free guidance, so each at
batch 2) and one VAE decode. Text encoding is left out: its four CLIP calls are ~0.3 TFLOP, under
0.1 % of either setting; the flops suite prints them as their own row.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from cofounder_agent.bench.common import Report
from cofounder_agent.bench.sdxl import UNetKind

DEFAULT_TFLOPS = 800.0  # H100 SXM dense fp16/bf16 is ~990 peak; ~800 is what large GEMMs reach
# engine/sdxl_configs/README.md: one forward at 1024², batch 1, counted the same way.
REFERENCE_TFLOP: dict[UNetKind, float] = {"base": 6.76, "refiner": 7.29}


@dataclass(frozen=True)
class Setting:
    """A two-stage schedule, in the arguments diffusers' SDXL pipelines take."""

    name: str
    mode: Literal["img2img", "ensemble"]
    steps: int  # the base's num_inference_steps (ensemble: the shared schedule's length)
    switch_at: float = 0.8  # ensemble: denoising_end of the base = denoising_start of the refiner
    refiner_steps: int = 30  # img2img: the refiner's own num_inference_steps
    strength: float = 0.3  # img2img: how far the finished base latent is re-noised


# The seed script: base 50 steps to the end, then the refiner as img2img over its own 30-step
# schedule at strength 0.3, which runs int(30 * 0.3) = 9 steps.
SEED = Setting("seed", "img2img", steps=50, refiner_steps=30, strength=0.3)
# diffusers' "ensemble of expert denoisers" as the issue states it, "base 40 + refiner 10": one
# 50-step schedule, the base runs the timesteps at or above the switch (40), the refiner the other 10.
ENSEMBLE = Setting("ensemble", "ensemble", steps=50, switch_at=0.8)
SETTINGS = {setting.name: setting for setting in (SEED, ENSEMBLE)}


def stage_steps(setting: Setting) -> tuple[int, int]:
    """(base, refiner) UNet steps, by the same rules as diffusers' pipelines and scheduler."""
    from diffusers import EulerDiscreteScheduler

    from cofounder_agent.bench.sdxl import load_config

    scheduler = EulerDiscreteScheduler.from_config(load_config("scheduler"))
    scheduler.set_timesteps(setting.steps)
    if setting.mode == "ensemble":
        # pipeline_stable_diffusion_xl: the base keeps timesteps >= the cutoff, img2img the rest.
        train = scheduler.config.num_train_timesteps
        cutoff = round(train - setting.switch_at * train)  # as the pipelines compute it
        base = int((scheduler.timesteps >= cutoff).sum())
        return base, len(scheduler.timesteps) - base
    # img2img get_timesteps: the last int(n * strength) steps of its own n-step schedule.
    return setting.steps, min(int(setting.refiner_steps * setting.strength), setting.refiner_steps)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (run under no_grad, as inference is)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


@dataclass
class Modules:
    """The three modules whose forwards make up the counted work."""

    base_unet: Any
    refiner_unet: Any
    vae: Any


@cache
def meta_modules() -> Modules:
    """Full-size SDXL on the meta device, built once per process (a few seconds of CPU)."""
    import torch

    from cofounder_agent.bench.sdxl import build_unet, build_vae

    with torch.device("meta"):
        return Modules(build_unet("base"), build_unet("refiner"), build_vae())


def unet_flops(unet: Any, kind: UNetKind, batch: int, height: int, width: int) -> int:
    """One UNet forward at ``batch`` rows for a ``height`` x ``width`` image (latent 1/8)."""
    from cofounder_agent.bench.sdxl import unet_inputs

    inputs = unet_inputs(unet, kind, batch, height, width)
    return count_flops(lambda: unet(**inputs))


def vae_decode_flops(vae: Any, batch: int, height: int, width: int) -> int:
    import torch

    param = next(vae.parameters())
    latent = torch.randn(batch, vae.config.latent_channels, height // 8, width // 8, device=param.device)
    return count_flops(lambda: vae.decode(latent.to(param.dtype)))


@cache
def _meta_counts(height: int, width: int, images: int) -> tuple[int, int, int]:
    modules = meta_modules()
    return _counts(modules, height, width, images)


def _counts(modules: Modules, height: int, width: int, images: int) -> tuple[int, int, int]:
    rows = 2 * images  # classifier-free guidance: conditional and unconditional rows
    return (
        unet_flops(modules.base_unet, "base", rows, height, width),
        unet_flops(modules.refiner_unet, "refiner", rows, height, width),
        vae_decode_flops(modules.vae, images, height, width),
    )


def work_flops(
    setting: Setting | str, size: int | tuple[int, int] = 1024, images: int = 1, modules: Modules | None = None
) -> int:
    """FLOPs of one request of ``images`` images: base and refiner steps with CFG plus the decode.

    ``modules`` defaults to full-size SDXL on the meta device; the gpu suite passes the models
    it times when they are not SDXL (the tiny model in its CPU test mode).
    """
    chosen = SETTINGS[setting] if isinstance(setting, str) else setting
    height, width = (size, size) if isinstance(size, int) else size
    base, refiner, decode = (
        _meta_counts(height, width, images) if modules is None else _counts(modules, height, width, images)
    )
    base_steps, refiner_steps = stage_steps(chosen)
    return base_steps * base + refiner_steps * refiner + decode


def floor_seconds(
    setting: Setting | str,
    size: int | tuple[int, int] = 1024,
    tflops: float = DEFAULT_TFLOPS,
    images: int = 1,
    modules: Modules | None = None,
) -> float:
    """The least time one request can take at ``tflops`` TFLOP/s: its FLOPs over the throughput."""
    return work_flops(setting, size, images, modules) / (tflops * 1e12)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--flops-size", dest="flops_size", type=int, default=1024, help="square image side in pixels (latent = /8)"
    )
    group.add_argument(
        "--flops-tflops",
        dest="flops_tflops",
        type=float,
        default=DEFAULT_TFLOPS,
        help=f"accelerator throughput for the floor, TFLOP/s (default {DEFAULT_TFLOPS:g})",
    )


def _text_encoder_flops() -> int:
    """The CLIP calls of one request, for the record.

    The base encodes the prompt with both encoders (its empty negative prompt becomes zeros:
    ``force_zeros_for_empty_prompt``); the refiner encodes prompt and negative with
    text_encoder_2. One text_encoder call and three text_encoder_2 calls.
    """
    import torch

    from cofounder_agent.bench.sdxl import CONTEXT_TOKENS, build_text_encoder, build_text_encoder_2

    with torch.device("meta"):
        one, two = build_text_encoder(), build_text_encoder_2()
        ids = torch.zeros(1, CONTEXT_TOKENS, dtype=torch.long)
        first = count_flops(lambda: one(ids, output_hidden_states=True))
        second = count_flops(lambda: two(ids, output_hidden_states=True))
    return first + 3 * second


def run(args: argparse.Namespace) -> Report:
    size, tflops = int(args.flops_size), float(args.flops_tflops)
    if size % 8 or size < 64:
        raise SystemExit("--flops-size must be a multiple of 8 and at least 64")
    modules = meta_modules()
    report = Report("flops")
    single = {kind: unet_flops(getattr(modules, f"{kind}_unet"), kind, 1, size, size) for kind in REFERENCE_TFLOP}
    cfg_base, cfg_refiner, decode = _meta_counts(size, size, 1)
    for kind, cfg in zip(REFERENCE_TFLOP, (cfg_base, cfg_refiner), strict=True):
        report.rows.append(
            {"item": f"{kind} UNet forward", "size": size, "batch": 1, "TFLOP": single[kind] / 1e12},
        )
        report.rows.append({"item": f"{kind} UNet forward (CFG)", "size": size, "batch": 2, "TFLOP": cfg / 1e12})
    report.rows.append({"item": "VAE decode", "size": size, "batch": 1, "TFLOP": decode / 1e12})
    report.rows.append(
        {"item": "text encoders (1+3 calls)", "size": size, "batch": 1, "TFLOP": _text_encoder_flops() / 1e12}
    )
    for setting in SETTINGS.values():
        base_steps, refiner_steps = stage_steps(setting)
        total = work_flops(setting, size)
        report.rows.append(
            {
                "item": f"setting {setting.name}",
                "size": size,
                "batch": 1,
                "TFLOP": total / 1e12,
                "base_steps": base_steps,
                "refiner_steps": refiner_steps,
                f"floor_s@{tflops:g}": total / (tflops * 1e12),
            }
        )
        report.summary[f"floor_s_{setting.name}"] = total / (tflops * 1e12)
    if size == 1024:
        for kind, reference in REFERENCE_TFLOP.items():
            off = 100 * (single[kind] / 1e12 - reference) / reference
            report.notes.append(
                f"check: {kind} {single[kind] / 1e12:.3f} TFLOP vs {reference} in the README ({off:+.2f} %)"
            )
    report.notes += [
        "FLOPs: FlopCounterMode on the meta device, multiply-add = 2, attention counted through its matmuls.",
        "A setting's work = base steps x base forward (CFG, batch 2) + refiner steps x refiner forward (CFG)"
        " + one VAE decode; text encoding is left out (the row above: under 0.1 %).",
        "seed: base 50 steps, refiner img2img num_inference_steps=30 strength=0.3 -> int(30*0.3) = 9 steps.",
        "ensemble: one 50-step schedule split at 0.8 (denoising_end/denoising_start): the base runs the"
        " timesteps >= 200 (40 steps), the refiner the other 10 -- 50 UNet forwards in all.",
        f"floor = FLOPs / ({tflops:g} TFLOP/s); real runs also pay memory-bound kernels and launches.",
    ]
    return report
