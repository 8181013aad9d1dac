"""A recipe stage as one plugin: its spec, its step count, its checks, its cost and its run.

A stage is a ``StageSpec`` subclass in one file under ``cofounder_agent/stages/``, registered
with ``contract.registry.register``. The web tier asks it, torch-free, about its steps, sizes,
checks and cost; the engine runs it, handing ``run`` a ``StageOps`` that does the GPU work
over the loaded modules. Neither tier knows a stage by name.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from cofounder_agent.contract.body import Body
from cofounder_agent.contract.errors import InvalidField
from cofounder_agent.contract.schedule import img2img_steps, min_strength

if TYPE_CHECKING:
    from PIL.Image import Image

    from cofounder_agent.contract.params import GenerationParams, SchedulerName

UNet = Literal["refiner", "base"]
Size = tuple[int, int]
MEGAPIXEL = 1024 * 1024
# A face model's work on one aligned 512x512x3 uint8 RGB crop: the restored crop, same shape.
FaceRestorer = Callable[[Any], Any]


@dataclass(frozen=True)
class RefinePass:
    """One img2img pass: what to ask for and how far to re-noise."""

    prompt: str
    negative_prompt: str | None
    strength: float
    steps: int
    guidance_scale: float


class StageReport(BaseModel):
    """What one run of a recipe stage did: kept in the job's results and in each picture's metadata.

    It holds only what the run set (its serializer drops the rest), so a record says what
    happened and nothing more: an adaptive stage has scores, a face stage counts faces. A
    plugin stage's own facts (``ops.note``) are kept as extra keys.
    """

    model_config = ConfigDict(extra="allow")

    index: int
    spec: dict[str, Any]
    outcome: Literal["ok", "fallback", "skipped"] = "ok"
    detail: str | None = Field(None, description="why it fell back or was skipped")
    seconds: float | None = None
    size: list[int] | None = Field(None, description="the picture it gave: width, height")
    model_used: str | None = Field(None, description="set when the UNet asked for was not loaded")
    upscaler_scale: int | None = Field(None, description="a learned upscaler's native scale")
    faces: int | None = None
    eyes_found: int | None = None
    scores: list[float] | None = Field(None, description="adaptive: the quality score before and after each pass")
    passes: int | None = None
    threshold_met: bool | None = None

    # No return annotation: the document keeps the record's own schema, not a bare object.
    @model_serializer(mode="wrap")
    def _what_was_set(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data: dict[str, Any] = handler(self)
        kept = self.model_fields_set | set(self.model_extra or ())
        return {key: value for key, value in data.items() if key in kept}


@dataclass
class StageOutput:
    """A stage's picture, its passes (multi-pass stages) and its record for the metadata."""

    image: Image
    passes: list[Image] = field(default_factory=list)
    variations: list[Image] = field(default_factory=list)  # final pictures of a variations stage
    record: StageReport | None = None  # set by the engine once the run ends


@dataclass(frozen=True)
class CostPart:
    """One piece of an image's cost and the job field that sets it."""

    field: str  # a job-body name (JobCreate); mapped to the endpoint's own name when refused
    cost: float  # megapixel-steps


@dataclass(frozen=True)
class ServerDefaults:
    """What the server fills into a stage the request left open (``IMAGE_*`` settings)."""

    models_dir: Path
    face_model: str | None = None


class FoundFace(Protocol):
    """A face the engine found: the stage only counts them and their eyes."""

    @property
    def eyes_found(self) -> bool: ...


class LoadedUpscaler(Protocol):
    """A learned upscaler the engine loaded: its native scale is recorded."""

    @property
    def scale(self) -> int: ...


class StageOps(Protocol):
    """The engine work a stage composes, over the loaded modules, for one run of one stage.

    The engine builds one per run with the stage's own generator and step callback, so every
    denoising call of a run draws from the same generator in the order the stage makes them.
    """

    def note(self, **facts: object) -> None:
        """Add facts to the stage's record (kept even if the stage then fails)."""

    def refine(self, image: Image, ask: RefinePass, *, model: UNet, stage: str) -> Image:
        """Re-noise ``image`` by ``ask.strength`` and denoise it again on ``model``'s UNet."""

    def refine_variations(self, image: Image, prompts: list[str], ask: RefinePass, *, model: UNet) -> list[Image]:
        """Refine one picture under each prompt in one batched call."""

    def inpaint(self, image: Image, mask: Image, ask: RefinePass, *, model: UNet, feather: int) -> Image:
        """Denoise the masked region (white) again; outside the feathered mask keep every pixel."""

    def quality(self, image: Image) -> float:
        """Return the no-reference quality score in [0, 1], higher is better."""

    def process_tiles(self, image: Image, tile: int, overlap: int, work: Callable[[Image], Image]) -> Image:
        """Run ``work`` on overlapping tiles and feather them together (stopping between tiles)."""

    def load_upscaler(self, name: str) -> LoadedUpscaler:
        """Load a learned upscaler from the models dir."""

    def upscale_with_model(self, upscaler: LoadedUpscaler, image: Image, factor: int, tile: int, overlap: int) -> Image:
        """Enlarge ``image`` by ``factor`` with ``upscaler``, in tiles."""

    def face_restorer(self, name: str) -> FaceRestorer:
        """Load a face restoration model from the models dir."""

    def detect_faces(self, image: Image, max_faces: int) -> Sequence[FoundFace]:
        """Find frontal faces, largest first."""

    def restore_faces(self, image: Image, faces: Sequence[FoundFace], restorer: FaceRestorer, strength: float) -> Image:
        """Restore each face and blend it back by ``strength``."""


class StageSpec(Body):
    """A stage of a job as the request gives it; each kind names itself in ``type``.

    Every hook but ``run`` has a default that suits a stage which neither denoises, resizes
    nor reads anything besides its input picture.
    """

    type: str

    # Stages that denoise the whole picture at once: their attention memory grows with the
    # square of the pixels, so admission refuses them on pictures larger than the base makes.
    denoises_whole_picture: ClassVar[bool] = False

    def image_inputs(self) -> dict[str, str]:
        """Stored pictures the stage reads besides its input, by field name (an inpaint mask)."""
        return {}

    def model_files(self) -> dict[str, str]:
        """Model files in the models dir the stage loads, by field name (a learned upscaler)."""
        return {}

    def check(self, at: str, scheduler: SchedulerName, *, last: bool) -> None:
        """Refuse (``InvalidField`` named ``{at}.<field>``) a spec the job cannot run, before it is queued."""

    def with_server_defaults(self, at: str, server: ServerDefaults, *, explicit: bool) -> StageSpec:
        """The spec with the server's defaults filled in; refuse an unusable one the caller wrote (``explicit``)."""
        return self

    def output_size(self, size: Size) -> Size:
        """The size of the stage's picture, given its input's."""
        return size

    def check_size(self, at: str, size: Size, max_pixels: int) -> None:
        """Refuse a spec that does not fit the ``size`` picture it is handed, or makes one over ``max_pixels``."""

    def denoising_steps(self, scheduler: SchedulerName, size: Size) -> int:
        """Step callbacks the stage runs on a ``size`` picture, for progress and ETA."""
        return 0

    def cost(self, at: str, scheduler: SchedulerName, size: Size) -> list[CostPart]:
        """Megapixel-steps the stage asks of the GPU on a ``size`` picture, naming the fields that set them."""
        return []

    @abstractmethod
    def run(
        self, ops: StageOps, image: Image, params: GenerationParams, inputs: Mapping[str, Image | None]
    ) -> StageOutput:
        """Run the stage on ``image`` (on the engine thread); ``inputs`` holds the pictures ``image_inputs`` names."""


def megapixels(size: Size) -> float:
    """``size``'s pixels in megapixels (1024x1024 is 1)."""
    return size[0] * size[1] / MEGAPIXEL


def check_strengths(at: str, steps: int, strengths: Sequence[float], scheduler: SchedulerName) -> None:
    """Refuse (naming ``at``) a strength with which ``steps`` img2img steps run no denoising step."""
    if any(img2img_steps(steps, strength, scheduler) < 1 for strength in strengths):
        lowest = min_strength(steps)
        message = f"{steps} steps at this strength run no denoising step: use a strength of at least "
        raise InvalidField(at, message + f"{lowest:.4g} or more steps")
