"""Where each job option sits in each caller's request: one table, so a 422 names the caller's own field.

A job body nests the refiner's options (``refiner.switch_at``), the seed endpoint has them
flat, the CLI has flags, the OpenAI endpoint folds the size and step counts into ``size`` and
A1111's txt2img counts images in ``batch_size``.
Checks below the web tier raise with the option's name; the caller's map turns it into the
name its user typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

Caller = Literal["job", "seed", "cli", "openai", "a1111"]
CALLERS: tuple[Caller, ...] = ("job", "seed", "cli", "openai", "a1111")

# option: (job body, seed endpoint, CLI, OpenAI, A1111); "" = the option's own name.
# A1111 has no refiner steps or strength of its own: the server's defaults, run in steps.
_TABLE: dict[str, tuple[str, str, str, str, str]] = {
    "steps": ("", "num_inference_steps", "--steps", "size", ""),
    "width": ("", "", "", "size", ""),
    "height": ("", "", "", "size", ""),
    "num_images": ("", "", "", "n", "batch_size"),
    "refiner_mode": ("refiner.mode", "", "--refiner-mode", "refiner.mode", "refiner_checkpoint"),
    "switch_at": ("refiner.switch_at", "", "--switch-at", "refiner.switch_at", "refiner_switch_at"),
    "refiner_steps": ("refiner.steps", "", "--refine-steps", "size", "steps"),
    "refiner_strength": ("refiner.strength", "", "--refine-strength", "refiner.strength", "steps"),
}

# How each caller changes a schedule that leaves a stage no step, for the 422's advice: the
# field for more steps, the field for another switch point, and how to turn the refiner off.
# "" = the caller cannot: OpenAI's request has no step or refiner fields (the server's
# settings decide), and an A1111 request without refiner_checkpoint takes the server's mode.
_ADVICE: dict[str, tuple[str, str, str, str, str]] = {
    "advice.steps": ("steps", "num_inference_steps", "--steps", "", "steps"),
    "advice.switch_at": ("refiner.switch_at", "switch_at", "--switch-at", "", "refiner_switch_at"),
    "advice.refiner_steps": ("refiner.steps", "refiner_steps", "--refine-steps", "", ""),
    "advice.refiner_strength": ("refiner.strength", "refiner_strength", "--refine-strength", "", ""),
    "advice.refiner_off": ('refiner.mode: "none"', 'refiner_mode: "none"', "--refiner-mode none", "", ""),
}

FIELDS: Mapping[Caller, Mapping[str, str]] = {
    caller: MappingProxyType(
        {option: names[column] or option for option, names in _TABLE.items()}
        | {key: phrases[column] for key, phrases in _ADVICE.items()}
    )
    for column, caller in enumerate(CALLERS)
}
JOB_FIELDS, SEED_FIELDS, CLI_FIELDS, OPENAI_FIELDS, A1111_FIELDS = (FIELDS[caller] for caller in CALLERS)
