"""Suite ``engine``: our two-stage path against the plain diffusers recipe on the same components.

Both run the documented ensemble recipe (base to ``switch_at``, refiner from there, one CPU
generator) with the same seed and steps; runs are interleaved A/B, alternating which goes
first, and the figure is the median of the per-pair ratios (ours / diffusers), so drift of a
noisy machine cancels. The pictures are compared too: a fast path that changed the image
would not be a fair race.
"""

from __future__ import annotations

import argparse
from typing import Any

from cofounder_agent.bench.common import Report, median, timed


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--engine-model", default="tiny", help="IMAGE_MODEL to load (default: the tiny model)")
    group.add_argument("--engine-size", type=int, default=512, help="image side in pixels")
    group.add_argument("--engine-steps", type=int, default=20)
    group.add_argument("--engine-runs", type=int, default=6, help="A/B pairs after one warm-up each")


def _plain_recipe(models: Any) -> Any:
    """diffusers' documented SDXL ensemble, called on the loaded pipelines themselves."""
    base, refiner = models.base, models.refiner
    for pipe in (base, refiner):
        pipe.set_progress_bar_config(disable=True)

    def run(prompt: str, seed: int, size: int, steps: int) -> Any:
        import torch

        generator = torch.Generator("cpu").manual_seed(seed)
        latents = base(
            prompt=prompt,
            width=size,
            height=size,
            num_inference_steps=steps,
            guidance_scale=8.0,
            denoising_end=0.8,
            generator=generator,
            output_type="latent",
        ).images
        return refiner(
            prompt=prompt,
            image=latents,
            num_inference_steps=steps,
            guidance_scale=8.0,
            denoising_start=0.8,
            generator=generator,
        ).images[0]

    return run


def run(args: argparse.Namespace) -> Report:
    import numpy as np

    from cofounder_agent.contract.params import GenerationParams, LoadOptions
    from cofounder_agent.engine.generate import TwoStageGenerator
    from cofounder_agent.engine.models import load_models

    models = load_models(LoadOptions(model=args.engine_model))
    if models.refiner is None:
        raise SystemExit("error: the engine suite compares the two-stage recipe: it needs a refiner")
    size, steps = args.engine_size, args.engine_steps
    params = GenerationParams(
        prompt="a lighthouse at dusk", seed=7, width=size, height=size, steps=steps, guidance_scale=8.0
    )
    ours = TwoStageGenerator(models)
    plain = _plain_recipe(models)

    def run_ours() -> Any:
        return ours.generate(params).image

    def run_plain() -> Any:
        return plain(params.prompt, params.seed, size, steps)

    first_ours, first_plain = run_ours(), run_plain()  # warm-up; also the pictures to compare
    difference = int(np.abs(np.asarray(first_ours, int) - np.asarray(first_plain, int)).max())
    times: dict[str, list[float]] = {"ours": [], "diffusers": []}
    ratios: list[float] = []
    for pair in range(args.engine_runs):
        order = [("ours", run_ours), ("diffusers", run_plain)]
        if pair % 2:
            order.reverse()
        seconds = {name: timed(fn) for name, fn in order}
        for name, value in seconds.items():
            times[name].append(value)
        ratios.append(seconds["ours"] / seconds["diffusers"])

    report = Report("engine")
    for name, values in times.items():
        report.rows.append(
            {"path": name, "median_s": median(values), "min_s": min(values), "max_s": max(values), "runs": len(values)}
        )
    report.summary = {
        "median ratio (ours / diffusers)": median(ratios),
        "target": "<= 1.03",
        "max pixel difference (0-255)": difference,
    }
    report.notes.append(
        f"model {args.engine_model}, {size}x{size}, {steps} steps, ensemble switch 0.8, guidance 8, "
        f"{models.device.device} {models.precision}; interleaved A/B pairs, alternating order"
    )
    return report
