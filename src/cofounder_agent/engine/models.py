"""Find and load the SDXL base and refiner once, sharing the refiner's text_encoder_2 and VAE."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import AutoencoderKL, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
from huggingface_hub import try_to_load_from_cache

from cofounder_agent.contract.checks import checkpoint
from cofounder_agent.contract.params import LoadOptions, Precision
from cofounder_agent.engine.device import DTYPES, DeviceInfo, choose_precision, detect_device
from cofounder_agent.engine.tiny import build_tiny

log = logging.getLogger(__name__)

SDXL_BASE_ID = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_REFINER_ID = "stabilityai/stable-diffusion-xl-refiner-1.0"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")

SourceKind = Literal["tiny", "hub", "dir", "single_file", "none"]

# SDXL's own VAE tile: a 1024 px picture (128 latent) or smaller is encoded and decoded in one
# piece, exactly as without tiling; a larger one tile by tile, so its time and memory grow
# with the number of tiles, not with the square of its side.
VAE_TILE_PX = 1024


class ModelSourceError(ValueError):
    """A model setting that names nothing loadable, said in words a user can act on."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from, resolved from the user's setting."""

    spec: str
    kind: SourceKind
    location: str
    note: str | None = None


@dataclass
class LoadedModels:
    """The loaded pipelines plus the facts health and metadata report."""

    base: StableDiffusionXLPipeline
    refiner: StableDiffusionXLImg2ImgPipeline | None
    device: DeviceInfo
    precision: Precision
    base_source: ModelSource
    refiner_source: ModelSource
    vae_dtype: str

    @property
    def is_tiny(self) -> bool:
        return self.base_source.kind == "tiny"


def _is_cached(repo_id: str, marker: str = "model_index.json") -> bool:
    return isinstance(try_to_load_from_cache(repo_id, marker), str)


def resolve_vae(spec: str, allow_download: bool) -> str:
    """An fp16-safe VAE: a folder with ``config.json``, or a repo id in the local cache."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSourceError(f"IMAGE_VAE={spec}: not a diffusers VAE folder (no config.json)")
        return str(path.resolve())
    if _HUB_ID.match(spec) and (allow_download or _is_cached(spec, "config.json")):
        return spec
    raise ModelSourceError(
        f"IMAGE_VAE={spec}: no such folder, and not a repo id in the local Hugging Face cache"
        + ("" if allow_download else " (downloads are off: IMAGE_ALLOW_DOWNLOAD)")
    )


def resolve_source(spec: str, default_hub_id: str, allow_download: bool) -> ModelSource:
    """Turn ``auto|tiny|none|hub id|folder|file.safetensors`` into a concrete source or a clear error."""
    spec = spec.strip()
    if spec in ("tiny", "none"):
        return ModelSource(spec, spec, spec)  # type: ignore[arg-type]
    if spec == "auto":
        if _is_cached(default_hub_id):
            return ModelSource(spec, "hub", default_hub_id, "found in the Hugging Face cache")
        return ModelSource(spec, "tiny", "tiny", f"{default_hub_id} is not in the local Hugging Face cache")
    path = Path(spec).expanduser()
    if spec.endswith((".ckpt", ".bin", ".pt", ".pth")):
        raise ModelSourceError(f"{spec}: only .safetensors checkpoints are loaded (pickle files can run code)")
    if spec.endswith(".safetensors"):
        if not path.is_file():
            raise ModelSourceError(f"{spec}: no such checkpoint file")
        return ModelSource(spec, "single_file", str(path.resolve()))
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelSourceError(f"{spec}: not a diffusers folder (no model_index.json)")
        return ModelSource(spec, "dir", str(path.resolve()))
    if _HUB_ID.match(spec) and not spec.startswith("."):
        if not allow_download and not _is_cached(spec):
            raise ModelSourceError(
                f"{spec} is not in the local Hugging Face cache and downloads are off "
                "(set IMAGE_ALLOW_DOWNLOAD=true to fetch it once)"
            )
        return ModelSource(spec, "hub", spec)
    raise ModelSourceError(f"{spec}: no such folder or file, and not a Hugging Face repo id")


def _variant(location: str, dtype: torch.dtype) -> str | None:
    """Prefer the repo's fp16 weight files for half precision when they are there."""
    if dtype == torch.float32:
        return None
    folder = Path(location)
    if folder.is_dir():
        return "fp16" if any(folder.glob("unet/*.fp16.safetensors")) else None
    cached = try_to_load_from_cache(location, "unet/diffusion_pytorch_model.fp16.safetensors")
    return "fp16" if isinstance(cached, str) else None


def _load(
    cls: Any, source: ModelSource, dtype: torch.dtype, config: str | None, parts: dict[str, Any], offline: bool
) -> Any:
    """Load one pipeline from a folder, a repo id (cache only when offline) or a single file."""
    if source.kind == "single_file":
        return cls.from_single_file(source.location, dtype=dtype, config=config, local_files_only=offline, **parts)
    return cls.from_pretrained(
        source.location,
        dtype=dtype,
        use_safetensors=True,
        local_files_only=offline,
        variant=_variant(source.location, dtype),
        **parts,
    )


def _resolve_refiner(opts: LoadOptions, base_source: ModelSource) -> ModelSource:
    if opts.refiner_model == "auto":
        if base_source.kind == "tiny":
            return ModelSource("auto", "tiny", "tiny", "follows the tiny base")
        if _is_cached(SDXL_REFINER_ID):
            return ModelSource("auto", "hub", SDXL_REFINER_ID, "found in the Hugging Face cache")
        return ModelSource("auto", "none", "none", f"{SDXL_REFINER_ID} is not in the local Hugging Face cache")
    source = resolve_source(opts.refiner_model, SDXL_REFINER_ID, opts.allow_download)
    if (source.kind == "tiny") != (base_source.kind == "tiny") and source.kind != "none":
        raise ModelSourceError("the tiny refiner only pairs with the tiny base (IMAGE_MODEL=tiny)")
    return source


def _load_pair(
    opts: LoadOptions, base_source: ModelSource, refiner_source: ModelSource, dtype: torch.dtype, vae: dict[str, Any]
) -> tuple[Any, Any, ModelSource, ModelSource]:
    """Load base and refiner from their sources; ``auto`` falls back to tiny if cached SDXL fails."""
    if base_source.kind != "tiny":
        try:
            offline = not opts.allow_download
            base = _load(StableDiffusionXLPipeline, base_source, dtype, opts.single_file_config, vae, offline)
            # The documented SDXL recipe: the refiner reuses the base's text_encoder_2 and VAE.
            shared = {"text_encoder_2": base.text_encoder_2, "vae": base.vae}
            refiner = (
                None
                if refiner_source.kind == "none"
                else _load(
                    StableDiffusionXLImg2ImgPipeline,
                    refiner_source,
                    dtype,
                    opts.refiner_single_file_config,
                    shared,
                    offline,
                )
            )
            return base, refiner, base_source, refiner_source
        except (OSError, ValueError) as exc:
            if opts.model != "auto":
                raise
            # auto found SDXL in the cache but it does not load (partial download, fp16-only
            # files under fp32, ...): serve with the tiny model rather than not at all.
            log.error("cached SDXL failed to load (%s: %s); falling back to the tiny model", type(exc).__name__, exc)
            base_source = ModelSource("auto", "tiny", "tiny", f"cached SDXL failed to load ({type(exc).__name__})")
            refiner_source = ModelSource("auto", "tiny", "tiny", "follows the tiny base")
    tiny = build_tiny()
    refiner = tiny.refiner if refiner_source.kind == "tiny" else None
    for pipe in (tiny.base, refiner):
        if pipe is not None and "vae" in vae:
            pipe.vae = vae["vae"]
    return tiny.base, refiner, base_source, refiner_source


def load_models(opts: LoadOptions) -> LoadedModels:
    """Load base and refiner once, on the chosen device and precision."""
    # 1. Device and precision (the seed's VRAM rule).
    device = detect_device(opts.device)
    precision = choose_precision(opts.precision, device, opts.fp32_min_vram_gb)
    dtype = DTYPES[precision]
    vram = f", VRAM {device.vram_gb:.1f} GB" if device.vram_gb else ""
    log.info("device %s (%s)%s, precision %s", device.device, device.name, vram, precision)

    # 2. Load once from the resolved sources; the refiner shares text_encoder_2 and the VAE.
    vae: dict[str, Any] = {}
    if opts.vae:
        vae["vae"] = AutoencoderKL.from_pretrained(
            resolve_vae(opts.vae, opts.allow_download),
            dtype=dtype,
            use_safetensors=True,
            local_files_only=not opts.allow_download,
        )
    base_source = resolve_source(opts.model, SDXL_BASE_ID, opts.allow_download)
    refiner_source = _resolve_refiner(opts, base_source)
    base, refiner, base_source, refiner_source = _load_pair(opts, base_source, refiner_source, dtype, vae)
    if base_source.kind == "tiny":
        log.warning(
            "*** USING THE BUILT-IN TINY MODEL (random weights): images are noise patterns, "
            "not SDXL. %s. Set IMAGE_MODEL to an SDXL folder, hub id or .safetensors file. ***",
            base_source.note or "IMAGE_MODEL=tiny",
        )
    for pipe in (base, refiner):
        if pipe is None:
            continue
        # Loaded weights already have the chosen dtype; the built-in model is built in fp32.
        if base_source.kind == "tiny" and dtype != torch.float32:
            pipe.to(dtype=dtype)
        pipe.to(device.device)

    # 3. The SDXL VAE overflows in fp16: keep it in fp32 unless a fixed VAE was configured.
    if dtype == torch.float16 and base.vae.config.force_upcast and not opts.vae:
        base.vae.to(torch.float32)
    for pipe_vae in {id(p.vae): p.vae for p in (base, refiner) if p is not None}.values():
        prepare_vae(pipe_vae)
    vae_dtype = str(next(base.vae.parameters()).dtype).removeprefix("torch.")
    return LoadedModels(base, refiner, device, precision, base_source, refiner_source, vae_dtype)


def _check_before_block(module: Any, args: Any) -> None:
    checkpoint()


def prepare_vae(vae: AutoencoderKL) -> None:
    """Tile pictures larger than SDXL's 1024 px, and let the current job's check stop the VAE between blocks.

    Hooks only on the VAE (never the UNets, which may be compiled); outside an engine call the
    check is unset and the hooks do nothing.
    """
    vae.enable_tiling()
    vae.tile_sample_min_size = VAE_TILE_PX
    vae.tile_latent_min_size = VAE_TILE_PX // 2 ** (len(vae.config.block_out_channels) - 1)
    blocks = [*vae.encoder.down_blocks, vae.encoder.mid_block, vae.decoder.mid_block, *vae.decoder.up_blocks]
    for block in blocks:
        if block is not None:
            block.register_forward_pre_hook(_check_before_block)
