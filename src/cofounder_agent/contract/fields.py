"""Where each job option sits in each caller's request: one table, so a 422 names the caller's own field.

A job body nests the refiner's options (``refiner.switch_at``), the seed endpoint has them
flat, the CLI has flags and the OpenAI endpoint folds the size and step counts into ``size``.
Checks below the web tier raise with the option's name; the caller's map turns it into the
name its user typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

Caller = Literal["job", "seed", "cli", "openai"]
CALLERS: tuple[Caller, ...] = ("job", "seed", "cli", "openai")

# option: (job body, seed endpoint, CLI, OpenAI); "" = the option's own name.
_TABLE: dict[str, tuple[str, str, str, str]] = {
    "steps": ("", "num_inference_steps", "", "size"),
    "width": ("", "", "", "size"),
    "height": ("", "", "", "size"),
    "num_images": ("", "", "", "n"),
    "refiner_mode": ("refiner.mode", "", "--refiner-mode", "refiner.mode"),
    "switch_at": ("refiner.switch_at", "", "--switch-at", "refiner.switch_at"),
    "refiner_steps": ("refiner.steps", "", "--refine-steps", "size"),
    "refiner_strength": ("refiner.strength", "", "--refine-strength", "refiner.strength"),
}

FIELDS: Mapping[Caller, Mapping[str, str]] = {
    caller: MappingProxyType({option: names[column] or option for option, names in _TABLE.items()})
    for column, caller in enumerate(CALLERS)
}
JOB_FIELDS, SEED_FIELDS, CLI_FIELDS, OPENAI_FIELDS = (FIELDS[caller] for caller in CALLERS)
