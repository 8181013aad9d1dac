"""Pictures clients send in a request body (base64 in JSON, or multipart bytes), decoded once.

A1111's and OpenAI's routes both take pictures; each refusal is an ``InvalidImage`` naming the
request's own field, and a picture is decoded fully here so a truncated file never reaches a job.
"""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image

from cofounder_agent.contract.errors import InvalidImage
from cofounder_agent.storage import MAX_PIXELS

# Pillow's names for what the image store keeps (MPO: a JPEG with extra frames, as phones write).
WEB_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP"})


def decode_base64(value: str, field: str) -> bytes:
    """The bytes of a base64 picture, with or without a ``data:image/...;base64,`` prefix.

    Lenient as A1111 is (``b64decode`` without ``validate``): clients send line breaks.
    """
    text = value.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise InvalidImage(field, "not base64 (raw, or a data:image/...;base64, URL)") from None


def open_picture(data: bytes, field: str, formats: frozenset[str] | None = None) -> Image.Image:
    """Decode ``data`` fully; refuse what is not a picture, too large, or (with ``formats``) of another format."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if formats is not None and probe.format not in formats:
                raise InvalidImage(field, "must be a PNG, JPEG or WebP picture")
            if probe.width * probe.height > MAX_PIXELS:  # checked before decoding: a bomb is never unpacked
                raise InvalidImage(field, f"{probe.width}x{probe.height} is larger than {MAX_PIXELS} pixels")
            probe.load()
            return probe.copy()
    except InvalidImage:
        raise
    except Exception as exc:  # Pillow raises many types for bad data
        raise InvalidImage(field, f"not a decodable picture ({type(exc).__name__})") from None
