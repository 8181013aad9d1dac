"""Build a fresh scheduler per request from the loaded configuration.

diffusers schedulers keep per-run state (timesteps, step index), so a shared one is never
swapped or reused across requests (the cog-sdxl mistake, STYLE.md §4).
"""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)

from cofounder_agent.contract.params import SCHEDULER_NAMES, SchedulerName

# A1111/ComfyUI names mapped to diffusers classes and the options that make them that sampler.
_SCHEDULERS: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "ddim": (DDIMScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "unipc": (UniPCMultistepScheduler, {}),
}
assert set(_SCHEDULERS) == set(SCHEDULER_NAMES), "params.SchedulerName and this table must agree"


def build_scheduler(name: SchedulerName, config: Any) -> Any:
    """Return a new scheduler of kind ``name`` configured like the loaded model's."""
    cls, options = _SCHEDULERS[name]
    return cls.from_config(config, **options)
