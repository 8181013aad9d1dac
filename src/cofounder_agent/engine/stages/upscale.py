"""Tiled processing: work on overlapping tiles, feathered back together.

The upscale stage's weight-free path (``stages/upscale.py``) is the "hires fix": resizing adds
pixels but no detail; a gentle refiner pass over overlapping tiles adds detail at the new size
without the memory of one huge latent. The tiler also drives learned upscalers
(``upscaler.py``), whose tiles come back enlarged. The tiles themselves are cut by
``contract.tiles``, which the web tier counts steps with.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from cofounder_agent.contract.checks import checkpoint
from cofounder_agent.contract.tiles import tiles


def _ramp(size: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """Blend weights along one axis: rise over the overlap except at the picture's edges."""
    weights = np.ones(size, dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1]
    if not at_start and overlap:
        weights[:overlap] = ramp
    if not at_end and overlap:
        weights[-overlap:] = np.minimum(weights[-overlap:], ramp[::-1])
    return weights


def process_tiles(
    image: Image.Image, tile: int, overlap: int, work: Callable[[Image.Image], Image.Image], scale: int = 1
) -> Image.Image:
    """Run ``work`` on each tile and feather the results back together (``work`` may enlarge by ``scale``)."""
    width, height = image.size
    total = np.zeros((height * scale, width * scale, 3), dtype=np.float32)
    weight = np.zeros((height * scale, width * scale, 1), dtype=np.float32)
    for left, top, right, bottom in tiles(width, height, tile, overlap):
        checkpoint()  # between tiles: a big picture's tiles add up to more than a job's time
        done = np.asarray(work(image.crop((left, top, right, bottom))).convert("RGB"), dtype=np.float32)
        wy = _ramp((bottom - top) * scale, overlap * scale, top == 0, bottom == height)
        wx = _ramp((right - left) * scale, overlap * scale, left == 0, right == width)
        mask = (wy[:, None] * wx[None, :])[..., None]
        box = (slice(top * scale, bottom * scale), slice(left * scale, right * scale))
        total[box] += done * mask
        weight[box] += mask
    blended = total / np.maximum(weight, 1e-6)
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))
