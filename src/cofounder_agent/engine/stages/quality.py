"""A real, offline, no-reference quality score: PIQE (Venkatanath et al., 2015).

PIQE needs no learned data: it measures distortion (blockiness, noise) in the picture's
active blocks, on a 0 (best) to 100 (worst) scale. It is made for natural pictures; a flat
or cartoon-like picture scores poorly whatever its sharpness.
"""

from __future__ import annotations

import numpy as np
from PIL.Image import Image
from pypiqe import piqe


def piqe_score(image: Image) -> float:
    """PIQE of ``image``: 0 is best, 100 worst."""
    score, _, _, _ = piqe(np.asarray(image.convert("RGB"))[:, :, ::-1])  # pypiqe expects BGR
    return float(score)


def quality(image: Image) -> float:
    """Quality in [0, 1], higher is better: ``1 - PIQE / 100``."""
    return round(1.0 - piqe_score(image) / 100.0, 4)
