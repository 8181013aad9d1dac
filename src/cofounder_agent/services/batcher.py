"""Micro-batching: generations that arrive together and can share one call run as one batch.

Requests with equal ``batch_key`` (size, schedule, guidance, refiner settings: everything but
prompts and seeds) made in the same turn of the event loop are handed to the engine as one
batch of at most ``max_size``: the worker starts a batch's jobs side by side, and each reaches
``generate`` before the loop turns (the worker is where a batch waits for companions). Each
keeps its own generator, so its image is the one it would get alone, within the batched
kernels' rounding. Torch-free: this runs on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cofounder_agent.contract.params import GenerationParams, GenerationResult, batch_key

if TYPE_CHECKING:
    from cofounder_agent.contract.checks import StepCallback
    from cofounder_agent.contract.control import JobControl

# (params, on_step, keep_base, each member's control) -> each member's result or error.
RunBatch = Callable[
    [list[GenerationParams], list["StepCallback | None"], bool, list["JobControl | None"]],
    Awaitable[list[GenerationResult | BaseException]],
]


@dataclass
class _Member:
    params: GenerationParams
    on_step: StepCallback | None
    control: JobControl | None
    future: asyncio.Future[GenerationResult]


@dataclass
class _Group:
    keep_base: bool
    members: list[_Member] = field(default_factory=list)
    timer: asyncio.Handle | None = None


class Batcher:
    def __init__(self, run_batch: RunBatch, max_size: int) -> None:
        self._run_batch, self.max_size = run_batch, max_size
        self._pending: dict[tuple[object, ...], _Group] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def generate(
        self,
        params: GenerationParams,
        on_step: StepCallback | None = None,
        keep_base: bool = False,
        control: JobControl | None = None,
    ) -> GenerationResult:
        loop = asyncio.get_running_loop()
        key = batch_key(params, keep_base)
        group = self._pending.get(key)
        if group is None:
            group = self._pending[key] = _Group(keep_base)
            group.timer = loop.call_soon(self._flush, key)
        future: asyncio.Future[GenerationResult] = loop.create_future()
        group.members.append(_Member(params, on_step, control, future))
        if len(group.members) >= self.max_size:
            self._flush(key)
        return await future

    def _flush(self, key: tuple[object, ...]) -> None:
        group = self._pending.pop(key, None)
        if group is None:
            return
        if group.timer is not None:
            group.timer.cancel()
        task = asyncio.create_task(self._run(group), name="generate-batch")
        self._running.add(task)  # a reference, so the task is not collected mid-run
        task.add_done_callback(self._running.discard)

    async def _run(self, group: _Group) -> None:
        members = group.members
        try:
            outcomes = await self._run_batch(
                [m.params for m in members], [m.on_step for m in members], group.keep_base, [m.control for m in members]
            )
        except BaseException as exc:  # the whole batch failed (or every member cancelled)
            outcomes = [exc] * len(members)
        for member, outcome in zip(members, outcomes, strict=True):
            future = member.future
            if future.done():  # its job stopped waiting (shutdown)
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
