"""The job API: submit (202), look, list, cancel, and follow a job's events."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import WithJsonSchema

from cofounder_agent.deps import GalleryDep, JobServiceDep
from cofounder_agent.errors import KEY_REUSED
from cofounder_agent.jobs.tables import JobRow
from cofounder_agent.schemas import ErrorBody
from cofounder_agent.schemas.jobs import JobCreate, JobPublic, JobsPublic, JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 422: {"model": ErrorBody}}


async def _job(job_id: str, jobs: JobServiceDep) -> JobRow:
    # Resolved before a stream starts, so an unknown id is a plain 404, not a broken stream.
    return await jobs.get_row(job_id)


REPLAY: dict[int | str, dict[str, Any]] = {
    200: {"model": JobPublic, "description": "The job this Idempotency-Key already made"}
}


SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    **REPLAY,
    422: {"model": ErrorBody, "description": KEY_REUSED},
    429: {"model": ErrorBody},
}


@router.post("", status_code=202, responses=SUBMIT_ERRORS)
async def submit_job(
    body: JobCreate,
    jobs: JobServiceDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobPublic:
    """Queue a generation; answers at once with the job id and its queue position.

    The same ``Idempotency-Key`` with the same body answers (200) with the job it made; with
    another body, a 422 ``idempotency_key_reused``.
    """
    job, new = await jobs.submit(body, idempotency_key)
    if not new:
        response.status_code = 200  # the job this Idempotency-Key already made
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


@router.get("")
async def list_jobs(
    jobs: JobServiceDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JobsPublic:
    """List jobs, newest first."""
    return await jobs.list(status, limit, offset)


@router.get("/{job_id}", responses=ERRORS)
async def get_job(job_id: str, jobs: JobServiceDep) -> JobPublic:
    """A job's status, stage, step/total, ETA, result image ids and error reason."""
    return await jobs.get(job_id)


@router.delete("/{job_id}", responses={**ERRORS, 409: {"model": ErrorBody}})
async def cancel_job(job_id: str, jobs: JobServiceDep) -> JobPublic:
    """Cancel: a queued job never starts, a running one stops at its next denoising step."""
    return await jobs.cancel(job_id)


@router.delete("/{job_id}/intermediates", status_code=204, responses=ERRORS)
async def delete_intermediates(job_id: str, jobs: JobServiceDep, gallery: GalleryDep) -> Response:
    """Delete the intermediate pictures a job kept; its final images stay."""
    job = await jobs.get_row(job_id)
    found = await jobs.store.intermediate_ids(job_id)
    listed = {i for result in job.results for i in result.get("intermediate_ids", [])}
    # The job's results first: an interrupted delete leaves unlisted pictures a retry finds,
    # never listed ids that lead nowhere.
    await jobs.store.forget_intermediates(job_id, listed | set(found))
    for image_id in found:
        await gallery.delete_image(image_id)
    return Response(status_code=204)


@router.get("/{job_id}/events", response_class=EventSourceResponse, responses=ERRORS)
async def job_events(
    job: Annotated[JobRow, Depends(_job)],
    jobs: JobServiceDep,
    # Documented as what it is when sent, an integer: "null" is not an event id (a 422 too).
    last_event_id: Annotated[
        int | None, Header(ge=0, le=2**53), WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 2**53})
    ] = None,
) -> AsyncIterable[ServerSentEvent]:
    """Server-sent events: queued, started, step, image, then succeeded/failed/cancelled.

    Each event's ``id`` is its number in the job's stream; a client that reconnects with
    ``Last-Event-ID`` gets the events after it (or, once they are forgotten, the job's state).
    """
    async for delivered in jobs.events(job, last_event_id):
        event = delivered.event
        yield ServerSentEvent(event=event.type, data=event.payload(), id=str(delivered.seq))
