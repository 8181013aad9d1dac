"""A1111's pictures in JSON: base64 in and out, init-image resizing, mask filling, PNG info."""

from __future__ import annotations

import io

from PIL import Image, ImageFilter, ImageOps

from cofounder_agent.contract.errors import InvalidField, InvalidImage
from cofounder_agent.contract.infotext import parse
from cofounder_agent.schemas.a1111 import A1111PngInfoResponse
from cofounder_agent.services.pictures import decode_base64, open_picture

# A1111's masking.fill: blur the unmasked picture into the hole, from coarse to fine.
_FILL_PASSES = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))


def resized(picture: Image.Image, size: tuple[int, int], resize_mode: int) -> Image.Image:
    """A1111's resize modes 0 (just resize) and 1 (crop and resize: fill the size, centred)."""
    if picture.size == size:
        return picture
    if resize_mode == 1:
        return ImageOps.fit(picture, size, Image.Resampling.LANCZOS)
    return picture.resize(size, Image.Resampling.LANCZOS)


def as_mask(picture: Image.Image, invert: bool) -> Image.Image:
    """A binary mask, white = repaint (A1111's convention and ours); a drawing in alpha counts."""
    if picture.mode in ("RGBA", "LA") and picture.convert("L").getextrema()[0] == picture.convert("L").getextrema()[1]:
        grey = picture.getchannel("A")
    else:
        grey = picture.convert("L")
    mask = grey.point(lambda value: 255 if value >= 128 else 0)
    return ImageOps.invert(mask) if invert else mask


def filled(picture: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's inpainting_fill 0 ("fill"): the masked area pre-filled with the blurred colours around it."""
    keep = ImageOps.invert(mask)
    source = Image.new("RGBa", picture.size)
    source.paste(picture.convert("RGBA").convert("RGBa"), mask=keep)
    out = Image.new("RGBA", picture.size)
    for radius, repeats in _FILL_PASSES:
        blurred = source.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            out.alpha_composite(blurred)
    return Image.composite(out.convert("RGB"), picture.convert("RGB"), mask)


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _picture(value: str, field: str) -> Image.Image:
    return open_picture(decode_base64(value, field), field)


def init_pictures(
    init_images: list[str], mask: str | None, size: tuple[int, int], resize_mode: int, *, invert: bool, fill: bool
) -> tuple[list[bytes], bytes | None]:
    """img2img's pictures as PNGs of ``size``, and its binary mask (None: no mask).

    ``fill``: A1111's inpainting_fill 0, the masked area pre-filled from its surroundings.
    """
    pictures = [
        resized(_picture(value, f"init_images.{index}").convert("RGB"), size, resize_mode)
        for index, value in enumerate(init_images)
    ]
    if not mask:
        return [png_bytes(picture) for picture in pictures], None
    binary = as_mask(resized(_picture(mask, "mask"), size, resize_mode), invert)
    if binary.getbbox() is None:
        raise InvalidField("mask", "marks nothing to repaint (white = repaint; see inpainting_mask_invert)")
    if fill:
        pictures = [filled(picture, binary) for picture in pictures]
    return [png_bytes(picture) for picture in pictures], png_bytes(binary)


def png_info(value: str) -> A1111PngInfoResponse:
    """A picture's ``parameters`` text and its other text chunks, as A1111's /png-info answers."""
    if not value.strip():
        return A1111PngInfoResponse(info="", items={}, parameters={})
    data = decode_base64(value, "image")
    try:
        with Image.open(io.BytesIO(data)) as picture:
            chunks = dict(picture.info)
    except Exception as exc:  # Pillow raises many types for bad data
        raise InvalidImage("image", f"not a decodable picture ({type(exc).__name__})") from None
    text = chunks.pop("parameters", "")
    info = text if isinstance(text, str) else ""
    items = {key: value for key, value in chunks.items() if isinstance(value, str)}
    return A1111PngInfoResponse(info=info, items=items, parameters=parse(info) if info else {})
