"""The flops and gpu bench suites and the fast path, on the CPU: counts, code paths, equal pixels."""

from __future__ import annotations

import argparse

import pytest
import torch

from cofounder_agent.bench import flops, gpu
from cofounder_agent.contract.params import GenerationParams, LoadOptions
from cofounder_agent.engine.fastpath import FastPath, apply_fast_path
from cofounder_agent.engine.generate import TwoStageGenerator
from cofounder_agent.engine.models import load_models
from conftest import max_diff


def _args(module: object, *argv: str) -> argparse.Namespace:
    """Parse ``argv`` with only ``module``'s options, as the bench command would."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser.add_argument_group("suite"))  # type: ignore[attr-defined]
    return parser.parse_args(list(argv))


def test_unet_flops_at_1024_match_the_published_counts() -> None:
    modules = flops.meta_modules()  # meta device: no memory, no arithmetic
    base = flops.unet_flops(modules.base_unet, "base", 1, 1024, 1024) / 1e12
    refiner = flops.unet_flops(modules.refiner_unet, "refiner", 1, 1024, 1024) / 1e12
    assert base == pytest.approx(6.76, rel=0.02)
    assert refiner == pytest.approx(7.29, rel=0.02)
    # Classifier-free guidance doubles the batch, hence the work.
    assert flops.unet_flops(modules.base_unet, "base", 2, 1024, 1024) / 1e12 == pytest.approx(2 * base, rel=1e-6)


def test_settings_count_the_steps_diffusers_runs() -> None:
    assert flops.stage_steps(flops.SEED) == (50, 9)  # img2img: int(30 * 0.3)
    assert flops.stage_steps(flops.ENSEMBLE) == (40, 10)  # one 50-step schedule split at 0.8
    seed, ensemble = flops.floor_seconds("seed", 1024, 800.0), flops.floor_seconds("ensemble", 1024, 800.0)
    assert 0.9 < seed < 1.2 and 0.8 < ensemble < 0.95  # the issue: about 0.87 s at 800 TFLOP/s
    assert flops.floor_seconds("seed", 1024, 400.0) == pytest.approx(2 * seed)


@pytest.mark.skipif(torch.cuda.is_available(), reason="here the suite would run in earnest")
def test_gpu_suite_without_cuda_says_so_and_measures_nothing() -> None:
    report = gpu.run(_args(gpu))
    assert report.rows == []
    assert report.notes[0].startswith("no CUDA device: the gpu suite needs one (")


@pytest.mark.slow
def test_gpu_suite_runs_every_setting_on_the_cpu_with_the_tiny_model() -> None:
    argv = ("--gpu-allow-cpu", "--gpu-tiny", "--gpu-size", "64", "--gpu-runs", "1", "--gpu-batch-sizes", "2")
    # dynamo's capture without code generation: the compile path runs, no C++ is built.
    report = gpu.run(_args(gpu, *argv, "--gpu-compile-backend", "eager"))
    assert [row["setting"] for row in report.rows] == ["a", "b", "c", "c", "c", "c", "c", "d"]
    for row in report.rows:
        assert row["s_per_image"] > 0 and row["first_s"] > 0 and row["decode_s"] > 0
        assert row["base_it_s"] > 0 and row["refiner_it_s"] > 0
        assert 0 < row["floor_frac"] < 1
    assert [row["steps"] for row in report.rows[:2]] == ["4+2", "4+1"]
    compiled = [row for row in report.rows if "compile" in row["variant"] or row["setting"] == "d"]
    assert len(compiled) == 4 and all(row["compile_s"] > 0 for row in compiled)
    assert report.rows[-1]["batch"] == 2


def test_fast_path_keeps_the_pixels_on_the_tiny_model() -> None:
    params = GenerationParams(prompt="a lighthouse", seed=7, width=64, height=64, steps=8)
    plain = TwoStageGenerator(load_models(LoadOptions(model="tiny", refiner_model="tiny"))).generate(params)
    models = load_models(LoadOptions(model="tiny", refiner_model="tiny"))
    applied = apply_fast_path(models, FastPath(channels_last=True, fuse_qkv=True))
    # diffusers' default is SDPA (AttnProcessor2_0); fused projections keep SDPA.
    assert applied["attention_default"] == ["AttnProcessor2_0"]
    assert set(applied["attention"]["unet0"]) == {"FusedAttnProcessor2_0"}
    assert models.refiner is not None and models.base.vae is models.refiner.vae  # fused once, shared
    fast = TwoStageGenerator(models).generate(params)
    assert fast.refiner_applied and plain.refiner_applied
    assert max_diff(plain.image, fast.image) <= 2
