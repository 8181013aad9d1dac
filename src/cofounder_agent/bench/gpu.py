"""Suite ``gpu``: full-size SDXL (random weights) timed on a CUDA device, setting by setting.

Settings (``--gpu-settings``, any of a,b,c,d):

- a: the seed script: fp32, base 50 steps, refiner img2img 30 steps at strength 0.3 (9 run),
  refiner loaded without sharing (its own text_encoder_2 and VAE).
- b: plain diffusers, fp16, the ensemble recipe: a 50-step schedule split at 0.8 (base 40
  steps, refiner 10), refiner sharing text_encoder_2 and the VAE; the VAE decodes in fp32.
- c: b's work with the fast path (``engine.fastpath``), each switch on its own, then all.
- d: throughput at several images per request with the whole fast path.

Each variant is built fresh (compiled and fused modules cannot be undone), warmed up by one
untimed-for-the-median request (reported as ``first_s``, compile time as ``compile_s``), then
timed ``--gpu-runs`` times with ``torch.cuda.synchronize`` around every stage. Seconds per
image are set against the compute floor of the same work from the flops suite
(``floor_frac`` = floor / measured: the share of the accelerator's arithmetic actually used).
Random weights change no kernel's speed; fp16 activations may overflow to NaN, which does not
either, and the decoded pixels are thrown away.
"""

from __future__ import annotations

import argparse
import gc
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cofounder_agent.bench.common import Report, median
from cofounder_agent.bench.flops import DEFAULT_TFLOPS, ENSEMBLE, SEED, Setting, stage_steps
from cofounder_agent.engine.fastpath import FastPath

if TYPE_CHECKING:
    import torch

PROMPT = "a lighthouse on a cliff at dusk, photograph"
GUIDANCE = 8.0  # the service's default; above 1, so every UNet call runs the CFG batch
# The --gpu-tiny schedules: the same two recipes, short enough for a CPU test.
TINY_SEED = Setting("seed", "img2img", steps=4, refiner_steps=4, strength=0.5)
TINY_ENSEMBLE = Setting("ensemble", "ensemble", steps=5, switch_at=0.8)


@dataclass(frozen=True)
class Variant:
    setting: str  # a, b, c or d
    name: str
    work: Setting
    half: bool  # fp16 (bf16-free on purpose: the seed and the service use fp16 on CUDA)
    share: bool
    fast: FastPath = field(default_factory=FastPath)
    batches: tuple[int, ...] = (1,)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, not {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers")
    return values


def _settings(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    if not chosen or set(chosen) - set("abcd"):
        raise argparse.ArgumentTypeError(f"settings are a subset of a,b,c,d, not {text!r}")
    return chosen


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--gpu-size", dest="gpu_size", type=int, default=1024, help="square image side (default 1024)")
    group.add_argument(
        "--gpu-batch-sizes", dest="gpu_batch_sizes", type=_ints, default=(1, 2, 4), help="setting d (default 1,2,4)"
    )
    group.add_argument("--gpu-runs", dest="gpu_runs", type=int, default=3, help="timed runs per variant (default 3)")
    group.add_argument(
        "--gpu-settings", dest="gpu_settings", type=_settings, default=("a", "b", "c", "d"), help="subset of a,b,c,d"
    )
    group.add_argument(
        "--gpu-tflops", dest="gpu_tflops", type=float, default=DEFAULT_TFLOPS, help="throughput for the floor"
    )
    group.add_argument(
        "--gpu-compile-mode",
        dest="gpu_compile_mode",
        default="max-autotune-no-cudagraphs",
        help="torch.compile mode without CUDA graphs (default max-autotune-no-cudagraphs; 'default' compiles faster)",
    )
    group.add_argument(
        "--gpu-graphs-mode", dest="gpu_graphs_mode", default="reduce-overhead", help="compile mode with CUDA graphs"
    )
    # For tests without a GPU: run the whole suite's logic on the CPU with the tiny model.
    group.add_argument("--gpu-allow-cpu", dest="gpu_allow_cpu", action="store_true", help=argparse.SUPPRESS)
    group.add_argument("--gpu-tiny", dest="gpu_tiny", action="store_true", help=argparse.SUPPRESS)
    group.add_argument("--gpu-compile-backend", dest="gpu_compile_backend", default="inductor", help=argparse.SUPPRESS)


def _variants(args: argparse.Namespace, size: int) -> list[Variant]:
    seed, ensemble = (TINY_SEED, TINY_ENSEMBLE) if args.gpu_tiny else (SEED, ENSEMBLE)
    compiled = FastPath(
        compile=True,
        compile_mode=args.gpu_compile_mode,
        compile_sizes=((size, size),),
        compile_backend=args.gpu_compile_backend,
        guidance_scale=GUIDANCE,
    )
    everything = replace(compiled, channels_last=True, fuse_qkv=True)
    out: list[Variant] = []
    if "a" in args.gpu_settings:
        out.append(Variant("a", "seed: fp32, img2img refiner, unshared", seed, half=False, share=False))
    if "b" in args.gpu_settings:
        out.append(Variant("b", "diffusers fp16 ensemble", ensemble, half=True, share=True))
    if "c" in args.gpu_settings:
        for name, fast in (
            ("channels_last", FastPath(channels_last=True)),
            ("fuse_qkv", FastPath(fuse_qkv=True)),
            (f"compile {args.gpu_compile_mode}", compiled),
            (f"compile {args.gpu_graphs_mode} (CUDA graphs)", replace(compiled, compile_mode=args.gpu_graphs_mode)),
            (f"all: channels_last+fuse_qkv+compile {args.gpu_compile_mode}", everything),
        ):
            out.append(Variant("c", name, ensemble, half=True, share=True, fast=fast))
    if "d" in args.gpu_settings:
        batches = tuple(args.gpu_batch_sizes)
        fast = replace(everything, compile_batches=batches)
        out.append(Variant("d", "fast path, batched", ensemble, half=True, share=True, fast=fast, batches=batches))
    return out


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _build(variant: Variant, tiny: bool, device: torch.device) -> Any:
    """Base and refiner for a variant, on the device, in its precision (VAE fp32 under fp16)."""
    import torch

    dtype = torch.float16 if variant.half and device.type == "cuda" else torch.float32
    if not tiny:
        from cofounder_agent.bench.sdxl import build_pipelines

        return build_pipelines(device, dtype, share=variant.share)
    from cofounder_agent.bench.sdxl import quiet_diffusers
    from cofounder_agent.engine.tiny import build_tiny

    pipes = build_tiny()
    if not variant.share:  # a second build's refiner holds its own text_encoder_2 and VAE
        pipes.refiner = build_tiny().refiner
    with quiet_diffusers():
        for pipe in (pipes.base, pipes.refiner):
            pipe.to(device=device, dtype=dtype)
            pipe.vae.to(torch.float32)  # SDXL's VAE overflows in fp16: decode in fp32 (force_upcast)
            pipe.set_progress_bar_config(disable=True)
    return pipes


def _request(pipes: Any, work: Setting, size: int, batch: int, device: torch.device) -> dict[str, float]:
    """One request of ``batch`` images, each stage timed between device synchronisations."""
    import torch

    from cofounder_agent.engine.schedulers import build_scheduler
    from cofounder_agent.engine.stages.decode import decode_batch
    from cofounder_agent.engine.views import pipeline_view

    base = pipeline_view(type(pipes.base), pipes.base, build_scheduler("euler", pipes.base.scheduler.config))
    refiner = pipeline_view(
        type(pipes.refiner), pipes.refiner, build_scheduler("euler", pipes.refiner.scheduler.config)
    )
    generator = torch.Generator("cpu").manual_seed(0)
    common = {"prompt": [PROMPT] * batch, "guidance_scale": GUIDANCE, "generator": generator, "output_type": "latent"}
    if work.mode == "ensemble":
        base_schedule = {"num_inference_steps": work.steps, "denoising_end": work.switch_at}
        refiner_schedule = {"num_inference_steps": work.steps, "denoising_start": work.switch_at}
    else:
        base_schedule = {"num_inference_steps": work.steps}
        refiner_schedule = {"num_inference_steps": work.refiner_steps, "strength": work.strength}
    _sync(device)
    start = time.perf_counter()
    latents = base(height=size, width=size, **common, **base_schedule).images
    _sync(device)
    after_base = time.perf_counter()
    refined = refiner(image=latents, **common, **refiner_schedule).images
    _sync(device)
    after_refiner = time.perf_counter()
    with warnings.catch_warnings():  # random fp16 weights may give NaN pixels: not measured
        warnings.simplefilter("ignore", RuntimeWarning)
        decode_batch(refiner, refined)  # the refiner's VAE: the seed's own copy in setting a
    _sync(device)
    end = time.perf_counter()
    return {
        "base_s": after_base - start,
        "refiner_s": after_refiner - after_base,
        "decode_s": end - after_refiner,
        "total_s": end - start,
    }


def _floor(variant: Variant, size: int, batch: int, tflops: float, tiny: bool) -> float:
    from cofounder_agent.bench import flops

    modules = None
    if tiny:  # count the tiny model itself: the SDXL floor would say nothing about it
        from cofounder_agent.engine.tiny import build_tiny

        pipes = build_tiny()
        modules = flops.Modules(pipes.base.unet, pipes.refiner.unet, pipes.base.vae)
    return flops.floor_seconds(variant.work, size, tflops, images=batch, modules=modules)


def _measure(variant: Variant, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    import torch

    from cofounder_agent.engine.fastpath import apply_fast_path

    size, tiny = int(args.gpu_size), bool(args.gpu_tiny)
    start = time.perf_counter()
    pipes = _build(variant, tiny, device)
    build_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # the peak then covers weights plus activations
    applied = apply_fast_path(pipes, variant.fast)
    base_steps, refiner_steps = stage_steps(variant.work)
    rows: list[dict[str, Any]] = []
    for index, batch in enumerate(variant.batches):
        first_s = _request(pipes, variant.work, size, batch, device)["total_s"]
        runs = [_request(pipes, variant.work, size, batch, device) for _ in range(max(1, int(args.gpu_runs)))]
        total = median([run["total_s"] for run in runs])
        floor = _floor(variant, size, batch, float(args.gpu_tflops), tiny)
        rows.append(
            {
                "setting": variant.setting,
                "variant": variant.name,
                "dtype": str(next(pipes.base.unet.parameters()).dtype).removeprefix("torch."),
                "batch": batch,
                "steps": f"{base_steps}+{refiner_steps}",
                "build_s": build_s if index == 0 else None,
                "compile_s": applied.get("compile_s") if index == 0 else None,
                "first_s": first_s,
                "s_per_image": total / batch,
                "images_per_s": batch / total,
                "base_it_s": base_steps / median([run["base_s"] for run in runs]),
                "refiner_it_s": refiner_steps / median([run["refiner_s"] for run in runs]),
                "decode_s": median([run["decode_s"] for run in runs]),
                "peak_vram_gb": torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else None,
                "floor_s": floor / batch,
                "floor_frac": floor / total,
            }
        )
    del pipes
    _release(device)
    return rows


def _release(device: torch.device) -> None:
    """Drop a variant's modules, compiled graphs and CUDA graph pools before the next one."""
    import torch

    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run(args: argparse.Namespace) -> Report:
    import torch

    report = Report("gpu")
    if not torch.cuda.is_available() and not args.gpu_allow_cpu:
        report.notes.append(
            "no CUDA device: the gpu suite needs one (torch "
            f"{torch.__version__} sees none; CUDA build: {torch.version.cuda or 'no'}). Nothing was measured;"
            " run it on a machine with an NVIDIA GPU and a CUDA build of torch."
        )
        return report
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.gpu_tiny:
        report.notes.append("full-size SDXL on a CPU is not a GPU benchmark: add --gpu-tiny to test the code path")
        return report
    size = int(args.gpu_size)
    if size % 8:
        raise SystemExit("--gpu-size must be a multiple of 8")
    for variant in _variants(args, size):
        report.rows += _measure(variant, args, device)
    plain = [row for row in report.rows if row["setting"] == "b"]
    for row in report.rows:
        # Speed-up over plain diffusers fp16 (b), per image; > 1 is faster.
        row["vs_b"] = plain[0]["s_per_image"] / row["s_per_image"] if plain else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (test mode)"
    report.summary["device"] = name + (" / tiny model" if args.gpu_tiny else " / SDXL 1.0 architecture, random weights")
    report.notes += [
        "s_per_image: median of the timed runs / images per request; first_s: the first request after build"
        " (and compile); compile_s: torch.compile warm-up of the listed sizes, done before first_s.",
        "base_it_s / refiner_it_s: steps / stage seconds (stage includes its text encoding and latent setup);"
        " decode_s: VAE decode (fp32 VAE under fp16) plus conversion to PIL.",
        f"floor_s: FLOPs of the same work / {args.gpu_tflops:g} TFLOP/s (bench --suite flops);"
        " floor_frac = floor_s / s_per_image.",
        "peak_vram_gb: torch.cuda.max_memory_allocated, reset after each variant's build (weights included).",
    ]
    return report
