"""How many denoising steps diffusers runs for a schedule, computed without torch.

The web tier refuses schedules in which a stage would run no step and sizes progress bars
before anything runs, so it needs diffusers' step counts exactly. These come from the
scheduler's timesteps, not from products like ``steps * switch_at``: the ensemble split is a
cutoff on the timesteps, and Heun runs two loop iterations per step. Each function mirrors
diffusers 0.42's arithmetic (numpy dtypes included) for SDXL's scheduler configuration, and
tests/test_schedule_property.py holds it against the real pipelines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # params asks this module about schedules: no import cycle at run time
    from cofounder_agent.contract.params import SchedulerName

# Loop iterations per step: Heun evaluates the model twice per step, the others once.
_ORDER: dict[str, int] = {"heun": 2}
# Schedulers whose "leading" spacing divides the training range into steps + 1 parts.
_MULTISTEP = {"dpmpp_2m", "dpmpp_2m_karras", "unipc"}


@dataclass(frozen=True)
class SchedulerConfig:
    """The scheduler settings that decide the timesteps (SDXL's by default)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    steps_offset: int = 1


@cache
def sdxl_config() -> SchedulerConfig:
    """SDXL's scheduler configuration, as published with the model (the tiny model's too)."""
    text = resources.files("cofounder_agent.engine").joinpath("sdxl_configs/scheduler.json").read_text()
    data = json.loads(text)
    # Only SDXL's kind of schedule is mirrored here; refuse to guess about another.
    expected = {"timestep_spacing": "leading", "beta_schedule": "scaled_linear", "use_karras_sigmas": False}
    for key, value in expected.items():
        if data.get(key) != value:
            raise ValueError(f"scheduler.json: {key}={data.get(key)!r} is not mirrored (only {value!r})")
    return SchedulerConfig(data["num_train_timesteps"], data["beta_start"], data["beta_end"], data["steps_offset"])


def order(scheduler: SchedulerName) -> int:
    """Denoising-loop iterations per step of ``scheduler``."""
    return _ORDER.get(scheduler, 1)


def timesteps(steps: int, scheduler: SchedulerName, config: SchedulerConfig | None = None) -> npt.NDArray[np.float64]:
    """The timesteps ``scheduler.set_timesteps(steps)`` leaves, one per loop iteration (read-only)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    return _timesteps(steps, scheduler, config or sdxl_config())


@lru_cache(maxsize=4096)  # Karras' sigmas take ~25 ms for 200 steps, and the web tier asks per request
def _timesteps(steps: int, scheduler: SchedulerName, config: SchedulerConfig) -> npt.NDArray[np.float64]:
    values = _compute(steps, scheduler, config)
    values.setflags(write=False)
    return values


def _compute(steps: int, scheduler: SchedulerName, config: SchedulerConfig) -> npt.NDArray[np.float64]:
    if scheduler == "dpmpp_2m_karras":
        return _karras_timesteps(steps, config)
    parts = steps + 1 if scheduler in _MULTISTEP else steps
    ratio = config.num_train_timesteps // parts
    # "leading" spacing: multiples of the ratio, highest first (multistep drops the lowest part).
    values = (np.arange(0, parts) * ratio)[::-1][:steps] + config.steps_offset
    if scheduler == "heun":  # every timestep but the first is visited twice
        values = np.concatenate([values[:1], np.repeat(values[1:], 2)])
    return values.astype(np.float64)


def full_steps(steps: int, scheduler: SchedulerName) -> int:
    """Loop iterations (step callbacks) of a whole text-to-image schedule."""
    return len(timesteps(steps, scheduler))


def _kept_steps(steps: int, strength: float) -> int:
    # diffusers' get_timesteps: the last int(steps * strength) steps, in Python floats.
    return min(int(steps * strength), steps)


def img2img_steps(steps: int, strength: float, scheduler: SchedulerName) -> int:
    """Loop iterations of an img2img pass that re-noises by ``strength`` (diffusers' get_timesteps)."""
    t_start = max(steps - _kept_steps(steps, strength), 0)
    return max(len(timesteps(steps, scheduler)) - t_start * order(scheduler), 0)


def img2img_runs(steps: int, strength: float) -> bool:
    """Whether an img2img pass runs any step: the same for every scheduler (a kept step is whole)."""
    return _kept_steps(steps, strength) >= 1


def min_strength(steps: int) -> float:
    """The smallest strength with which an img2img pass of ``steps`` runs a step."""
    strength = 1.0 / steps
    while not img2img_runs(steps, strength):  # 1/steps can round down: 49 * (1/49) < 1
        strength = float(np.nextafter(strength, 2.0))
    return strength


def ensemble_split(steps: int, switch_at: float, scheduler: SchedulerName) -> tuple[int, int]:
    """Loop iterations of the base (``denoising_end``) and the refiner (``denoising_start``)."""
    ts = timesteps(steps, scheduler)
    train = sdxl_config().num_train_timesteps
    # Both pipelines cut the schedule at the same training timestep (diffusers' int(round(...))).
    cutoff = round(train - (switch_at * train))
    base = int(np.count_nonzero(ts >= cutoff))
    refiner = int(np.count_nonzero(ts < cutoff))
    if order(scheduler) == 2 and refiner % 2 == 0:
        refiner += 1  # img2img's get_timesteps never starts between a 2nd-order step's two halves
    return base, refiner


def _alphas_cumprod(config: SchedulerConfig) -> npt.NDArray[np.float32]:
    """SDXL's ``scaled_linear`` alphas_cumprod, bit for bit as torch builds it on a CPU."""
    n = config.num_train_timesteps
    start, end = np.float32(config.beta_start**0.5), np.float32(config.beta_end**0.5)
    step = np.float32((end - start) / np.float32(n - 1))
    index = np.arange(n, dtype=np.float64)
    # torch.linspace: from the start for the first half, from the end for the second, each
    # value one fused multiply-add (exact in float64, then rounded once to float32).
    from_start = np.float64(start) + np.float64(step) * index
    from_end = np.float64(end) - np.float64(step) * (n - 1 - index)
    roots = np.where(index < n // 2, from_start, from_end).astype(np.float32)
    alphas = np.float32(1.0) - roots * roots
    # torch.cumprod accumulates float32 in double on a CPU.
    return np.cumprod(alphas.astype(np.float64)).astype(np.float32)


def _karras_timesteps(steps: int, config: SchedulerConfig) -> npt.NDArray[np.float64]:
    """DPMSolverMultistepScheduler's timesteps with ``use_karras_sigmas`` (mapped back from sigmas)."""
    cumprod = _alphas_cumprod(config)
    sigmas = np.sqrt((np.float32(1.0) - cumprod) / cumprod)  # float32, as torch computes it
    log_sigmas = np.log(sigmas)
    sigma_min, sigma_max = sigmas[0].item(), sigmas[-1].item()
    rho = 7.0  # Karras et al.'s value, as diffusers uses
    ramp = np.linspace(0, 1, steps)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    karras = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return np.array([_sigma_to_t(sigma, log_sigmas) for sigma in karras]).round()


def _sigma_to_t(sigma: np.float64, log_sigmas: npt.NDArray[np.float32]) -> np.float64:
    """Interpolate the training timestep of ``sigma`` in log-sigma space (diffusers' _sigma_to_t)."""
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    dists = log_sigma - log_sigmas[:, np.newaxis]
    low_idx = np.cumsum((dists >= 0), axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high_idx = low_idx + 1
    low, high = log_sigmas[low_idx], log_sigmas[high_idx]
    w = np.clip((low - log_sigma) / (low - high), 0, 1)
    t: np.float64 = ((1 - w) * low_idx + w * high_idx).reshape(np.shape(sigma))
    return t


# The most steps a request may ask for (JobCreate's ``steps`` and ``refiner.steps`` limit).
MAX_STEPS = 200
# switch_at is advised on this grid: a range a person can type.
_SWITCH_GRID = [round(n / 100, 2) for n in range(1, 100)]


def _ensemble_runs(steps: int, switch_at: float, scheduler: SchedulerName) -> bool:
    return min(ensemble_split(steps, switch_at, scheduler)) >= 1


def ensemble_min_steps(switch_at: float, scheduler: SchedulerName) -> int | None:
    """The fewest steps (up to ``MAX_STEPS``) at which both UNets of an ensemble get a step."""
    return next((n for n in range(1, MAX_STEPS + 1) if _ensemble_runs(n, switch_at, scheduler)), None)


def ensemble_switch_range(steps: int, scheduler: SchedulerName) -> tuple[float, float] | None:
    """The lowest and highest switch_at (two decimals) with which both UNets get a step, if any.

    The values that work are one interval: the cutoff timestep must lie between the schedule's
    lowest and highest timestep.
    """
    working = [s for s in _SWITCH_GRID if _ensemble_runs(steps, s, scheduler)]
    return (working[0], working[-1]) if working else None


def img2img_min_steps(strength: float) -> int | None:
    """The fewest steps (up to ``MAX_STEPS``) with which an img2img pass at ``strength`` runs a step."""
    return next((n for n in range(1, MAX_STEPS + 1) if img2img_runs(n, strength)), None)
