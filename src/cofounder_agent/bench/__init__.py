"""``cofounder-agent bench``: suites that print figures (never timed tests).

Each suite is a module with ``run(args) -> Report``; :func:`run_suite` prints its table and,
with ``--json FILE``, writes the report with a description of the machine.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

# Each suite's module: add_arguments(group) and run(args) -> Report. Imported lazily: torch
# loads only when a suite runs.
SUITES = {
    "engine": "cofounder_agent.bench.engine",
    "service": "cofounder_agent.bench.service",
    "gpu": "cofounder_agent.bench.gpu",
    "flops": "cofounder_agent.bench.flops",
    "scale": "cofounder_agent.bench.scale",
}


def add_parser(sub: Any) -> None:
    bench = sub.add_parser("bench", help="run a benchmark suite and print its figures")
    bench.add_argument("--suite", choices=sorted(SUITES), required=True)
    bench.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the figures as JSON")
    for name, module in SUITES.items():
        importlib.import_module(module).add_arguments(bench.add_argument_group(f"--suite {name}"))


def run_suite(args: argparse.Namespace) -> None:
    from cofounder_agent.bench.common import emit

    emit(importlib.import_module(SUITES[args.suite]).run(args), args.json)
