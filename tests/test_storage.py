"""Images are stored and found by id only: no traversal, no symlinks, atomic writes."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from cofounder_agent.storage import LEFTOVER_AGE_S, ImageStore, UnsupportedImage


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "data")


def test_png_round_trip_with_metadata(store: ImageStore) -> None:
    stored = store.save_png(Image.new("RGB", (16, 8), (1, 2, 3)), {"params": {"seed": 9}})
    found = store.find(stored.id)
    assert found is not None and found.path == stored.path and found.media_type == "image/png"
    with Image.open(found.path) as image:
        assert image.size == (16, 8) and json.loads(image.info["cofounder-agent"]) == {"params": {"seed": 9}}
        assert "parameters" not in image.info  # no prompt: nothing A1111's infotext could say truly
    assert store.metadata(stored.id) == {
        "params": {"seed": 9},
        "id": stored.id,
        "width": 16,
        "height": 8,
        "media_type": "image/png",
    }
    assert not list(store.dir.glob(".tmp-*"))


@pytest.mark.parametrize(
    "image_id", ["../x", "%2e%2e%2fetc", "/etc/passwd", "..", "", "A" * 32, "0" * 33, "../" + "0" * 29]
)
def test_malformed_ids_find_nothing(store: ImageStore, image_id: str) -> None:
    assert store.find(image_id) is None and store.metadata(image_id) is None


def test_symlinks_in_the_store_are_never_served(store: ImageStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    link = store.dir / ("a" * 32 + ".png")
    link.symlink_to(secret)
    assert store.find("a" * 32) is None


def test_encoded_images_are_checked(store: ImageStore) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (10, 6)).save(buffer, format="JPEG")
    stored = store.save_encoded(buffer.getvalue(), {"source": "pexels"})
    assert (stored.media_type, stored.width, stored.height) == ("image/jpeg", 10, 6)
    with pytest.raises(UnsupportedImage):
        store.save_encoded(b"<html>not an image</html>", {})
    gif = io.BytesIO()
    Image.new("P", (2, 2)).save(gif, format="GIF")
    with pytest.raises(UnsupportedImage, match="PNG, JPEG and WebP"):
        store.save_encoded(gif.getvalue(), {})


def test_a_planted_thumbnail_symlink_is_replaced_not_followed(store: ImageStore, tmp_path: Path) -> None:
    stored = store.save_png(Image.new("RGB", (600, 300), (9, 9, 9)), {})
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    (store.dir / f"{stored.id}.thumb.png").symlink_to(secret)
    thumb = store.thumbnail(stored.id)
    assert thumb is not None and not thumb.is_symlink()
    with Image.open(thumb) as image:
        assert image.size == (256, 128)
    assert secret.read_text() == "do not serve"


def test_phone_camera_mpo_jpegs_are_stored_as_jpeg(store: ImageStore) -> None:
    buffer = io.BytesIO()
    first, second = Image.new("RGB", (40, 30), (200, 0, 0)), Image.new("RGB", (40, 30), (0, 200, 0))
    first.save(buffer, format="MPO", save_all=True, append_images=[second])
    with Image.open(io.BytesIO(buffer.getvalue())) as probe:
        assert probe.format == "MPO"
    stored = store.save_encoded(buffer.getvalue(), {})
    assert (stored.media_type, stored.path.suffix) == ("image/jpeg", ".jpg")


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_interrupted_temporary_files_are_cleaned_at_start_but_not_writes_in_progress(tmp_path: Path) -> None:
    first = ImageStore(tmp_path / "data")
    old, fresh = first.dir / ".tmp-zip-abc.zip", first.dir / ".tmp-q1w2e3"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"another process is writing this")  # the directory is shared (docs/scaling.md)
    _age(old, LEFTOVER_AGE_S + 60)
    ImageStore(tmp_path / "data")
    assert (old.exists(), fresh.exists()) == (False, True)


def test_a_directory_has_one_identity_for_every_process_that_opens_it(tmp_path: Path) -> None:
    first, again, other = ImageStore(tmp_path / "a"), ImageStore(tmp_path / "a"), ImageStore(tmp_path / "b")
    assert first.volume_id == again.volume_id != other.volume_id
    assert len(first.volume_id) == 32 and first.volume_id not in first.ids()


def test_ids_can_leave_out_what_was_just_written(store: ImageStore) -> None:
    old = store.save_png(Image.new("RGB", (8, 8)), {})
    new = store.save_png(Image.new("RGB", (8, 8)), {})
    for path in store.dir.glob(f"{old.id}*"):
        _age(path, 120)
    assert store.ids() == {old.id, new.id}
    assert store.ids(min_age_s=60) == {old.id}
