"""Every long engine phase stops at the current job's check: VAE blocks, upscale tiles, faces, batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cofounder_agent.contract.checks import GenerationCancelled, checked_by, every_member
from cofounder_agent.contract.params import GenerationParams, LoadOptions
from cofounder_agent.engine.models import LoadedModels, load_models
from cofounder_agent.engine.stage_runner import StageRunner
from cofounder_agent.engine.stages.decode import decode_batch
from cofounder_agent.engine.stages.encode import encode_image
from cofounder_agent.engine.stages.face import Face, restore_faces
from cofounder_agent.engine.stages.upscale import process_tiles
from cofounder_agent.stages import UpscaleStage

PARAMS = GenerationParams(prompt="a harbour", seed=5, width=64, height=64, steps=4)


@pytest.fixture(scope="module")
def models() -> LoadedModels:
    return load_models(LoadOptions(model="tiny"))


class Stopper:
    """A check that says stop once ``stop`` is called, and counts the work done after that."""

    def __init__(self, stop_after: int = 0) -> None:
        self.stop_after, self.done, self.done_after_stop, self.stopped = stop_after, 0, 0, stop_after == 0

    def check(self) -> None:
        if self.stopped:
            raise GenerationCancelled

    def work(self) -> None:
        """One unit of work finished (a block, a tile, a face); the stop comes after ``stop_after`` of them."""
        self.done += 1
        if self.stopped:
            self.done_after_stop += 1
        elif self.done >= self.stop_after:
            self.stopped = True  # as if a cancel (or the end of the budget) came in now


def _count(modules: list[Any], stopper: Stopper) -> list[Any]:
    return [m.register_forward_hook(lambda *_: stopper.work()) for m in modules]


@pytest.mark.parametrize("stop_after", [0, 2])
def test_a_large_decode_stops_between_vae_blocks_and_tiles(models: LoadedModels, stop_after: int) -> None:
    vae = models.base.vae
    stopper, inputs = Stopper(stop_after), []
    hooks = _count([vae.decoder.mid_block, *vae.decoder.up_blocks], stopper)
    hooks.append(vae.decoder.register_forward_pre_hook(lambda _, args: inputs.append(tuple(args[0].shape))))
    try:
        with checked_by(stopper.check), pytest.raises(GenerationCancelled):
            decode_batch(models.base, torch.zeros(1, 4, 256, 256))  # a 2048² picture
    finally:
        for hook in hooks:
            hook.remove()
    assert stopper.done == stop_after and stopper.done_after_stop <= 1
    # Tiled: the decoder saw a 1024 px tile (128 latent), not the whole 2048 px picture.
    assert inputs == ([] if stop_after == 0 else [(1, 4, 128, 128)])


def test_a_large_encode_stops_between_vae_blocks(models: LoadedModels) -> None:
    vae = models.base.vae
    stopper = Stopper(1)
    hooks = _count([*vae.encoder.down_blocks, vae.encoder.mid_block], stopper)
    picture = Image.linear_gradient("L").convert("RGB").resize((2048, 2048))
    try:
        with checked_by(stopper.check), pytest.raises(GenerationCancelled):
            encode_image(models.base, picture, torch.Generator().manual_seed(0), torch.float32)
    finally:
        for hook in hooks:
            hook.remove()
    assert stopper.done == 1 and stopper.done_after_stop <= 1


def test_without_a_check_the_vae_tiles_run_through(models: LoadedModels) -> None:
    vae = models.base.vae
    assert vae.use_tiling and (vae.tile_sample_min_size, vae.tile_latent_min_size) == (1024, 128)
    # The hooks do nothing outside an engine call: a small decode runs as before.
    assert decode_batch(models.base, torch.zeros(2, 4, 8, 8))[1].size == (64, 64)


def test_upscale_tiles_stop_at_the_check() -> None:
    stopper = Stopper(2)

    def work(tile: Image.Image) -> Image.Image:
        stopper.work()
        return tile

    with checked_by(stopper.check), pytest.raises(GenerationCancelled):
        process_tiles(Image.new("RGB", (512, 512)), 64, 16, work)
    assert stopper.done == 2 and stopper.done_after_stop <= 1


def test_a_learned_upscale_stops_at_the_check_and_is_no_fallback(
    models: LoadedModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spandrel.architectures.ESRGAN import ESRGAN

    from cofounder_agent.engine.stages import upscaler

    torch.manual_seed(0)
    save_file(
        ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).state_dict(), str(tmp_path / "x2.safetensors")
    )
    spec = UpscaleStage(type="upscale", factor=2, upscaler="x2.safetensors", tile=64, overlap=16)
    runner, stopper = StageRunner(models, tmp_path), Stopper(3)

    real = upscaler._run

    def run_tile(descriptor: Any, tile: Image.Image) -> Image.Image:
        out = real(descriptor, tile)
        stopper.work()
        return out

    monkeypatch.setattr(upscaler, "_run", run_tile)
    with checked_by(stopper.check), pytest.raises(GenerationCancelled):
        runner.run(spec, Image.new("RGB", (512, 512), "grey"), PARAMS, 0)
    assert stopper.done == 3 and stopper.done_after_stop <= 1


def test_face_restoration_stops_between_faces() -> None:
    stopper = Stopper(1)

    def restore(crop: np.ndarray) -> np.ndarray:
        stopper.work()
        return crop

    faces = [Face((x, 10, 40, 40), np.array([[x + 12.0, 26.0], [x + 28.0, 26.0]]), True) for x in (0, 60, 120, 180)]
    with checked_by(stopper.check), pytest.raises(GenerationCancelled):
        restore_faces(Image.new("RGB", (256, 128)), faces, restore, 1.0)
    assert stopper.done == 1 and stopper.done_after_stop <= 1


def test_a_batch_check_stops_only_when_every_member_has_stopped() -> None:
    first, second = Stopper(1), Stopper(1)
    first.work()  # the first member stops
    batch = every_member([first.check, second.check])
    batch()  # the other one still wants the result
    second.work()
    with pytest.raises(GenerationCancelled):
        batch()
    every_member([])()  # a call for no job never stops
