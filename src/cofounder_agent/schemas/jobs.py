"""Models of the job API (a job body is a recipe), boards and stored images."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, Field, StringConstraints

from cofounder_agent.contract.body import BoardId, Body, Dimension, Prompt
from cofounder_agent.contract.params import MAX_SEED, RefinerMode, SchedulerName
from cofounder_agent.stages import AnyStage

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class RefinerSpec(Body):
    """How the refiner follows the base: options belong to their mode only."""

    mode: RefinerMode = "ensemble"
    switch_at: float | None = Field(None, gt=0.0, lt=1.0, description="ensemble: base share of the schedule")
    steps: int | None = Field(None, ge=1, le=200, description="img2img: refiner schedule length")
    strength: float | None = Field(None, gt=0.0, le=1.0, description="img2img: re-noising strength")


class JobCreate(Body):
    """A job body: what to generate and the stages to run on it; omitted options take the server's defaults."""

    prompt: Prompt
    negative_prompt: Annotated[str, StringConstraints(max_length=2000)] | None = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="first image's seed; image i uses seed + i")
    width: Dimension = 1024
    height: Dimension = 1024
    steps: int = Field(40, ge=1, le=200, description="base schedule length (ensemble: base + refiner)")
    guidance_scale: float = Field(7.5, ge=1.0, le=30.0)
    scheduler: SchedulerName | None = None
    refiner: RefinerSpec | None = None
    num_images: int = Field(1, ge=1, le=8)
    board_id: BoardId | None = Field(None, description="put the images in this board (POST /v1/boards makes one)")
    priority: int = Field(0, ge=-10, le=10, description="higher runs first; equal priorities run in order")
    callback_url: AnyHttpUrl | None = Field(None, strict=False, description="POSTed the final job JSON when it ends")
    keep_intermediates: bool = Field(False, description="also store earlier stages' pictures, flagged")
    stream_intermediates: bool = Field(
        False, description="store and announce each stage's picture, deleting it once the next stage succeeds"
    )
    input_image_ids: list[Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]] = Field(
        default_factory=list, max_length=16, description="refine these stored pictures instead of generating"
    )
    recipe: str | None = Field(None, description="a named recipe this job starts from (GET /v1/recipes)")
    stages: list[AnyStage] = Field(
        default_factory=list, max_length=8, description="stages run in order on the generated picture"
    )


class RecipeTemplate(Body):
    """A named recipe: any job options but the prompt, the input pictures and the recipe name."""

    negative_prompt: Annotated[str, StringConstraints(max_length=2000)] | None = None
    width: Dimension | None = None
    height: Dimension | None = None
    steps: int | None = Field(None, ge=1, le=200)
    guidance_scale: float | None = Field(None, ge=1.0, le=30.0)
    scheduler: SchedulerName | None = None
    refiner: RefinerSpec | None = None
    num_images: int | None = Field(None, ge=1, le=8)
    priority: int | None = Field(None, ge=-10, le=10)
    keep_intermediates: bool | None = None
    stages: list[AnyStage] | None = Field(None, max_length=8)


class ImageResult(BaseModel):
    """One image a job produced and how."""

    image_id: str
    input_image_id: str | None = Field(None, description="the stored picture this result refined")
    variation_ids: list[str] = Field(default_factory=list, description="every variation, when the last stage is one")
    intermediate_ids: list[str] = Field(default_factory=list)
    seed: int
    refiner_applied: bool
    refiner_fallback_reason: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    # Plain objects, not contract.stage.StageReport: SDK users index them (record["outcome"]).
    recipe_stages: list[dict[str, Any]] = Field(
        default_factory=list, description="each stage's spec, outcome (ok|fallback|skipped), reason, timing, scores"
    )


class JobPublic(BaseModel):
    id: str
    status: JobStatus
    priority: int
    queue_position: int | None = Field(None, description="queued jobs that run before this one")
    stage: str | None = None
    step: int = 0
    total_steps: int = 0
    progress: float = Field(0.0, ge=0.0, le=1.0, description="share of the job's denoising steps done")
    eta_s: float | None = None
    attempts: int = 0
    attempt_workers: list[str] = Field(
        default_factory=list,
        description="the worker that ran each run of the job, in order (its id in the workers table); "
        "a run given back by a clean shutdown is listed though it does not count as an attempt",
    )
    error: str | None = None
    image_ids: list[str] = Field(default_factory=list)
    results: list[ImageResult] = Field(default_factory=list)
    # A plain mapping: clients of an older version still read jobs with newer options.
    recipe: dict[str, Any] = Field(description="the resolved recipe (JobCreate's fields, defaults filled in)")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = None


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int


class BoardCreate(Body):
    name: Name


class BoardUpdate(Body):
    name: Name


class ImageUpdate(Body):
    """Where the image belongs: a board, or none."""

    board_id: str | None = Field(pattern=r"^[0-9a-f]{32}$", description="the board to move it to; null: no board")


class BoardPublic(BaseModel):
    id: str
    name: str
    created_at: datetime


class BoardsPublic(BaseModel):
    data: list[BoardPublic]
    count: int


class ImagePublic(BaseModel):
    id: str
    url: str
    thumbnail_url: str
    media_type: str
    width: int
    height: int
    source: str
    job_id: str | None = None
    board_id: str | None = None
    intermediate: bool = False
    created_at: datetime


class ImagesPublic(BaseModel):
    data: list[ImagePublic]
    count: int
