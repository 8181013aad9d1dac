"""In-process fan-out of job events to server-sent-event subscribers."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

Event = dict[str, Any]


class EventHub:
    """Each subscriber gets its own queue; publishing never blocks the publisher."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[Event]]] = defaultdict(set)

    def subscribe(self, job_id: str) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers[job_id].add(queue)
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[Event]) -> None:
        subscribers = self._subscribers.get(job_id)
        if subscribers is not None:
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[job_id]

    def subscribed(self) -> list[str]:
        return list(self._subscribers)

    def publish(self, job_id: str, event: Event) -> None:
        for queue in self._subscribers.get(job_id, ()):
            queue.put_nowait(event)


def terminal_event(job: Any) -> Event:
    """The last event of a job's stream: its final status, reason and images."""
    return {"type": job.status, "job_id": job.id, "error": job.error, "image_ids": list(job.image_ids)}
