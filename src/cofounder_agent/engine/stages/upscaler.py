"""Learned upscalers (ESRGAN-class models) loaded with spandrel from ``.safetensors`` files.

spandrel (MIT core only, not spandrel_extra_arches) detects the architecture and the scale
from the weights. It is an optional dependency (``pip install 'cofounder-agent[upscalers]'``):
it imports torchvision, which has no CPU build for the pinned torch on the CPU machines this
project is tested on. Without it the upscale stage falls back to its input, saying why.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cofounder_agent.engine.stages.upscale import process_tiles

log = logging.getLogger(__name__)
MIN_TILE = 64


def model_path(models_dir: Path, name: str, kind: str = "upscaler") -> Path:
    """The model file ``name`` inside the models dir: a plain file name, never a path."""
    if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".safetensors"):
        raise ValueError(f"{kind} {name!r}: give the name of a .safetensors file in the models dir")
    path = models_dir / name
    if not path.is_file() or path.is_symlink():
        raise ValueError(f"{kind} {name!r}: no such file in the models dir")
    return path


@lru_cache(maxsize=4)
def load_model(path: Path, device: str) -> Any:
    """Load once: spandrel reads the architecture (and scale) from the weights."""
    from spandrel import ImageModelDescriptor, ModelLoader

    descriptor = ModelLoader(device=torch.device(device)).load_from_file(path)
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ValueError(f"{path.name} is not an image-to-image model")
    descriptor.eval()
    return descriptor


def _run(descriptor: Any, tile: Image.Image) -> Image.Image:
    pixels = torch.from_numpy(np.asarray(tile.convert("RGB"), dtype=np.float32) / 255.0)
    batch = pixels.permute(2, 0, 1).unsqueeze(0).to(descriptor.device)
    with torch.no_grad():
        out = descriptor(batch).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
    return Image.fromarray(np.rint(out * 255).astype(np.uint8))


def upscale_with_model(descriptor: Any, image: Image.Image, factor: int, tile: int, overlap: int) -> Image.Image:
    """Upscale by ``factor`` in tiles, halving the tile on CUDA out-of-memory.

    A x4 model asked for x2 (or a x2 model for x4) has each tile's output fitted to ``factor``
    with Lanczos before the tiles are blended, so memory follows the result's size, never the
    model's larger one (a x4 model on a 4096 px picture would otherwise build a 16384 px one).
    """

    def work(piece: Image.Image) -> Image.Image:
        out = _run(descriptor, piece)
        target = (piece.width * factor, piece.height * factor)
        return out if out.size == target else out.resize(target, Image.Resampling.LANCZOS)

    while True:
        try:
            return process_tiles(image, tile, overlap, work, scale=factor)
        except torch.cuda.OutOfMemoryError:
            if tile // 2 < MIN_TILE:
                raise
            torch.cuda.empty_cache()
            tile, overlap = tile // 2, overlap // 2
            log.warning("upscaler out of memory: retrying with %s px tiles", tile)
