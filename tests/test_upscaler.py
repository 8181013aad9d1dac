"""Learned upscalers: spandrel models from .safetensors files, and the fallback for unusable files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cofounder_agent.contract.params import GenerationParams, LoadOptions
from cofounder_agent.engine.models import LoadedModels, load_models
from cofounder_agent.engine.stage_runner import StageRunner
from cofounder_agent.stages import UpscaleStage

PARAMS = GenerationParams(prompt="a harbour", seed=5, width=64, height=64, steps=20)


@pytest.fixture(scope="module")
def models() -> LoadedModels:
    return load_models(LoadOptions(model="tiny"))


def _picture() -> Image.Image:
    return Image.radial_gradient("L").convert("RGB").resize((150, 100))


def _esrgan(path: Path, scale: int) -> None:
    """A tiny random-weight ESRGAN built with spandrel's own architecture, saved as safetensors."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(scale)
    save_file(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale).state_dict(), str(path))


@pytest.mark.parametrize("scale", [2, 4])
def test_spandrel_model_upscales_by_its_scale(models: LoadedModels, tmp_path: Path, scale: int) -> None:
    _esrgan(tmp_path / f"esrgan-x{scale}.safetensors", scale)
    spec = UpscaleStage(type="upscale", factor=scale, upscaler=f"esrgan-x{scale}.safetensors", tile=64, overlap=16)  # type: ignore[arg-type]
    out = StageRunner(models, tmp_path).run(spec, _picture(), PARAMS, 0)
    assert out.record.outcome == "ok", out.record.detail
    assert out.record.upscaler_scale == scale and out.image.size == (150 * scale, 100 * scale)


def test_a_x4_model_fits_a_x2_request(models: LoadedModels, tmp_path: Path) -> None:
    _esrgan(tmp_path / "x4.safetensors", 4)
    spec = UpscaleStage(type="upscale", factor=2, upscaler="x4.safetensors")
    out = StageRunner(models, tmp_path).run(spec, _picture(), PARAMS, 0)
    assert out.image.size == (300, 200)


def test_corrupt_or_unusable_upscaler_keeps_the_picture(models: LoadedModels, tmp_path: Path) -> None:
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    picture = _picture()
    out = StageRunner(models, tmp_path).run(
        UpscaleStage(type="upscale", upscaler="broken.safetensors"), picture, PARAMS, 0
    )
    assert out.image is picture and out.record.outcome == "fallback"
    assert "Error" in out.record.detail


def test_upscaler_names_never_reach_outside_the_models_dir(models: LoadedModels, tmp_path: Path) -> None:
    from pydantic import ValidationError

    for name in ("../x.safetensors", "/etc/x.safetensors", ".hidden.safetensors", "model.bin"):
        with pytest.raises(ValidationError):
            UpscaleStage(type="upscale", upscaler=name)
