"""face_restore: detection on a real photograph, alignment, feathered paste-back, and the stage's rules.

``data/astronaut.jpg`` is a crop of scikit-image's ``astronaut`` picture (Eileen Collins,
NASA, public domain).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cofounder_agent.client import Client
from cofounder_agent.contract.params import GenerationParams, LoadOptions
from cofounder_agent.engine.models import LoadedModels, load_models
from cofounder_agent.engine.stage_runner import StageRunner
from cofounder_agent.engine.stages.face import CROP, TEMPLATE_EYES, Face, detect_faces, restore_faces
from cofounder_agent.stages import FaceRestoreStage
from conftest import LIMIT_S, make_settings, running_server, wait_ready

PHOTO = Path(__file__).parent / "data" / "astronaut.jpg"
PARAMS = GenerationParams(prompt="a portrait", seed=5, width=64, height=64, steps=20)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    with Image.open(PHOTO) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def models() -> LoadedModels:
    return load_models(LoadOptions(model="tiny"))


def _white(crop: np.ndarray) -> np.ndarray:
    return np.full_like(crop, 255)


def _footprint(face: Face, size: tuple[int, int]) -> np.ndarray:
    """Where the 512² crop lands in the picture (a little grown for interpolation)."""
    corners = np.array([[0, 0], [CROP, 0], [CROP, CROP], [0, CROP]], dtype=np.float64)
    back = cv2.invertAffineTransform(face.to_crop())
    polygon = corners @ back[:, :2].T + back[:, 2]
    inside = np.zeros((size[1], size[0]), np.uint8)
    cv2.fillConvexPoly(inside, np.rint(polygon).astype(np.int32), 1)
    return cv2.dilate(inside, np.ones((5, 5), np.uint8)).astype(bool)


def test_finds_the_face_and_eyes_in_a_photograph(photo: Image.Image) -> None:
    (face,) = detect_faces(photo)
    x, y, w, h = face.box
    assert 90 <= x <= 130 and 50 <= y <= 90 and 80 <= w <= 110  # her face, seen by eye: about (112, 67, 95)
    assert face.eyes_found
    left, right = face.eyes
    assert x < left[0] < x + w / 2 < right[0] < x + w and y < left[1] < y + h / 2 and y < right[1] < y + h / 2


def test_no_faces_in_a_gradient() -> None:
    assert detect_faces(Image.radial_gradient("L").convert("RGB")) == []


def test_alignment_puts_the_eyes_on_the_template(photo: Image.Image) -> None:
    (face,) = detect_faces(photo)
    mapped = face.eyes @ face.to_crop()[:, :2].T + face.to_crop()[:, 2]
    np.testing.assert_allclose(mapped, TEMPLATE_EYES, atol=1e-6)
    # A tilted face is levelled: the crop of a picture turned by 12 degrees turns back.
    turned = photo.rotate(12, resample=Image.Resampling.BICUBIC, center=tuple(face.eyes.mean(axis=0)))
    (tilted,) = detect_faces(turned)
    assert tilted.eyes_found
    dx, dy = tilted.eyes[1] - tilted.eyes[0]
    assert -20 < np.degrees(np.arctan2(dy, dx)) < -5  # PIL turns counter-clockwise: the eye line rises


def test_paste_back_changes_the_face_and_nothing_outside_its_crop(photo: Image.Image) -> None:
    faces = detect_faces(photo)
    out = np.asarray(restore_faces(photo, faces, _white, strength=1.0)).astype(int)
    before = np.asarray(photo).astype(int)
    outside = ~_footprint(faces[0], photo.size)
    assert outside.sum() > 0.3 * outside.size
    assert np.array_equal(out[outside], before[outside])
    x, y, w, h = faces[0].box
    assert (out[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4] == 255).all()  # fully restored inside


def test_strength_blends_the_restored_face(photo: Image.Image) -> None:
    faces = detect_faces(photo)
    half = np.asarray(restore_faces(photo, faces, _white, strength=0.5)).astype(int)
    cx, cy = np.rint(faces[0].eyes.mean(axis=0)).astype(int)
    expected = (np.asarray(photo).astype(int)[cy, cx] + 255) / 2
    assert np.abs(half[cy, cx] - expected).max() <= 1


def test_an_identity_model_keeps_the_photograph(photo: Image.Image) -> None:
    same = restore_faces(photo, detect_faces(photo), lambda crop: crop, strength=1.0)
    # Only the two resamplings of the crop (in and back) move pixels, and only a little.
    assert np.abs(np.asarray(same, float) - np.asarray(photo, float)).mean() < 1.0


def test_without_a_model_the_stage_is_skipped_saying_why(models: LoadedModels, photo: Image.Image) -> None:
    out = StageRunner(models, None).run(FaceRestoreStage(type="face_restore"), photo, PARAMS, 0)
    assert out.record.outcome == "skipped" and "IMAGE_FACE_MODEL" in out.record.detail
    assert out.image is photo


def test_an_unusable_face_model_keeps_the_picture(models: LoadedModels, photo: Image.Image, tmp_path: Path) -> None:
    (tmp_path / "broken.safetensors").write_bytes(b"not a model")
    spec = FaceRestoreStage(type="face_restore", face_model="broken.safetensors")
    out = StageRunner(models, tmp_path).run(spec, photo, PARAMS, 0)
    assert out.record.outcome == "fallback" and out.record.detail
    assert out.image is photo


# The job API's rules: asked for by the job, a face model must exist; from a named recipe, the
# stage is skipped with its reason.


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(make_settings(tmp_path_factory.mktemp("face"))) as url:
        wait_ready(url)
        yield url


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"type": "face_restore"}, "no face restoration model"),
        ({"type": "face_restore", "face_model": "gfpgan.safetensors"}, "no such file"),
        ({"type": "face_restore", "face_model": "../gfpgan.safetensors"}, "face_model"),
        ({"type": "face_restore", "strength": 0}, "strength"),
        ({"type": "face_restore", "prompt": "a face"}, "prompt"),
    ],
)
def test_an_explicit_face_stage_needs_a_model(server: str, stage: dict[str, Any], message: str) -> None:
    body = {"prompt": "a portrait", "width": 64, "height": 64, "steps": 20, "stages": [stage]}
    response = httpx.post(f"{server}/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"].startswith("stages.0") and message in error["message"]


def test_the_portrait_recipe_runs_without_a_face_model(server: str) -> None:
    body = {"prompt": "a portrait", "width": 64, "height": 64, "steps": 20, "recipe": "portrait"}
    with Client(server, timeout=LIMIT_S) as client:
        job = client.submit(body)
        assert [s["type"] for s in job.recipe["stages"]] == ["refine", "face_restore"]
        done = client.wait(job.id, timeout=LIMIT_S)
        assert done.status == "succeeded", done.error
        refine, face = done.results[0].recipe_stages
        assert refine["outcome"] == "ok" and face["outcome"] == "skipped" and "IMAGE_FACE_MODEL" in face["detail"]


# With spandrel: a tiny random-weight RestoreFormer built with spandrel's own architecture.


def _restoreformer(path: Path) -> None:
    from spandrel.architectures.RestoreFormer import RestoreFormer

    torch.manual_seed(0)
    net = RestoreFormer(n_embed=16, embed_dim=32, ch=32, ch_mult=(1, 1, 1, 1, 1, 1), num_res_blocks=1, z_channels=32)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


def test_a_face_model_restores_the_face_in_place(models: LoadedModels, photo: Image.Image, tmp_path: Path) -> None:
    _restoreformer(tmp_path / "restoreformer.safetensors")
    spec = FaceRestoreStage(type="face_restore", face_model="restoreformer.safetensors", strength=1.0)
    out = StageRunner(models, tmp_path).run(spec, photo, PARAMS, 0)
    assert out.record.outcome == "ok", out.record.detail
    assert out.record.faces == 1 and out.image.size == photo.size
    after, before = np.asarray(out.image).astype(int), np.asarray(photo).astype(int)
    outside = ~_footprint(detect_faces(photo)[0], photo.size)
    assert np.array_equal(after[outside], before[outside]) and np.abs(after - before).max() > 10


def test_an_upscaler_is_not_a_face_model(models: LoadedModels, photo: Image.Image, tmp_path: Path) -> None:
    from spandrel.architectures.ESRGAN import ESRGAN

    upscaler = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2)
    save_file(upscaler.state_dict(), str(tmp_path / "x2.safetensors"))
    spec = FaceRestoreStage(type="face_restore", face_model="x2.safetensors")
    out = StageRunner(models, tmp_path).run(spec, photo, PARAMS, 0)
    assert out.record.outcome == "fallback" and "not a face restoration model" in out.record.detail


@pytest.mark.slow
def test_a_full_size_gfpgan_file_runs(models: LoadedModels, photo: Image.Image, tmp_path: Path) -> None:
    """GFPGAN v1.4's architecture (86M random weights): spandrel detects it; the stage feeds it [-1, 1]."""
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    net = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, different_w=True, narrow=1, sft_half=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "gfpgan.safetensors"))
    spec = FaceRestoreStage(type="face_restore", face_model="gfpgan.safetensors")
    out = StageRunner(models, tmp_path).run(spec, photo, PARAMS, 0)
    assert out.record.outcome == "ok", out.record.detail
    assert out.record.faces == 1 and out.image.size == photo.size
