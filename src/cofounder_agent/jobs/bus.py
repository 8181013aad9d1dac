"""The in-process event bus: per-job sequence numbers, fan-out to subscribers, a bounded replay log."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from cofounder_agent.jobs.events import JobEvent

# The replay log's bounds (memory stays flat however long the server runs):
# - a job keeps its latest REPLAY_EVENTS events (a stream resuming from an older number starts
#   again from the job's current state);
# - a finished job's log is dropped REPLAY_KEEP_S after its end (time for a client to reconnect);
# - at most REPLAY_JOBS jobs keep a log; beyond that the oldest without a subscriber goes.
REPLAY_EVENTS = 2000
REPLAY_KEEP_S = 300.0
REPLAY_JOBS = 1000


@dataclass(frozen=True)
class Delivered:
    """An event with its number in its job's stream (the SSE ``id``)."""

    seq: int
    event: JobEvent


@dataclass
class _Log:
    last: int = 0
    events: deque[Delivered] = field(default_factory=lambda: deque(maxlen=REPLAY_EVENTS))
    subscribers: set[Subscription] = field(default_factory=set)
    drop: asyncio.TimerHandle | None = None


class Subscription:
    """One listener on one job: ``replayed`` (when asked), then live events from ``get``.

    ``last_seq`` is the job's latest number when the subscription began; ``get`` yields each
    later event once, in number order (an event handed over twice is dropped).
    """

    def __init__(
        self,
        unsubscribe: Callable[[Subscription], None],
        job_id: str,
        last_seq: int,
        replayed: list[Delivered],
        complete: bool,
    ) -> None:
        self.job_id, self.last_seq, self.complete = job_id, last_seq, complete
        self.replayed = replayed  # logged events after the number asked for, oldest first
        self.delivered = last_seq  # the latest number handed to ``put``
        self._unsubscribe = unsubscribe
        self._queue: asyncio.Queue[Delivered] = asyncio.Queue()

    def put(self, item: Delivered) -> None:
        if item.seq > self.delivered:
            self.delivered = item.seq
            self._queue.put_nowait(item)

    async def get(self) -> Delivered:
        return await self._queue.get()

    def close(self) -> None:
        self._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class LocalEventBus:
    """Publishing never blocks the publisher; each subscriber has its own queue."""

    def __init__(self) -> None:
        self._logs: OrderedDict[str, _Log] = OrderedDict()

    def publish(self, event: JobEvent) -> None:
        """Number the event in its job's stream, log it and hand it to the job's subscribers."""
        log = self._log(event.job_id)
        log.last += 1
        item = Delivered(log.last, event)
        log.events.append(item)
        for subscription in log.subscribers:
            subscription.put(item)

    async def subscribe(self, job_id: str, after: int | None = None) -> Subscription:
        """Listen to a job from now; with ``after``, first replay its logged events numbered above it.

        ``complete`` says whether the log still held every event after ``after``.
        """
        log = self._log(job_id)
        replayed: list[Delivered] = []
        complete = after is None
        if after is not None:
            replayed = [item for item in log.events if item.seq > after]
            first = log.events[0].seq if log.events else log.last + 1
            complete = after <= log.last and after >= first - 1
        subscription = Subscription(self.unsubscribe, job_id, log.last, replayed if complete else [], complete)
        log.subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        log = self._logs.get(subscription.job_id)
        if log is not None:
            log.subscribers.discard(subscription)

    def subscribed(self) -> list[str]:
        """Jobs someone listens to now."""
        return [job_id for job_id, log in self._logs.items() if log.subscribers]

    def ended(self, job_id: str) -> None:
        """The job's stream is over: keep its log a while for reconnecting clients, then drop it."""
        log = self._logs.get(job_id)
        if log is not None and log.drop is None:
            loop = asyncio.get_running_loop()
            log.drop = loop.call_later(REPLAY_KEEP_S, self._drop, job_id, log)

    async def close(self) -> None:
        """Nothing to write or release: the logs live and die with the process."""

    def _drop(self, job_id: str, log: _Log) -> None:
        if self._logs.get(job_id) is log and not log.subscribers:
            del self._logs[job_id]

    def _log(self, job_id: str) -> _Log:
        log = self._logs.get(job_id)
        if log is None:
            log = self._logs[job_id] = _Log()
            if len(self._logs) > REPLAY_JOBS:
                # An ended job's log first: a running job's numbering must not start over.
                idle = [key for key, old in self._logs.items() if not old.subscribers and old is not log]
                ended = [key for key in idle if self._logs[key].drop is not None]
                if ended or idle:
                    self._logs.pop((ended or idle)[0])
        return log
