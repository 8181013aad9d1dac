"""Python SDK for the job API: ``Client`` (sync) and ``AsyncClient`` with the same methods.

Torch-free by design: it needs only httpx, httpx-sse and the API's pydantic models.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import httpx
from httpx_sse import aconnect_sse, connect_sse
from pydantic import BaseModel

from cofounder_agent.client_gallery import AsyncGalleryCalls, GalleryCalls
from cofounder_agent.schemas.jobs import (
    BoardPublic,
    BoardsPublic,
    ImagesPublic,
    JobCreate,
    JobPublic,
    JobsPublic,
    RecipeTemplate,
)

M = TypeVar("M", bound=BaseModel)

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# Fixed names for what the server sends: platforms' mime tables differ (".jpe", no webp on older ones).
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "application/zip": ".zip"}
# A sync stream's read timeout is fixed when it opens and the server pings idle streams, so
# Client.wait reconnects after this much silence to look at its own deadline.
_IDLE_SLICE_S = 2.0


class ApiError(Exception):
    """An error answer from the server: ``{"error": {"code", "message", "field"?}}``."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.field, self.retry_after = field, retry_after

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """Read an error answer (its body must have been read)."""
        try:
            error = response.json()["error"]
            code, message, field = str(error["code"]), str(error["message"]), error.get("field")
        except (ValueError, KeyError, TypeError):  # not our shape: a proxy's page, say
            code, message, field = "http_error", response.text[:200] or response.reason_phrase, None
        retry = response.headers.get("Retry-After", "")
        return cls(response.status_code, code, message, field, int(retry) if retry.isdigit() else None)


@dataclass(frozen=True)
class JobEvent:
    """One server-sent event of a job: ``queued``, ``started``, ``step``, ``image`` or a terminal one."""

    type: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL


def _id(value: str) -> str:
    # Ids become one path segment: quoting keeps "../x" from naming another route.
    return quote(value, safe="")


def _job(job_id: str, tail: str = "") -> str:
    return f"/v1/jobs/{_id(job_id)}{tail}"


def _board(board_id: str, tail: str = "") -> str:
    return f"/v1/boards/{_id(board_id)}{tail}"


def _image(image_id: str) -> str:
    return f"/v1/images/{_id(image_id)}"


def _recipe(recipe: JobCreate | dict[str, Any]) -> dict[str, Any]:
    # Unset options stay unsent so the server fills in its own defaults when it queues the job.
    return recipe.model_dump(mode="json", exclude_unset=True) if isinstance(recipe, JobCreate) else recipe


def _idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def _page(limit: int, offset: int, status: str | None = None) -> dict[str, Any]:
    return {"limit": limit, "offset": offset} | ({"status": status} if status else {})


def _http_options(base_url: str, api_key: str | None, timeout: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return {"base_url": base_url, "headers": headers, "timeout": timeout}


def _destination(path: str | Path) -> Path:
    """``path`` as given; one ending in "/" names a directory, made if missing."""
    if isinstance(path, str) and path.endswith(("/", os.sep)):
        Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


def _target(path: Path, stem: str, content_type: str) -> Path:
    """Name the file a download goes to: ``path``, or ``<stem><ext>`` inside it when it is a directory."""
    if not path.is_dir():
        return path
    media = content_type.partition(";")[0].strip().lower()
    return path / f"{stem}{_EXTENSIONS.get(media) or mimetypes.guess_extension(media) or '.bin'}"


def _timed_out(job_id: str, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"job {job_id} did not finish within {timeout:g} s")


class Client(GalleryCalls):
    """Talk to a cofounder-agent server, blocking."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60) -> None:
        self._timeout = timeout
        self._http = httpx.Client(**_http_options(base_url, api_key, timeout))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, url, **kwargs)
        if response.is_error:
            raise ApiError.from_response(response)
        return response

    def _json(self, model: type[M], method: str, url: str, **kwargs: Any) -> M:
        return model.model_validate_json(self._request(method, url, **kwargs).content)

    def submit(self, recipe: JobCreate | dict[str, Any], idempotency_key: str | None = None) -> JobPublic:
        """Queue a job; a repeated idempotency key returns the job it made the first time."""
        return self._json(JobPublic, "POST", "/v1/jobs", json=_recipe(recipe), headers=_idempotency(idempotency_key))

    def get(self, job_id: str) -> JobPublic:
        """Fetch a job's current state."""
        return self._json(JobPublic, "GET", _job(job_id))

    def list(self, status: str | None = None, limit: int = 20, offset: int = 0) -> JobsPublic:
        """List jobs, newest first."""
        return self._json(JobsPublic, "GET", "/v1/jobs", params=_page(limit, offset, status))

    def cancel(self, job_id: str) -> JobPublic:
        """Cancel a queued or running job."""
        return self._json(JobPublic, "DELETE", _job(job_id))

    def recipe(self, name: str) -> RecipeTemplate:
        """A named recipe's options (what a job naming it starts from)."""
        return self._json(RecipeTemplate, "GET", f"/v1/recipes/{_id(name)}")

    def events(self, job_id: str) -> Iterator[JobEvent]:
        """Follow a job's events up to and including its terminal one."""
        return self._events(job_id, read=None)

    def _events(self, job_id: str, read: float | None) -> Iterator[JobEvent]:
        timeout = httpx.Timeout(self._timeout, read=read)
        with connect_sse(self._http, "GET", _job(job_id, "/events"), timeout=timeout) as source:
            if source.response.is_error:
                source.response.read()
                raise ApiError.from_response(source.response)
            for sse in source.iter_sse():
                event = JobEvent(sse.event, sse.json())
                yield event
                if event.terminal:
                    return

    def wait(self, job_id: str, timeout: float | None = None) -> JobPublic:
        """Block until the job ends and return it; raise TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ended = False
        while not ended:
            if deadline is not None and time.monotonic() >= deadline:
                raise _timed_out(job_id, timeout)
            read = None if deadline is None else min(deadline - time.monotonic(), _IDLE_SLICE_S)
            try:
                for event in self._events(job_id, read):
                    ended = event.terminal
                    if not ended and deadline is not None and time.monotonic() >= deadline:
                        raise _timed_out(job_id, timeout)
            except httpx.ReadTimeout:
                pass  # silence, not failure: the stream restarts from the job's current state
        return self.get(job_id)

    def image_bytes(self, image_id: str) -> bytes:
        """Fetch an image's bytes."""
        return self._request("GET", _image(image_id)).content

    def download(self, image_id: str, path: str | Path) -> Path:
        """Save an image to ``path`` (a file, or a directory to put ``<image_id>.<ext>`` in)."""
        return self._download(_image(image_id), _destination(path), image_id)

    def _download(self, url: str, path: Path, stem: str) -> Path:
        with self._http.stream("GET", url) as response:
            if response.is_error:
                response.read()
                raise ApiError.from_response(response)
            target = _target(path, stem, response.headers.get("content-type", ""))
            # Written aside and renamed, so a broken download never leaves a truncated file behind.
            part = target.with_name(target.name + ".part")
            try:
                with part.open("wb") as file:
                    for chunk in response.iter_bytes():
                        file.write(chunk)
                part.replace(target)
            finally:
                part.unlink(missing_ok=True)
        return target

    def create_board(self, name: str) -> BoardPublic:
        """Create a board."""
        return self._json(BoardPublic, "POST", "/v1/boards", json={"name": name})

    def list_boards(self) -> BoardsPublic:
        """List all boards."""
        return self._json(BoardsPublic, "GET", "/v1/boards")

    def rename_board(self, board_id: str, name: str) -> BoardPublic:
        """Rename a board."""
        return self._json(BoardPublic, "PATCH", _board(board_id), json={"name": name})

    def delete_board(self, board_id: str, delete_images: bool = False) -> None:
        """Delete a board; its images are kept unless ``delete_images``."""
        self._request("DELETE", _board(board_id), params={"delete_images": str(delete_images).lower()})

    def board_images(self, board_id: str, limit: int = 50, offset: int = 0) -> ImagesPublic:
        """List a board's images."""
        return self._json(ImagesPublic, "GET", _board(board_id, "/images"), params=_page(limit, offset))

    def download_board(self, board_id: str, path: str | Path) -> Path:
        """Save a board's images as a zip to ``path`` (a file, or a directory for ``<board_id>.zip``)."""
        return self._download(_board(board_id, "/download"), _destination(path), board_id)


class AsyncClient(AsyncGalleryCalls):
    """Talk to a cofounder-agent server from asyncio code; the methods mirror ``Client``'s."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60) -> None:
        self._timeout = timeout
        self._http = httpx.AsyncClient(**_http_options(base_url, api_key, timeout))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self._http.request(method, url, **kwargs)
        if response.is_error:
            raise ApiError.from_response(response)
        return response

    async def _json(self, model: type[M], method: str, url: str, **kwargs: Any) -> M:
        return model.model_validate_json((await self._request(method, url, **kwargs)).content)

    async def submit(self, recipe: JobCreate | dict[str, Any], idempotency_key: str | None = None) -> JobPublic:
        """Queue a job; a repeated idempotency key returns the job it made the first time."""
        return await self._json(
            JobPublic, "POST", "/v1/jobs", json=_recipe(recipe), headers=_idempotency(idempotency_key)
        )

    async def get(self, job_id: str) -> JobPublic:
        """Fetch a job's current state."""
        return await self._json(JobPublic, "GET", _job(job_id))

    async def list(self, status: str | None = None, limit: int = 20, offset: int = 0) -> JobsPublic:
        """List jobs, newest first."""
        return await self._json(JobsPublic, "GET", "/v1/jobs", params=_page(limit, offset, status))

    async def cancel(self, job_id: str) -> JobPublic:
        """Cancel a queued or running job."""
        return await self._json(JobPublic, "DELETE", _job(job_id))

    async def recipe(self, name: str) -> RecipeTemplate:
        """A named recipe's options (what a job naming it starts from)."""
        return await self._json(RecipeTemplate, "GET", f"/v1/recipes/{_id(name)}")

    async def events(self, job_id: str) -> AsyncIterator[JobEvent]:
        """Follow a job's events up to and including its terminal one."""
        timeout = httpx.Timeout(self._timeout, read=None)
        async with aconnect_sse(self._http, "GET", _job(job_id, "/events"), timeout=timeout) as source:
            if source.response.is_error:
                await source.response.aread()
                raise ApiError.from_response(source.response)
            async for sse in source.aiter_sse():
                event = JobEvent(sse.event, sse.json())
                yield event
                if event.terminal:
                    return

    # ASYNC109 prefers a cancel scope around the call; `timeout` is kept so the method mirrors Client.wait.
    async def wait(self, job_id: str, timeout: float | None = None) -> JobPublic:  # noqa: ASYNC109
        """Wait until the job ends and return it; raise TimeoutError after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                ended = False
                while not ended:  # a stream cut short (a proxy, a restart) is followed again
                    async for event in self.events(job_id):
                        ended = event.terminal
        except TimeoutError as exc:
            raise _timed_out(job_id, timeout) from exc
        return await self.get(job_id)

    async def image_bytes(self, image_id: str) -> bytes:
        """Fetch an image's bytes."""
        return (await self._request("GET", _image(image_id))).content

    async def download(self, image_id: str, path: str | Path) -> Path:
        """Save an image to ``path`` (a file, or a directory to put ``<image_id>.<ext>`` in)."""
        return await self._download(_image(image_id), _destination(path), image_id)

    async def _download(self, url: str, path: Path, stem: str) -> Path:
        async with self._http.stream("GET", url) as response:
            if response.is_error:
                await response.aread()
                raise ApiError.from_response(response)
            target = _target(path, stem, response.headers.get("content-type", ""))
            part = anyio.Path(target.with_name(target.name + ".part"))
            try:
                async with await anyio.open_file(part, "wb") as file:
                    async for chunk in response.aiter_bytes():
                        await file.write(chunk)
                await part.replace(target)
            finally:
                await part.unlink(missing_ok=True)
        return target

    async def create_board(self, name: str) -> BoardPublic:
        """Create a board."""
        return await self._json(BoardPublic, "POST", "/v1/boards", json={"name": name})

    async def list_boards(self) -> BoardsPublic:
        """List all boards."""
        return await self._json(BoardsPublic, "GET", "/v1/boards")

    async def rename_board(self, board_id: str, name: str) -> BoardPublic:
        """Rename a board."""
        return await self._json(BoardPublic, "PATCH", _board(board_id), json={"name": name})

    async def delete_board(self, board_id: str, delete_images: bool = False) -> None:
        """Delete a board; its images are kept unless ``delete_images``."""
        await self._request("DELETE", _board(board_id), params={"delete_images": str(delete_images).lower()})

    async def board_images(self, board_id: str, limit: int = 50, offset: int = 0) -> ImagesPublic:
        """List a board's images."""
        return await self._json(ImagesPublic, "GET", _board(board_id, "/images"), params=_page(limit, offset))

    async def download_board(self, board_id: str, path: str | Path) -> Path:
        """Save a board's images as a zip to ``path`` (a file, or a directory for ``<board_id>.zip``)."""
        return await self._download(_board(board_id, "/download"), _destination(path), board_id)
