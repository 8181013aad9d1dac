"""Recipe stages: refine equals diffusers' img2img, a real quality metric, adaptive, progressive, upscale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

import cofounder_agent.engine.stage_runner as recipe_module
from cofounder_agent.contract.errors import InvalidField
from cofounder_agent.contract.params import GenerationParams, LoadOptions
from cofounder_agent.engine.generate import TwoStageGenerator
from cofounder_agent.engine.models import LoadedModels, load_models
from cofounder_agent.engine.stage_runner import StageRunner
from cofounder_agent.engine.stages.img2img import RefinePass, refine_image
from cofounder_agent.engine.stages.quality import quality
from cofounder_agent.engine.stages.upscale import process_tiles, tiles
from cofounder_agent.engine.views import pipeline_view
from cofounder_agent.stages import (
    AdaptiveStage,
    InpaintStage,
    ProgressiveStage,
    RefineStage,
    UpscaleStage,
    VariationsStage,
)
from conftest import max_diff

PARAMS = GenerationParams(prompt="a harbour at dusk", seed=5, width=64, height=64, steps=20)


@pytest.fixture(scope="module")
def models(tiny_dirs: tuple[Path, Path]) -> LoadedModels:
    return load_models(LoadOptions(model=str(tiny_dirs[0]), refiner_model=str(tiny_dirs[1])))


@pytest.fixture(scope="module")
def picture(models: LoadedModels) -> Image.Image:
    return TwoStageGenerator(models).generate(PARAMS).image


def natural(size: int = 128, seed: int = 1) -> Image.Image:
    """A picture with natural-image statistics (1/f spectrum): what PIQE is made for."""
    rng = np.random.default_rng(seed)
    freq = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2
    freq[0, 0] = 1
    channels = []
    for _ in range(3):
        field = np.real(np.fft.ifft2((rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / freq**0.9))
        channels.append((field - field.min()) / (field.max() - field.min()) * 255)
    return Image.fromarray(np.stack(channels, -1).astype(np.uint8))


def test_refine_equals_diffusers_img2img_on_a_picture(
    models: LoadedModels, reference: Any, picture: Image.Image
) -> None:
    _, ref_refiner = reference
    ask = RefinePass(prompt="a harbour at dusk", negative_prompt=None, strength=0.4, steps=20, guidance_scale=7.0)
    pipe = pipeline_view(type(ref_refiner), models.refiner, models.refiner.scheduler)  # type: ignore[union-attr]
    ours = refine_image(pipe, picture, ask, torch.Generator("cpu").manual_seed(11))
    theirs = ref_refiner(
        prompt=ask.prompt,
        image=picture,
        strength=0.4,
        num_inference_steps=20,
        guidance_scale=7.0,
        generator=torch.Generator("cpu").manual_seed(11),
    ).images[0]
    assert max_diff(ours, theirs) <= 1
    assert max_diff(ours, picture) > 2  # the pass really changed the picture


def test_quality_ranks_clean_above_blurred_and_noisy() -> None:
    clean = natural()
    array = np.asarray(clean).astype(np.float64)
    noisy = Image.fromarray(
        np.clip(array + np.random.default_rng(2).normal(0, 20, array.shape), 0, 255).astype(np.uint8)
    )
    blurred = clean.filter(ImageFilter.GaussianBlur(2))
    assert quality(clean) > quality(noisy) > quality(blurred)


def test_adaptive_stops_at_the_threshold_or_max_passes(models: LoadedModels) -> None:
    runner = StageRunner(models)
    easy = runner.run(AdaptiveStage(type="adaptive", threshold=0.0, steps=10), natural(64), PARAMS, 0)
    assert easy.record.passes == 0 and easy.record.threshold_met and easy.passes == []
    hard = runner.run(AdaptiveStage(type="adaptive", threshold=1.0, max_passes=2, steps=10), natural(64), PARAMS, 0)
    assert hard.record.passes == 2 and not hard.record.threshold_met and len(hard.passes) == 2
    assert len(hard.record.scores) == 3  # before, and after each pass


def test_progressive_makes_one_picture_per_strength(models: LoadedModels, picture: Image.Image) -> None:
    out = StageRunner(models).run(ProgressiveStage(type="progressive", strengths=[0.5, 0.3, 0.15]), picture, PARAMS, 0)
    assert out.record.outcome == "ok" and len(out.passes) == 3 and out.image is out.passes[-1]
    changes = [max_diff(before, after) for before, after in zip([picture, *out.passes], out.passes, strict=False)]
    assert all(change > 0 for change in changes)


@pytest.mark.parametrize("factor", [2, 4])
def test_upscale_fallback_enlarges_without_a_model(models: LoadedModels, picture: Image.Image, factor: int) -> None:
    spec = UpscaleStage(type="upscale", factor=factor, tile=128, overlap=32, steps=10, strength=0.2)  # type: ignore[arg-type]
    out = StageRunner(models).run(spec, picture, PARAMS, 0)
    assert out.record.outcome == "ok" and out.image.size == (64 * factor, 64 * factor)


def test_tiles_cover_the_picture_and_blend_back_exactly() -> None:
    boxes = list(tiles(300, 200, 128, 32))
    covered = np.zeros((200, 300), dtype=bool)
    for left, top, right, bottom in boxes:
        covered[top:bottom, left:right] = True
    assert covered.all() and all(right - left == 128 and bottom - top == 128 for left, top, right, bottom in boxes)
    original = natural(300).crop((0, 0, 300, 200))
    assert max_diff(process_tiles(original, 128, 32, lambda tile: tile), original) == 0


def test_a_failing_stage_keeps_its_input_and_says_why(
    models: LoadedModels, picture: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(recipe_module, "refine_image", out_of_memory)
    out = StageRunner(models).run(RefineStage(type="refine"), picture, PARAMS, 0)
    assert out.image is picture and out.record.outcome == "fallback"
    assert out.record.detail == "RuntimeError: CUDA out of memory (simulated)"


def test_inpaint_changes_the_region_and_nothing_beyond_its_border(models: LoadedModels, picture: Image.Image) -> None:
    big = picture.resize((128, 128))
    spec = InpaintStage(type="inpaint", box=(32, 32, 96, 96), detail="high", feather=4)
    out = StageRunner(models).run(spec, big, PARAMS, 0)
    assert out.record.outcome == "ok", out.record.detail
    diff = np.abs(np.asarray(out.image, dtype=np.int16) - np.asarray(big, dtype=np.int16)).max(axis=2)
    assert diff[40:88, 40:88].mean() > 5  # inside: refined
    border = 3 * 4  # a Gaussian feather of radius 4 reaches about 3 radii out
    outside = np.ones_like(diff, dtype=bool)
    outside[32 - border : 96 + border, 32 - border : 96 + border] = False
    assert diff[outside].max() == 0  # outside: untouched, to the pixel


def test_inpaint_strength_and_steps_replace_the_detail_levels(models: LoadedModels, picture: Image.Image) -> None:
    # The preset's steps and strength, or the stage's own: counted, checked and run with them.
    preset = InpaintStage(type="inpaint", box=(16, 16, 48, 48), detail="high")
    own = InpaintStage(type="inpaint", box=(16, 16, 48, 48), detail="high", strength=0.25, steps=8)
    assert preset.denoising_steps("euler", (64, 64)) == 14  # high: 20 steps x 0.7
    assert own.denoising_steps("euler", (64, 64)) == 2  # 8 steps x 0.25
    with pytest.raises(InvalidField) as refused:
        InpaintStage(type="inpaint", box=(0, 0, 8, 8), strength=0.05, steps=8).check("stages.0", "euler", last=True)
    assert refused.value.field == "stages.0.strength"
    steps: list[int] = []
    out = StageRunner(models).run(own, picture, PARAMS, 0, on_step=lambda stage, step, total: steps.append(total))
    assert out.record.outcome == "ok", out.record.detail
    assert steps and set(steps) == {2}


def test_inpaint_keeps_the_shared_vae_in_its_precision(tiny_dirs: tuple[Path, Path]) -> None:
    half = load_models(LoadOptions(model="tiny", precision="fp16"))
    assert half.vae_dtype == "float32"
    spec = InpaintStage(type="inpaint", box=(8, 8, 40, 40), detail="low")
    out = StageRunner(half).run(spec, Image.new("RGB", (64, 64), (90, 120, 150)), PARAMS, 0)
    assert out.record.outcome == "ok", out.record.detail
    assert str(half.base.vae.dtype) == "torch.float32"  # the pipeline cast it down; the stage put it back


def test_variations_refine_one_picture_under_each_prompt(models: LoadedModels, picture: Image.Image) -> None:
    prompts = ["a red boat", "a stone bridge at night", "snowy mountains"]
    spec = VariationsStage(type="variations", prompts=prompts, strength=0.6, steps=10)
    out = StageRunner(models).run(spec, picture, PARAMS, 0)
    assert out.record.outcome == "ok", out.record.detail
    assert len(out.variations) == 3 and all(v.size == picture.size for v in out.variations)
    assert max_diff(out.variations[0], out.variations[1]) > 2 and max_diff(out.variations[1], out.variations[2]) > 2


def test_odd_sized_pictures_keep_their_size(models: LoadedModels) -> None:
    odd = natural(128).crop((0, 0, 101, 75))
    runner = StageRunner(models)
    refined = runner.run(RefineStage(type="refine", strength=0.5, steps=10), odd, PARAMS, 0)
    assert refined.record.outcome == "ok" and refined.image.size == (101, 75)
    painted = runner.run(InpaintStage(type="inpaint", box=(10, 10, 60, 50), detail="low"), odd, PARAMS, 0)
    assert painted.record.outcome == "ok", painted.record.detail
    assert painted.image.size == (101, 75)


def test_adaptive_refines_until_the_score_is_met(models: LoadedModels, monkeypatch: pytest.MonkeyPatch) -> None:
    scores = iter([0.3, 0.9])
    monkeypatch.setattr(recipe_module, "quality", lambda image: next(scores))
    out = StageRunner(models).run(AdaptiveStage(type="adaptive", threshold=0.8, steps=10), natural(64), PARAMS, 0)
    # One pass at strength min(0.5, 0.8 x (0.8 - 0.3)) = 0.4, then the score clears the threshold.
    assert out.record.passes == 1 and out.record.scores == [0.3, 0.9] and out.record.threshold_met


def test_adaptive_with_one_step_still_runs(models: LoadedModels) -> None:
    out = StageRunner(models).run(
        AdaptiveStage(type="adaptive", threshold=1.0, max_passes=1, steps=1), natural(64), PARAMS, 0
    )
    assert out.record.outcome == "ok", out.record.detail


def test_a_mask_painted_in_alpha_is_read_from_alpha(models: LoadedModels, picture: Image.Image) -> None:
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    mask.paste((0, 0, 0, 255), (16, 16, 48, 48))
    spec = InpaintStage(type="inpaint", mask_image_id="0" * 32, detail="low", feather=0)
    out = StageRunner(models).run(spec, picture, PARAMS, 0, inputs={"mask_image_id": mask})
    assert out.record.outcome == "ok", out.record.detail
    diff = np.abs(np.asarray(out.image, dtype=np.int16) - np.asarray(picture, dtype=np.int16)).max(axis=2)
    assert diff[20:44, 20:44].mean() > 2 and diff[:12].max() == 0
