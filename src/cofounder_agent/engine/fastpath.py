"""The fast path: opt-in speed switches applied to already-loaded SDXL pipelines.

Every switch keeps the pixels (to rounding; the tests check it on the tiny model):

- ``channels_last``: UNets and VAE in NHWC memory format. Tensor-core convolutions work in
  NHWC; with NCHW tensors cuDNN often transposes around the kernel.
- ``fuse_qkv``: diffusers' ``fuse_qkv_projections``: one matmul for q, k and v (self-attention)
  and one for k and v (cross-attention) instead of three or two narrower ones. The fused
  weights are concatenated copies; the separate ones stay (unfusing needs them), so the
  attention projections' weights are held twice.
- ``compile``: ``torch.compile`` of both UNets, in place (``module.compile``), so the pipelines
  keep a ``UNet2DConditionModel`` and its config. ``dynamic=False`` specialises every shape:
  each (image size, batch) is its own graph, so the common ones are compiled and warmed up here,
  at start, and the recompile limit is raised to hold them all; a size never warmed up compiles
  on its first request (slow once, then cached). Modes ``reduce-overhead`` and
  ``max-autotune`` also capture CUDA graphs (one graph replay per UNet call instead of one
  launch per kernel).

Attention: diffusers 0.42 gives every SDXL attention layer ``AttnProcessor2_0``, which calls
``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels on
CUDA); fused projections switch to ``FusedAttnProcessor2_0``, also SDPA. ``apply_fast_path``
reports the processor classes it found rather than assume them.

Scheduler state on the device: not done, on purpose. diffusers' ``EulerDiscreteScheduler``
moves ``sigmas`` to the CPU in ``set_timesteps`` ("to avoid too much CPU/GPU communication"):
each step reads ``sigmas[step_index]`` and uses it as a Python-side scalar in
``scale_model_input`` and ``step`` (multiplying a CUDA tensor by a CPU 0-d tensor is a kernel
argument, not a copy), and ``step`` branches on ``s_tmin <= sigma <= s_tmax``. With sigmas on
the GPU that comparison would force a host-device sync every step, the opposite of the aim.
``timesteps`` already live on the device and the SDXL pipelines call ``set_begin_index``, so
the per-step loop has no sync (the one ``nonzero().item()`` lookup is skipped); the
remaining ones are per request (the ensemble cut-off count, the final decode's copy to host).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

# torch is imported where it is used: the bench command's parser imports FastPath, and
# building the parser must not load torch.
if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Modes in which inductor captures CUDA graphs (torch._inductor.list_mode_options).
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
# Empty prompts tokenize to a fixed 77-token context, like any prompt: shapes are what matters.
_WARMUP_STEPS = 2


class HasPipelines(Protocol):
    """``LoadedModels``, the tiny model's pipelines, or the benchmarks' full-size SDXL."""

    @property
    def base(self) -> Any: ...

    @property
    def refiner(self) -> Any: ...


@dataclass(frozen=True)
class FastPath:
    """Which speed switches to apply; all off is the plain diffusers path."""

    channels_last: bool = False
    fuse_qkv: bool = False
    compile: bool = False
    compile_mode: str = "max-autotune-no-cudagraphs"
    # Image (height, width) and images-per-request to compile and warm up at start.
    compile_sizes: tuple[tuple[int, int], ...] = ((1024, 1024),)
    compile_batches: tuple[int, ...] = (1,)
    # "inductor" in production; "eager" runs dynamo's capture without code generation (tests).
    compile_backend: str = "inductor"
    guidance_scale: float = 8.0  # > 1: warm up the classifier-free-guidance batch (2x rows)

    @property
    def cuda_graphs(self) -> bool:
        return self.compile and self.compile_backend == "inductor" and self.compile_mode in CUDA_GRAPH_MODES

    @property
    def enabled(self) -> tuple[str, ...]:
        names = [name for name in ("channels_last", "fuse_qkv", "compile") if getattr(self, name)]
        return (*names, "cuda_graphs") if self.cuda_graphs else tuple(names)


@dataclass
class _Modules:
    unets: list[Any] = field(default_factory=list)
    vaes: list[Any] = field(default_factory=list)


def _collect(pipes: list[Any]) -> _Modules:
    """Distinct UNets and VAEs: the refiner usually shares the base's VAE (fuse it once)."""
    modules, seen = _Modules(), set()
    for pipe in pipes:
        for name, bucket in (("unet", modules.unets), ("vae", modules.vaes)):
            module = getattr(pipe, name, None)
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                bucket.append(module)
    return modules


def attention_processors(module: Any) -> list[str]:
    """The distinct attention processor classes of a diffusers model."""
    return sorted({type(p).__name__ for p in module.attn_processors.values()})


def _raise_recompile_limit(needed: int) -> None:
    # One code object (UNet2DConditionModel.forward) serves both UNets and every shape bucket;
    # past the limit dynamo silently falls back to eager, so make room for all of them.
    import torch

    config: Any = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the newer name first; older torch
        if hasattr(config, name):
            setattr(config, name, max(int(getattr(config, name)), needed))
            break
    for name in ("accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, max(int(getattr(config, name)), 4 * needed))
            break


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(models: HasPipelines, fast: FastPath) -> dict[str, float]:
    """Run each (size, batch) through base and refiner once: compiles and autotunes them now.

    Uses throwaway pipeline views with their own schedulers, as requests do, so nothing of the
    shared pipelines' state changes. Returns seconds per bucket.
    """
    from cofounder_agent.engine.schedulers import build_scheduler
    from cofounder_agent.engine.views import pipeline_view

    base_src, refiner_src = models.base, models.refiner
    seconds: dict[str, float] = {}
    device = base_src.unet.device
    for height, width in fast.compile_sizes:
        for batch in fast.compile_batches:
            base = pipeline_view(type(base_src), base_src, build_scheduler("euler", base_src.scheduler.config))
            start = time.perf_counter()
            prompts = [""] * batch
            latents = base(
                prompt=prompts,
                height=height,
                width=width,
                num_inference_steps=_WARMUP_STEPS,
                guidance_scale=fast.guidance_scale,
                output_type="latent",
            ).images
            if refiner_src is not None:
                scheduler = build_scheduler("euler", refiner_src.scheduler.config)
                refiner = pipeline_view(type(refiner_src), refiner_src, scheduler)
                refiner(
                    prompt=prompts,
                    image=latents,
                    num_inference_steps=_WARMUP_STEPS,
                    strength=1.0,
                    guidance_scale=fast.guidance_scale,
                    output_type="latent",
                )
            _sync(device)
            seconds[f"{height}x{width}x{batch}"] = time.perf_counter() - start
    return seconds


def apply_fast_path(models: HasPipelines, fast: FastPath) -> dict[str, Any]:
    """Apply ``fast`` to loaded base and refiner pipelines in place; say what was done.

    Irreversible for the loaded modules (compiled forwards, fused weights): apply once, right
    after loading. The VAE gets ``channels_last`` and ``fuse_qkv`` but is not compiled: it
    runs once per image, and its compile time would not be repaid.
    """
    import torch

    pipes = [pipe for pipe in (models.base, models.refiner) if pipe is not None]
    modules = _collect(pipes)
    applied: dict[str, Any] = {"enabled": list(fast.enabled)}
    # What diffusers set up on its own (expected: AttnProcessor2_0, i.e. SDPA everywhere).
    applied["attention_default"] = sorted(
        {name for m in modules.unets + modules.vaes for name in attention_processors(m)}
    )
    if fast.fuse_qkv:
        for module in modules.unets + modules.vaes:
            module.fuse_qkv_projections()
    if fast.channels_last:
        # Only 4-D tensors (convolution weights) change layout; linear layers are untouched.
        for module in modules.unets + modules.vaes:
            module.to(memory_format=torch.channels_last)
    applied["attention"] = {
        f"{kind}{i}": attention_processors(module)
        for kind, group in (("unet", modules.unets), ("vae", modules.vaes))
        for i, module in enumerate(group)
    }
    if fast.compile:
        buckets = len(fast.compile_sizes) * len(fast.compile_batches)
        _raise_recompile_limit(max(8, 4 * buckets * len(modules.unets)))
        options: dict[str, Any] = {"dynamic": False, "backend": fast.compile_backend}
        if fast.compile_backend == "inductor":
            options["mode"] = fast.compile_mode
        for unet in modules.unets:
            unet.compile(**options)
        applied["compile"] = {**options, "cuda_graphs": fast.cuda_graphs}
        warm = warm_up(models, fast)
        applied["warmup_s"] = warm
        applied["compile_s"] = sum(warm.values())
        log.info("compiled the UNets for %s in %.1f s", ", ".join(warm), applied["compile_s"])
    applied["scheduler"] = "sigmas stay on the CPU (diffusers' choice: no per-step sync)"
    return applied
