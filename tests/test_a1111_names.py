"""A1111's sampler and schedule-type names onto our schedulers: every pair we name maps back; others are refused."""

from __future__ import annotations

from typing import get_args

import pytest

from cofounder_agent.contract.a1111_names import A1111_NAMES, SAMPLERS, SCHEDULE_TYPES, our_scheduler
from cofounder_agent.contract.errors import InvalidField
from cofounder_agent.contract.params import SchedulerName


def test_each_of_our_schedulers_has_a1111_names_that_map_back_to_it() -> None:
    assert set(A1111_NAMES) == set(get_args(SchedulerName))
    for ours, (sampler, label) in A1111_NAMES.items():
        assert our_scheduler(sampler, label) == ours


@pytest.mark.parametrize(
    ("sampler", "schedule", "ours"),
    [
        ("Euler a", "automatic", "euler_a"),  # webuiapi's defaults
        ("DDIM", "normal", "ddim"),  # SillyTavern's defaults
        ("DPM++ 2M Karras", None, "dpmpp_2m_karras"),  # the older combined spelling
        ("dpm++ 2m", "Automatic", "dpmpp_2m_karras"),  # A1111's default for DPM++ 2M is Karras
        ("k_euler", "", "euler"),
        (None, None, None),  # open-webui sends neither: the server's default
        (None, "Karras", "dpmpp_2m_karras"),
    ],
)
def test_what_clients_send_maps_onto_our_schedulers(sampler: str | None, schedule: str | None, ours: str) -> None:
    assert our_scheduler(sampler, schedule) == ours


@pytest.mark.parametrize(
    ("sampler", "schedule", "field", "names"),
    [
        ("LMS", None, "sampler_name", [s.name for s in SAMPLERS]),
        ("Euler", "karras", "scheduler", ["Automatic", "Uniform"]),
        ("Euler", "bogus", "scheduler", [label for _, label in SCHEDULE_TYPES]),
    ],
)
def test_anything_else_is_refused_with_the_accepted_names(
    sampler: str, schedule: str | None, field: str, names: list[str]
) -> None:
    with pytest.raises(InvalidField) as refused:
        our_scheduler(sampler, schedule)
    assert refused.value.field == field and all(name in refused.value.message for name in names)
