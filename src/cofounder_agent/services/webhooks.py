"""Job-finished webhooks: POST the final job JSON, signed, retried with backoff, never fatal."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from typing import TYPE_CHECKING

import httpx
from pydantic import SecretStr

from cofounder_agent.services.egress import EgressRefused, check_shape

if TYPE_CHECKING:
    from cofounder_agent.jobs.service import JobService
    from cofounder_agent.jobs.tables import JobRow

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Cofounder-Signature"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``timestamp + "." + body`` (the timestamp stops replays)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookSender:
    def __init__(
        self, http: httpx.AsyncClient, secret: SecretStr | None, attempts: int = 5, first_delay_s: float = 1.0
    ) -> None:
        self.http, self.secret, self.attempts, self.first_delay_s = http, secret, attempts, first_delay_s
        self._tasks: set[asyncio.Task[bool]] = set()

    def send_later(self, url: str, body: bytes, job_id: str) -> None:
        """Deliver in the background; the worker goes on with the next job meanwhile."""
        task = asyncio.create_task(self.deliver(url, body, job_id))
        self._tasks.add(task)  # keep a reference until done (asyncio holds only weak ones)
        task.add_done_callback(self._tasks.discard)

    async def deliver(self, url: str, body: bytes, job_id: str) -> bool:
        """POST ``body`` until a 2xx, retrying 5xx, 429 and network errors with exponential backoff."""
        delay = self.first_delay_s
        where = _origin(url)  # logs name the origin only: a path or query may carry a token
        for attempt in range(1, self.attempts + 1):
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "X-Cofounder-Timestamp": timestamp}
            if self.secret is not None:
                headers[SIGNATURE_HEADER] = sign(self.secret.get_secret_value(), timestamp, body)
            try:
                check_shape(url)  # jobs stored before the egress check was made at submit
                response = await self.http.post(url, content=body, headers=headers)
                if response.status_code < 300:
                    return True
                retry = response.status_code >= 500 or response.status_code == 429
                reason = f"HTTP {response.status_code}"
            except EgressRefused as exc:
                # The policy will not change its mind on a retry (the transport raised it at connect).
                log.warning("webhook for job %s to %s refused by the egress policy: %s", job_id, where, exc.reason)
                return False
            except httpx.HTTPError as exc:
                retry, reason = True, type(exc).__name__
            log.warning("webhook for job %s: attempt %s/%s failed (%s)", job_id, attempt, self.attempts, reason)
            if not retry or attempt == self.attempts:
                break
            await asyncio.sleep(delay)
            delay *= 2
        log.error("webhook for job %s not delivered to %s", job_id, where)
        return False

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def _origin(url: str) -> str:
    try:
        parsed = httpx.URL(url)
        return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")
    except (httpx.InvalidURL, ValueError, TypeError):
        return "(an invalid URL)"


class JobWebhooks:
    """The finish hook that sends a job's webhook: its final JSON, as GET /v1/jobs/{id} gives it."""

    def __init__(self, sender: WebhookSender, jobs: JobService) -> None:
        self.sender, self.jobs = sender, jobs

    async def on_finish(self, job: JobRow) -> None:
        if job.callback_url:
            body = (await self.jobs.public(job)).model_dump_json().encode()
            self.sender.send_later(job.callback_url, body, job.id)
