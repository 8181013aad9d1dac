"""A job's hold on the engine: its stop switch and its budget of engine time.

Torch-free: the worker makes one per job on the event loop; the ImageService runs its clock
and its check on the engine thread.
"""

from __future__ import annotations

import threading
import time
from typing import Literal

from cofounder_agent.contract.checks import EngineTimeExceeded, GenerationCancelled, StepCallback

StopReason = Literal["cancelled", "timed_out"]


class JobControl:
    """One job's cancel flag and engine-time budget, shared by the worker and the engine thread.

    The clock runs only while the job's work runs on the engine thread (between ``enter`` and
    ``leave``): not while its call waits behind other work, nor while the worker stores files.
    """

    def __init__(self, budget_s: float | None = None, cancel: threading.Event | None = None) -> None:
        self.budget_s = budget_s
        self.cancel_flag = cancel if cancel is not None else threading.Event()
        self.stopped: StopReason | None = None  # why the first check that said stop did so
        self._spent = 0.0
        self._since: float | None = None
        self._lock = threading.Lock()

    def cancel(self) -> None:
        self.cancel_flag.set()

    @property
    def engine_s(self) -> float:
        """Seconds of the job's work on the engine so far, the call in progress included."""
        with self._lock:
            running = time.monotonic() - self._since if self._since is not None else 0.0
            return self._spent + running

    def enter(self) -> None:
        """Start the clock: the job's work begins on the engine thread."""
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()

    def leave(self) -> None:
        """Stop the clock: the job's work on the engine thread has ended."""
        with self._lock:
            if self._since is not None:
                self._spent += time.monotonic() - self._since
                self._since = None

    def check(self) -> None:
        """Raise if the job was cancelled or has used up its engine time; remember which came first."""
        if self.cancel_flag.is_set():
            self._stop("cancelled")
            raise GenerationCancelled("cancelled")
        if self.budget_s is not None and self.engine_s >= self.budget_s:
            self._stop("timed_out")
            raise EngineTimeExceeded(f"used up its {self.budget_s:g} s on the engine")

    def guard(self, on_step: StepCallback | None) -> StepCallback:
        """``on_step`` preceded by this job's check: a stopped job drops out at its next step."""

        def guarded(stage: str, step: int, total: int) -> None:
            self.check()
            if on_step is not None:
                on_step(stage, step, total)

        return guarded

    def _stop(self, reason: StopReason) -> None:
        if self.stopped is None:
            self.stopped = reason
