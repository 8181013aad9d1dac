"""Image files by id under the data directory; never by a user-given path."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from cofounder_agent.contract.infotext import infotext

log = logging.getLogger(__name__)
# Ids are ours (uuid4 hex); anything else — "../x", "%2e%2e", absolute paths — is simply unknown.
_IMAGE_ID = re.compile(r"^[0-9a-f]{32}$")
_MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_EXTENSIONS = {media_type: ext for ext, media_type in _MEDIA_TYPES.items()}
# The names the store writes for an image: its file, its sidecar and its thumbnail.
_OWN_NAME = re.compile(r"^([0-9a-f]{32})\.(?:png|jpg|webp|json|thumb\.png)$")
# MPO is how Pillow opens multi-picture JPEGs from phone cameras: still a JPEG file.
_PIL_FORMATS = {"PNG": "png", "JPEG": "jpg", "MPO": "jpg", "WEBP": "webp"}
# Refuse pictures beyond 64 megapixels before decoding them (decompression bombs).
MAX_PIXELS = 8192 * 8192
THUMBNAIL_SIZE = (256, 256)
# Every process of a deployment may share this directory (docs/scaling.md): what one of them
# finds half-written at start may be another's write in progress, not a crash's leftover.
# Older than this, it is a leftover.
LEFTOVER_AGE_S = 3600.0
VOLUME_ID_FILE = ".volume-id"
# The PNG text chunk with this service's own metadata (JSON); ``parameters`` holds A1111's infotext.
METADATA_CHUNK = "cofounder-agent"


class UnsupportedImage(ValueError):
    """Bytes that are not a PNG, JPEG or WebP image Pillow can decode."""


@dataclass(frozen=True)
class StoredImage:
    id: str
    path: Path
    media_type: str
    width: int
    height: int


def encode_png(image: Image.Image, metadata: dict[str, Any]) -> bytes:
    """Encode ``image`` as PNG carrying ``metadata``: as JSON in a ``cofounder-agent`` text chunk,
    and as A1111's infotext in ``parameters`` (what A1111 tools read) when denoising made it."""
    info = PngImagePlugin.PngInfo()
    text = infotext(metadata, image.size)
    if text is not None:
        info.add_text("parameters", text)
    info.add_text(METADATA_CHUNK, json.dumps(metadata, sort_keys=True))
    info.add_text("Software", "cofounder-agent")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


class ImageStore:
    """Write images atomically as ``<id>.<ext>`` with a ``<id>.json`` metadata sidecar."""

    def __init__(self, root: Path) -> None:
        self.dir = (root / "images").resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.dir.glob(".tmp-*"):  # from writes or zips a crash interrupted
            if _age_s(leftover) > LEFTOVER_AGE_S:
                leftover.unlink(missing_ok=True)
        self.volume_id = self._volume_id()

    def _volume_id(self) -> str:
        """This directory's identity, made by its first user: processes that share it agree on it.

        A worker reports its own, so an API replica can tell a worker that writes into another
        directory (a missing network mount) before clients meet images it cannot serve.
        """
        path = self.dir / VOLUME_ID_FILE
        try:
            with path.open("x", encoding="ascii") as handle:  # exclusive: one process makes it
                handle.write(uuid.uuid4().hex)
        except FileExistsError:
            pass
        for _ in range(50):  # another process made it an instant ago and may not have written yet
            if value := path.read_text(encoding="ascii").strip():
                return value
            time.sleep(0.01)
        raise RuntimeError(f"{path} is empty: remove it and start again")

    def save_png(self, image: Image.Image, metadata: dict[str, Any]) -> StoredImage:
        """Save a generated image as PNG carrying its parameters (see ``encode_png``)."""
        return self._write(encode_png(image, metadata), "png", image.size, metadata)

    def save_encoded(self, data: bytes, metadata: dict[str, Any]) -> StoredImage:
        """Store an encoded image (e.g. a stock photo) as is, after checking it decodes."""
        try:
            with Image.open(io.BytesIO(data)) as probe:
                ext = _PIL_FORMATS.get(probe.format or "")
                size = probe.size
                if ext is not None and size[0] * size[1] <= MAX_PIXELS:
                    probe.load()  # a full decode: truncated or corrupt files fail here
        except Exception as exc:  # Pillow raises many types for bad data
            raise UnsupportedImage(f"not a decodable image: {type(exc).__name__}") from exc
        if ext is None:
            raise UnsupportedImage("only PNG, JPEG and WebP images are stored")
        if size[0] * size[1] > MAX_PIXELS:
            raise UnsupportedImage(f"{size[0]}x{size[1]} is larger than {MAX_PIXELS} pixels")
        return self._write(data, ext, size, metadata)

    def find(self, image_id: str, media_type: str | None = None) -> StoredImage | None:
        """Return the stored image with this id, or None for unknown or malformed ids.

        With ``media_type`` (the image row's), only the file of that type counts, and only
        when it starts like one: a file planted or overwritten by other means is not served.
        """
        if not _IMAGE_ID.fullmatch(image_id):
            return None
        if media_type is not None and media_type not in _EXTENSIONS:
            return None
        for ext, known_type in _MEDIA_TYPES.items():
            if media_type is not None and known_type != media_type:
                continue
            path = self.dir / f"{image_id}.{ext}"
            if not self._own_file(path):
                continue
            if media_type is not None and not _starts_like(path, ext):
                log.warning("image %s: %s does not hold a %s image; not served", image_id, path.name, media_type)
                return None
            meta = self.metadata(image_id) or {}
            return StoredImage(image_id, path, known_type, _int(meta.get("width")), _int(meta.get("height")))
        return None

    def open_rgb(self, image_id: str) -> Image.Image | None:
        """Decode a stored image to RGB (the stages' input); None when it is not stored."""
        stored = self.find(image_id)
        if stored is None:
            return None
        with Image.open(stored.path) as image:
            return image.convert("RGB")

    def thumbnail(self, image_id: str, media_type: str | None = None) -> Path | None:
        """A small PNG of the image, made once and kept beside it; None when it cannot be decoded."""
        stored = self.find(image_id, media_type)
        if stored is None:
            return None
        path = self.dir / f"{image_id}.thumb.png"
        # A planted symlink is never followed, and a file that is not a PNG is not served: the
        # thumbnail is made anew and replaces either.
        if self._own_file(path) and _starts_like(path, "png"):
            return path
        try:
            with Image.open(stored.path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise UnsupportedImage(f"{image.width}x{image.height} is larger than {MAX_PIXELS} pixels")
                image.thumbnail(THUMBNAIL_SIZE)
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, format="PNG")
        except Exception as exc:  # Pillow raises many types for bad data; a bad file is not a 500
            log.warning("image %s: no thumbnail, the file does not decode (%s: %s)", image_id, type(exc).__name__, exc)
            return None
        self._atomic_write(path, buffer.getvalue())
        return path

    def ids(self, min_age_s: float = 0.0) -> set[str]:
        """The ids of every image file, sidecar or thumbnail in the directory (older than ``min_age_s``)."""
        found = {match.group(1): name for name in os.listdir(self.dir) if (match := _OWN_NAME.fullmatch(name))}
        if min_age_s <= 0:
            return set(found)
        return {image_id for image_id, name in found.items() if _age_s(self.dir / name) > min_age_s}

    def delete(self, image_id: str) -> bool:
        """Remove an image's files; False when there was none."""
        if not _IMAGE_ID.fullmatch(image_id):
            return False
        removed = False
        for name in [f"{image_id}.{ext}" for ext in _MEDIA_TYPES] + [f"{image_id}.json", f"{image_id}.thumb.png"]:
            path = self.dir / name
            if path.is_file() or path.is_symlink():
                path.unlink(missing_ok=True)  # a concurrent delete may get there first
                removed = True
        return removed

    def metadata(self, image_id: str) -> dict[str, Any] | None:
        if not _IMAGE_ID.fullmatch(image_id):
            return None
        path = self.dir / f"{image_id}.json"
        if not self._own_file(path):
            return None
        try:
            data = json.loads(path.read_bytes())
        except ValueError as exc:  # undecodable bytes or JSON: as if there were no sidecar
            log.warning("image %s: unreadable metadata sidecar (%s)", image_id, exc)
            return None
        if not isinstance(data, dict):
            log.warning("image %s: metadata sidecar is not a JSON object", image_id)
            return None
        return data

    def _write(self, data: bytes, ext: str, size: tuple[int, int], metadata: dict[str, Any]) -> StoredImage:
        image_id = uuid.uuid4().hex
        sidecar = {**metadata, "id": image_id, "width": size[0], "height": size[1], "media_type": _MEDIA_TYPES[ext]}
        self._atomic_write(self.dir / f"{image_id}.json", json.dumps(sidecar, sort_keys=True).encode())
        path = self.dir / f"{image_id}.{ext}"
        self._atomic_write(path, data)
        return StoredImage(image_id, path, _MEDIA_TYPES[ext], size[0], size[1])

    def _own_file(self, path: Path) -> bool:
        # A symlink planted in the data dir could point anywhere: never follow one.
        return path.is_file() and not path.is_symlink() and path.resolve().parent == self.dir

    def _atomic_write(self, path: Path, data: bytes) -> None:
        # Readers never see a half-written file: write beside it, then rename over it.
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _starts_like(path: Path, ext: str) -> bool:
    """Whether the file begins with the signature of its format (a cheap check, no decoding)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
    except OSError:
        return False
    if ext == "png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if ext == "jpg":
        return head.startswith(b"\xff\xd8\xff")
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _age_s(path: Path) -> float:
    """Seconds since ``path`` was last written; 0 when it is gone already."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
