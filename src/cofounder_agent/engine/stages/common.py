"""What every denoising stage shares: progress reporting and cancellation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# on_step(stage, step, total) -> None; raising GenerationCancelled stops the run at that step.
StepCallback = Callable[[str, int, int], None]


class GenerationCancelled(Exception):
    """Raised from a step callback to stop a generation between denoising steps."""


def step_hook(stage: str, on_step: StepCallback | None) -> Callable[..., dict[str, Any]] | None:
    """Adapt ``on_step`` to diffusers' ``callback_on_step_end``."""
    if on_step is None:
        return None

    def hook(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        on_step(stage, step + 1, int(pipe.num_timesteps))
        return callback_kwargs

    return hook
