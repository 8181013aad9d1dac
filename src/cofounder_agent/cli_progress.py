"""The progress display of `submit --wait`, `wait` and `generate`: one bar on stderr, only on a terminal."""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any, TextIO

BAR_FORMAT = "{desc}{percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"


def step_text(stage: object, step: object, total: object) -> str:
    """A denoising step as the bar names it: ``base 12/40``."""
    return f"{stage} {step}/{total}"


def _columns() -> int:
    """The terminal's width on stderr; 0 when it reports none."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 0


class ProgressBar:
    """A tqdm bar on stderr: stage, step/total, percentage and ETA.

    Quiet when stderr is no terminal, so logs and pipes get no carriage-return noise; the
    results still go to stdout as JSON lines.
    """

    def __init__(self) -> None:
        from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type information

        shown = sys.stderr.isatty()
        # A terminal that reports no size (some ptys, `docker exec -t`) would get no bar at all.
        size = {} if not shown or _columns() else {"ncols": 80, "nrows": 24}
        self._bar: Any = tqdm(total=100, file=sys.stderr, bar_format=BAR_FORMAT, disable=not shown, **size)

    @property
    def shown(self) -> bool:
        """Whether the bar draws (stderr is a terminal)."""
        return not self._bar.disable

    def show(self, description: str | None = None, progress: float | None = None) -> None:
        """Redraw with a new description and/or share done (0..1); None keeps the current one."""
        if description is not None:
            self._bar.set_description(description, refresh=False)
        if progress is not None:
            self._bar.n = round(100 * min(1.0, max(0.0, progress)))
        self._bar.refresh()

    def write(self, line: str, file: TextIO | None = None) -> None:
        """Print a line (default: to stderr) above the bar, which is redrawn below it."""
        out = file or sys.stderr
        self._bar.write(line, file=out)
        out.flush()

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
