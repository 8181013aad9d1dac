"""What every denoising stage shares: progress reporting and cancellation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# on_step(stage, step, total) -> None; raising GenerationCancelled stops the run at that step.
StepCallback = Callable[[str, int, int], None]


class GenerationCancelled(Exception):
    """Raised from a step callback to stop a generation between denoising steps."""


def fan_out(callbacks: list[StepCallback | None]) -> tuple[StepCallback, set[int]]:
    """One step callback for a batch: tells each member, notes which ones cancel.

    A member that cancels is dropped from the batch's results but does not stop the others;
    the run stops only when every member has cancelled.
    """
    cancelled: set[int] = set()

    def on_step(stage: str, step: int, total: int) -> None:
        for index, callback in enumerate(callbacks):
            if callback is None or index in cancelled:
                continue
            try:
                callback(stage, step, total)
            except GenerationCancelled:
                cancelled.add(index)
        if len(cancelled) == len(callbacks):
            raise GenerationCancelled

    return on_step, cancelled


def step_hook(stage: str, on_step: StepCallback | None) -> Callable[..., dict[str, Any]] | None:
    """Adapt ``on_step`` to diffusers' ``callback_on_step_end``."""
    if on_step is None:
        return None

    def hook(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        on_step(stage, step + 1, int(pipe.num_timesteps))
        return callback_kwargs

    return hook
