"""AUTOMATIC1111's sampler and schedule-type names, mapped onto this service's schedulers.

A1111 (1.10) names a sampler (``Euler a``, ``DPM++ 2M``) and, separately, a schedule type
(``Automatic``, ``Karras``, ...); older clients put both in one name (``DPM++ 2M Karras``).
Each pair this service can run maps to one of its schedulers; any other pair is refused with
the names that are accepted, so a client never gets a different sampler than it asked for
without being told.
"""

from __future__ import annotations

from dataclasses import dataclass

from cofounder_agent.contract.errors import InvalidField
from cofounder_agent.contract.params import SchedulerName


@dataclass(frozen=True)
class Sampler:
    """An A1111 sampler this service runs: its name, aliases and our scheduler per schedule type."""

    name: str
    aliases: tuple[str, ...]
    # A1111's schedule type (lower case) -> our scheduler; "automatic" is the sampler's own default.
    schedules: dict[str, SchedulerName]


# The uniform family: A1111's default sigmas for these samplers, what diffusers' scheduler of
# the same name does with its default spacing.
_PLAIN = ("automatic", "uniform", "normal", "simple", "sgm_uniform")
SAMPLERS: tuple[Sampler, ...] = (
    Sampler("Euler a", ("k_euler_a", "k_euler_ancestral"), dict.fromkeys(_PLAIN, "euler_a")),
    Sampler("Euler", ("k_euler",), dict.fromkeys(_PLAIN, "euler")),
    # A1111's DPM++ 2M defaults to Karras sigmas ("automatic" = karras for it).
    Sampler(
        "DPM++ 2M",
        ("k_dpmpp_2m",),
        {**dict.fromkeys(_PLAIN, "dpmpp_2m"), "automatic": "dpmpp_2m_karras", "karras": "dpmpp_2m_karras"},
    ),
    Sampler("Heun", ("k_heun",), dict.fromkeys(_PLAIN, "heun")),
    Sampler("DDIM", ("ddim",), dict.fromkeys((*_PLAIN, "ddim"), "ddim")),
    Sampler("UniPC", ("unipc",), dict.fromkeys(_PLAIN, "unipc")),
)

# A1111's schedule types: (name, label), in A1111's order; only those some sampler above maps.
SCHEDULE_TYPES: tuple[tuple[str, str], ...] = tuple(
    (name, label)
    for name, label in (
        ("automatic", "Automatic"),
        ("uniform", "Uniform"),
        ("karras", "Karras"),
        ("sgm_uniform", "SGM Uniform"),
        ("simple", "Simple"),
        ("normal", "Normal"),
        ("ddim", "DDIM"),
    )
    if any(name in sampler.schedules for sampler in SAMPLERS)
)
_SCHEDULE_BY_LABEL = {key.lower(): name for name, label in SCHEDULE_TYPES for key in (name, label)}


def _find(name: str) -> Sampler | None:
    wanted = name.strip().lower()
    return next((s for s in SAMPLERS if wanted in (s.name.lower(), *s.aliases)), None)


def our_scheduler(
    sampler_name: str | None,
    scheduler: str | None,
    *,
    sampler_field: str = "sampler_name",
    scheduler_field: str = "scheduler",
) -> SchedulerName | None:
    """Our scheduler for an A1111 sampler and schedule type; None: neither given (the server's default).

    Raises ``InvalidField`` naming the request's field, with the accepted names.
    """
    schedule = None if scheduler is None or not scheduler.strip() else scheduler.strip().lower()
    if schedule is not None and schedule not in _SCHEDULE_BY_LABEL:
        accepted = ", ".join(label for _, label in SCHEDULE_TYPES)
        raise InvalidField(scheduler_field, f"unknown schedule type {scheduler!r}; accepted: {accepted}")
    schedule = _SCHEDULE_BY_LABEL.get(schedule or "automatic", "automatic")
    if sampler_name is None or not sampler_name.strip():
        return None if schedule == "automatic" else _schedule_only(schedule, scheduler_field)
    sampler = _find(sampler_name)
    if sampler is None:  # "DPM++ 2M Karras": the older spelling of sampler + schedule type
        base, _, suffix = sampler_name.strip().rpartition(" ")
        if base and (found := _find(base)) is not None and suffix.lower() in _SCHEDULE_BY_LABEL:
            sampler, schedule = found, _SCHEDULE_BY_LABEL[suffix.lower()]
    if sampler is None:
        accepted = ", ".join(s.name for s in SAMPLERS)
        raise InvalidField(sampler_field, f"unknown sampler {sampler_name!r}; accepted: {accepted}")
    ours = sampler.schedules.get(schedule)
    if ours is None:
        labels = ", ".join(label for name, label in SCHEDULE_TYPES if name in sampler.schedules)
        raise InvalidField(scheduler_field, f"{sampler.name} runs with the schedule types {labels}, not {scheduler!r}")
    return ours


def _schedule_only(schedule: str, field: str) -> SchedulerName | None:
    """A schedule type without a sampler: Karras picks DPM++ 2M Karras; the others leave the default."""
    return "dpmpp_2m_karras" if schedule == "karras" else None


# Our scheduler -> (A1111 sampler, schedule type label), as infotexts name them.
A1111_NAMES: dict[SchedulerName, tuple[str, str]] = {
    "euler": ("Euler", "Automatic"),
    "euler_a": ("Euler a", "Automatic"),
    "dpmpp_2m": ("DPM++ 2M", "Uniform"),
    "dpmpp_2m_karras": ("DPM++ 2M", "Karras"),
    "ddim": ("DDIM", "Automatic"),
    "heun": ("Heun", "Automatic"),
    "unipc": ("UniPC", "Automatic"),
}
