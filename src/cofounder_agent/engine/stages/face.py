"""face_restore: find faces, align each to 512², restore it with a face model, paste it back feathered.

Detection uses OpenCV's Haar cascades, which ship inside ``opencv-python`` 4.x (the data
files are part of the wheel: nothing is downloaded at run time): the frontal-face cascade
finds the boxes, the eye cascade the eyes inside each box. Two eyes give an exact similarity
transform onto the 512² FFHQ template GFPGAN and RestoreFormer were trained on (eyes level,
at a fixed distance); without them the eyes are assumed where a Haar box puts them.

The face model is a spandrel ``FaceSR`` model (GFPGAN or RestoreFormer) from a
``.safetensors`` file in the models dir; see :func:`spandrel_restorer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from cofounder_agent.contract.checks import checkpoint

CROP = 512
# Eye centres of the 512² FFHQ template (facexlib's five-point template, eyes only).
TEMPLATE_EYES = np.array([[192.98, 239.94], [318.90, 240.19]])
# Where the eyes sit in a Haar frontal-face box, as fractions of its width and height.
BOX_EYES = np.array([[0.31, 0.40], [0.69, 0.40]])
# The pasted face fades in over this many pixels of the 512² crop's border.
FEATHER = 40

Restorer = Callable[[np.ndarray], np.ndarray]  # 512x512x3 uint8 RGB in, the same out


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, width, height in the picture
    eyes: np.ndarray  # 2x2: left then right eye centre (x, y), in the picture
    eyes_found: bool

    def to_crop(self) -> np.ndarray:
        """The 2x3 similarity taking the picture to the aligned 512² crop (eyes onto the template)."""
        src, dst = self.eyes[1] - self.eyes[0], TEMPLATE_EYES[1] - TEMPLATE_EYES[0]
        scale = float(np.hypot(*dst) / max(np.hypot(*src), 1e-6))
        angle = math.atan2(dst[1], dst[0]) - math.atan2(src[1], src[0])
        rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        shift = TEMPLATE_EYES[0] - rotation @ self.eyes[0]
        return np.hstack([rotation, shift[:, None]])


def _cascade(name: str) -> Any:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)  # type: ignore[attr-defined]
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {name} is missing: face detection needs opencv-python 4.x")
    return cascade


def detect_faces(image: Image.Image, max_faces: int = 8) -> list[Face]:
    """Frontal faces, largest first, each with its eyes (found, or placed by the box)."""
    gray = cv2.equalizeHist(cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY))
    smallest = max(32, min(gray.shape) // 20)
    boxes = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(smallest, smallest)
    )
    eye_cascade = _cascade("haarcascade_eye.xml")
    faces: list[Face] = []
    for x, y, w, h in sorted((tuple(int(v) for v in b) for b in boxes), key=lambda b: -b[2] * b[3])[:max_faces]:
        guess = np.array([x, y]) + BOX_EYES * np.array([w, h])
        # Eyes sit in the upper half; keep the two nearest the guessed spots, one on each side.
        top = gray[y : y + int(h * 0.6), x : x + w]
        found = eye_cascade.detectMultiScale(top, scaleFactor=1.1, minNeighbors=5, minSize=(w // 8, w // 8))
        centres = [np.array([x + ex + ew / 2, y + ey + eh / 2]) for ex, ey, ew, eh in found]
        left = [c for c in centres if c[0] < x + w / 2]
        right = [c for c in centres if c[0] >= x + w / 2]
        if left and right:
            eyes = np.array(
                [
                    min(left, key=lambda c: float(np.hypot(*(c - guess[0])))),
                    min(right, key=lambda c: float(np.hypot(*(c - guess[1])))),
                ]
            )
            faces.append(Face((x, y, w, h), eyes, eyes_found=True))
        else:
            faces.append(Face((x, y, w, h), guess, eyes_found=False))
    return faces


def _feather_mask() -> np.ndarray:
    """1 inside the crop, fading to 0 over ``FEATHER`` pixels at its border."""
    ramp = np.minimum(np.arange(CROP) + 0.5, CROP - np.arange(CROP) - 0.5) / FEATHER
    edge = np.clip(ramp, 0.0, 1.0)
    return np.asarray(np.minimum.outer(edge, edge), dtype=np.float32)


def restore_faces(image: Image.Image, faces: list[Face], restore: Restorer, strength: float) -> Image.Image:
    """Restore each face in its aligned crop and blend it back: ``strength`` 1 takes the restored face."""
    canvas = np.asarray(image.convert("RGB")).astype(np.float32)
    size = (canvas.shape[1], canvas.shape[0])
    mask = _feather_mask()
    for face in faces:
        checkpoint()
        matrix = face.to_crop()
        crop = cv2.warpAffine(canvas, matrix, (CROP, CROP), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        restored = restore(np.clip(np.rint(crop), 0, 255).astype(np.uint8)).astype(np.float32)
        back = cv2.invertAffineTransform(matrix)
        pasted = cv2.warpAffine(restored, back, size, flags=cv2.INTER_LINEAR)
        # Outside the crop the warped mask is exactly 0: those pixels are left as they were.
        weight = cv2.warpAffine(mask, back, size, flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None] * strength
        canvas = canvas + weight * (pasted - canvas)
    return Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))


def spandrel_restorer(descriptor: Any) -> Restorer:
    """A restorer over a spandrel ``FaceSR`` model (GFPGAN, RestoreFormer)."""
    if descriptor.purpose != "FaceSR":
        raise ValueError(f"{descriptor.architecture.id} is not a face restoration model")
    # spandrel's RestoreFormer maps [0, 1] itself; its GFPGAN is the bare network, which
    # works in [-1, 1] (as facexlib feeds it).
    signed = descriptor.architecture.id == "GFPGAN"

    def restore(crop: np.ndarray) -> np.ndarray:
        pixels = torch.from_numpy(crop.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
        pixels = pixels.to(descriptor.device)
        with torch.no_grad():
            out = descriptor(pixels * 2 - 1 if signed else pixels)
        out = (out + 1) / 2 if signed else out
        result = out.clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
        return np.asarray(np.rint(result * 255), dtype=np.uint8)

    return restore
