"""Full-size SDXL 1.0 with random weights, built from the shipped component configurations.

No weights can be downloaded where the benchmarks are written, and none are needed to count
FLOPs or to time kernels: the architectures (hence the work per step and the memory) are fixed
by the configurations in ``engine/sdxl_configs``. Built under ``torch.device("meta")`` nothing is
allocated at all, which is how the flops suite counts a 2.6 B-parameter UNet on a laptop.

torch, diffusers and transformers are imported inside the functions: suite modules are imported
when the CLI parser is built, and ``cofounder-agent --help`` must not load torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

UNetKind = Literal["base", "refiner"]
CONFIG_FILES = {
    "base": "base-unet.json",
    "refiner": "refiner-unet.json",
    "vae": "vae.json",
    "text_encoder": "text-encoder.json",
    "text_encoder_2": "text-encoder-2.json",
    "scheduler": "scheduler.json",
}
CONTEXT_TOKENS = 77  # CLIP's context length: every prompt is padded to it


def load_config(name: str) -> dict[str, Any]:
    """One shipped configuration by component name (a key of ``CONFIG_FILES``)."""
    text = resources.files("cofounder_agent.engine").joinpath(f"sdxl_configs/{CONFIG_FILES[name]}").read_text()
    config: dict[str, Any] = json.loads(text)
    return config


def time_id_count(kind: UNetKind) -> int:
    """Micro-conditioning numbers: size, crop and target size (6) or aesthetic score (5)."""
    return 6 if kind == "base" else 5


def pooled_dim(config: Any, kind: UNetKind) -> int:
    """Width of the pooled text embedding a UNet's add-embedding expects (1280 for both SDXL UNets)."""
    return int(config["projection_class_embeddings_input_dim"]) - time_id_count(kind) * int(
        config["addition_time_embed_dim"]
    )


def build_unet(kind: UNetKind) -> Any:
    """The base or refiner UNet; on whatever device the caller's ``torch.device`` context says."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_config(load_config(kind)).eval()


def build_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_config(load_config("vae")).eval()


def build_text_encoder() -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**_text_config("text_encoder"))).eval()


def build_text_encoder_2() -> Any:
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(CLIPTextConfig(**_text_config("text_encoder_2"))).eval()


def _text_config(name: str) -> dict[str, Any]:
    # "architectures" is metadata of the published file, not a CLIPTextConfig field.
    return {key: value for key, value in load_config(name).items() if key != "architectures"}


def unet_inputs(unet: Any, kind: UNetKind, batch: int, height: int, width: int) -> dict[str, Any]:
    """Inputs of one UNet call as the SDXL pipelines make them, on the UNet's device and dtype.

    ``batch`` counts UNet rows: classifier-free guidance doubles the images in a request. Works
    for any UNet with SDXL's layout (the tiny model's too): widths come from ``unet.config``.
    """
    import torch

    param = next(unet.parameters())
    options = {"device": param.device, "dtype": param.dtype}
    config = unet.config
    return {
        "sample": torch.randn(batch, config.in_channels, height // 8, width // 8, **options),
        "timestep": torch.tensor(999.0, device=param.device),
        "encoder_hidden_states": torch.randn(batch, CONTEXT_TOKENS, config.cross_attention_dim, **options),
        "added_cond_kwargs": {
            "text_embeds": torch.randn(batch, pooled_dim(config, kind), **options),
            "time_ids": torch.randn(batch, time_id_count(kind), **options),
        },
        "return_dict": False,
    }


@dataclass
class SdxlPipelines:
    """Full-size base and refiner pipelines; ``shared`` says whether the refiner reuses modules."""

    base: Any  # StableDiffusionXLPipeline
    refiner: Any  # StableDiffusionXLImg2ImgPipeline
    shared: bool


@contextmanager
def quiet_diffusers() -> Iterator[None]:
    """Silence diffusers' advice to load in a dtype rather than cast: there is nothing to load."""
    from diffusers.utils import logging as diffusers_logging

    previous = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(previous)


def build_pipelines(device: str | torch.device, dtype: torch.dtype, *, share: bool = True) -> SdxlPipelines:
    """Assemble base and refiner pipelines with random weights on ``device`` in ``dtype``.

    ``share=True`` is diffusers' documented recipe and the service's loader: the refiner reuses
    the base's ``text_encoder_2`` and VAE. ``share=False`` is the seed script, which loaded the
    refiner from its own folder and so held a second text_encoder_2 (695 M parameters) and VAE.
    The SDXL VAE stays in fp32 when the rest is half precision: it overflows in fp16
    (``force_upcast``), and the service's loader keeps it in fp32 the same way.
    """
    import torch
    from diffusers import EulerDiscreteScheduler

    from cofounder_agent.engine.tiny import assemble_sdxl, build_tokenizer

    # Initialising on the device itself: 2.6 B random parameters take minutes on a CPU.
    with torch.device(device):
        text_encoder, text_encoder_2 = build_text_encoder(), build_text_encoder_2()
        unet, refiner_unet, vae = build_unet("base"), build_unet("refiner"), build_vae()
        own_encoder, own_vae = (text_encoder_2, vae) if share else (build_text_encoder_2(), build_vae())
    with quiet_diffusers():
        for module in (text_encoder, text_encoder_2, unet, refiner_unet, own_encoder):
            module.to(dtype=dtype)
        for module in {id(vae): vae, id(own_vae): own_vae}.values():
            module.to(dtype=torch.float32 if dtype == torch.float16 else dtype)
    # The byte-level tokenizer's 514 ids lie inside CLIP's 49408-token vocabulary; with random
    # weights which ids a prompt becomes changes nothing measured here.
    tokenizer = build_tokenizer()
    scheduler = load_config("scheduler")
    pipes = assemble_sdxl(
        text_encoder,
        text_encoder_2,
        tokenizer,
        unet,
        refiner_unet,
        vae,
        lambda: EulerDiscreteScheduler.from_config(scheduler),
        refiner_text_encoder_2=own_encoder,
        refiner_vae=own_vae,
        add_watermarker=False,
    )
    base, refiner = pipes.base, pipes.refiner
    for pipe in (base, refiner):
        pipe.set_progress_bar_config(disable=True)
    return SdxlPipelines(base=base, refiner=refiner, shared=share)


def parameter_count(module: Any) -> int:
    return sum(int(p.numel()) for p in module.parameters())
