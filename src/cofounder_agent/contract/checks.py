"""What every stage shares on the engine thread: progress reporting, cancellation, the current job's check."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

# on_step(stage, step, total) -> None; raising GenerationCancelled stops the run at that step.
StepCallback = Callable[[str, int, int], None]
# check() -> None; raises GenerationCancelled when the work in progress must stop.
Check = Callable[[], None]

# Set on the engine thread for the duration of one engine call (ImageService); other threads
# see None, so running the engine directly (tests, benchmarks) never stops on its own.
_current_check: ContextVar[Check | None] = ContextVar("engine_check", default=None)


class GenerationCancelled(Exception):
    """Raised to stop the engine's work: from a step callback, or from a check between tiles or blocks."""


class EngineTimeExceeded(GenerationCancelled):
    """Raised by a job's check when the job has used up its time on the engine."""


def checkpoint() -> None:
    """Stop here (raise GenerationCancelled) if the current engine call's check says so."""
    check = _current_check.get()
    if check is not None:
        check()


@contextlib.contextmanager
def checked_by(check: Check | None) -> Iterator[None]:
    """Make ``check`` the one that ``checkpoint`` calls inside the block (on this thread)."""
    token = _current_check.set(check)
    try:
        yield
    finally:
        _current_check.reset(token)


def every_member(checks: list[Check]) -> Check:
    """A batch's check for its shared phases: stop only when every member's own check says stop.

    The same rule as ``fan_out`` for steps: a member that stopped leaves the others running.
    """

    def check() -> None:
        stop: GenerationCancelled | None = None
        for member in checks:
            try:
                member()
            except GenerationCancelled as exc:
                stop = exc
            else:
                return
        if stop is not None:
            raise stop

    return check


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
