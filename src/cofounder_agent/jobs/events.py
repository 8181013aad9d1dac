"""Job events, results and progress as typed models: one class per event (InvokeAI's events_common).

``payload()`` is the JSON an SSE stream carries: its keys are the API's (the CLI and SDK read them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from pydantic import BaseModel, Field

from cofounder_agent.contract.stage import StageReport

if TYPE_CHECKING:
    from cofounder_agent.jobs.tables import JobRow

Terminal = Literal["succeeded", "failed", "cancelled"]


class JobEvent(BaseModel):
    """What happened to a job; ``type`` names the SSE event."""

    type: str
    job_id: str
    # Optional keys appear only when set (a stage's headline, a refined picture's source).
    sparse: ClassVar[bool] = False

    def payload(self) -> dict[str, Any]:
        """The event's JSON object, ``type`` first."""
        body = self.model_dump(mode="json", exclude_unset=self.sparse)
        return {"type": self.type, **body}


class Queued(JobEvent):
    type: Literal["queued"] = "queued"
    position: int | None


class Running(JobEvent):
    """A stream's first event for a job that is already running."""

    type: Literal["running"] = "running"
    stage: str | None
    progress: float


class Started(JobEvent):
    type: Literal["started"] = "started"
    attempt: int


class StageStarted(JobEvent):
    type: Literal["stage"] = "stage"
    stage: str
    total: int


class Step(JobEvent):
    type: Literal["step"] = "step"
    stage: str
    step: int
    total: int
    progress: float
    eta_s: float | None


class IntermediateStored(JobEvent):
    type: Literal["image"] = "image"
    image_id: str
    stage: str
    intermediate: bool = True


class ImageDeleted(JobEvent):
    type: Literal["image_deleted"] = "image_deleted"
    image_id: str


class StageDone(JobEvent):
    """A recipe stage ended; the headline keys of its record that it has."""

    type: Literal["stage_done"] = "stage_done"
    sparse: ClassVar[bool] = True
    index: int
    stage: str
    # As the stage wrote them in its record (each stage has its own).
    outcome: Any = None
    detail: Any = None
    seconds: Any = None
    scores: Any = None
    passes: Any = None
    threshold_met: Any = None
    faces: Any = None
    size: Any = None


class CancelRequested(JobEvent):
    """The API asked a running job to stop: the worker's signal (streams do not show it)."""

    type: Literal["cancel_requested"] = "cancel_requested"


class Ended(JobEvent):
    """The last event of a job's stream: its final status, reason and images."""

    type: Terminal
    error: str | None
    image_ids: list[str]


class ResultImage(BaseModel):
    """One result of a job: its final picture(s), what they came from and each stage's record.

    A generated picture sets the generation's keys (timings, stages), a refined one its
    ``input_image_id``; only set keys are stored and streamed, as the job's results always were.
    """

    image_id: str
    variation_ids: list[str]
    intermediate_ids: list[str]
    seed: int
    refiner_applied: bool
    refiner_fallback_reason: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    stages: list[dict[str, Any]] = Field(default_factory=list)
    input_image_id: str | None = None
    recipe_stages: list[StageReport]

    def stored(self) -> dict[str, Any]:
        """The result as the job row's JSON keeps it."""
        return self.model_dump(mode="json", exclude_unset=True)


class ImageDone(JobEvent):
    """A result is stored: the event carries the result's keys."""

    type: Literal["image"] = "image"
    result: ResultImage

    def payload(self) -> dict[str, Any]:
        return {"type": self.type, "job_id": self.job_id, **self.result.stored()}


class Progress(BaseModel):
    """Where a running job is: the record the store keeps (written a few times a second at most)."""

    stage: str | None = None
    step: int = 0
    total: int = 0
    progress: float = 0.0
    eta_s: float | None = None


def ended(job: JobRow) -> Ended:
    """The terminal event of a finished job row."""
    status = cast(Terminal, job.status)  # only finished rows get here
    return Ended(type=status, job_id=job.id, error=job.error, image_ids=list(job.image_ids))
