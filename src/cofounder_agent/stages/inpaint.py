"""inpaint: refine only a region, given by a mask picture or a box (the seed's enhance_region)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from PIL import Image as PILImage
from pydantic import Field, field_validator, model_validator

from cofounder_agent.contract.errors import InvalidField
from cofounder_agent.contract.registry import register
from cofounder_agent.contract.schedule import img2img_steps
from cofounder_agent.contract.stage import (
    CostPart,
    RefinePass,
    Size,
    StageOps,
    StageOutput,
    UNet,
    check_strengths,
    megapixels,
)
from cofounder_agent.stages.common import DenoisingStage, Strength

if TYPE_CHECKING:
    from PIL.Image import Image

    from cofounder_agent.contract.params import GenerationParams, SchedulerName

# The seed's inpaint detail levels: steps, strength, guidance.
DETAIL_LEVELS: dict[str, tuple[int, float, float]] = {
    "low": (10, 0.3, 5.0),
    "medium": (15, 0.5, 7.0),
    "high": (20, 0.7, 8.0),
    "ultra": (30, 0.9, 10.0),
}


def box_mask(size: Size, box: tuple[int, int, int, int]) -> Image:
    """A mask (255 = refine) of a box, clipped to the picture."""
    left, top, right, bottom = box
    width, height = size
    left, top, right, bottom = max(0, left), max(0, top), min(width, right), min(height, bottom)
    if right <= left or bottom <= top:
        raise ValueError(f"box {box} lies outside the {width}x{height} picture")
    mask = PILImage.new("L", size, 0)
    mask.paste(255, (left, top, right, bottom))
    return mask


@register
class InpaintStage(DenoisingStage):
    """Refine only a region, given by a mask picture (white = refine) or a box (the seed's enhance_region)."""

    type: Literal["inpaint"]
    model: UNet = "base"
    mask_image_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$", description="an uploaded mask picture")
    box: tuple[int, int, int, int] | None = Field(None, strict=False, description="left, top, right, bottom in pixels")
    detail: Literal["low", "medium", "high", "ultra"] = Field("high", description="steps/strength/guidance preset")
    feather: int = Field(8, ge=0, le=64, description="blur radius of the mask's edge, in pixels")
    strength: Strength | None = Field(None, description="re-noising strength; default: the detail level's")
    steps: int | None = Field(None, ge=1, le=200, description="schedule length; default: the detail level's")

    @field_validator("box")
    @classmethod
    def _ordered(cls, box: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if box is not None and (box[2] <= box[0] or box[3] <= box[1] or min(box) < 0):
            raise ValueError("must be left, top, right, bottom in pixels with right > left and bottom > top")
        return box

    @model_validator(mode="after")
    def _one_region(self) -> InpaintStage:
        if (self.mask_image_id is None) == (self.box is None):
            raise ValueError("give exactly one of mask_image_id and box")
        return self

    def image_inputs(self) -> dict[str, str]:
        return {"mask_image_id": self.mask_image_id} if self.mask_image_id is not None else {}

    def _schedule(self) -> tuple[int, float, float]:
        """Steps, strength and guidance: the detail level's, with the stage's own overrides."""
        steps, strength, guidance = DETAIL_LEVELS[self.detail]
        return self.steps or steps, self.strength or strength, guidance

    def check(self, at: str, scheduler: SchedulerName, *, last: bool) -> None:
        # Every detail level runs steps; overrides may not.
        if self.steps is not None or self.strength is not None:
            steps, strength, _ = self._schedule()
            field = f"{at}.strength" if self.strength is not None else f"{at}.steps"
            check_strengths(field, steps, [strength], scheduler)

    def check_size(self, at: str, size: Size, max_pixels: int) -> None:
        width, height = size
        if self.box is not None and (self.box[0] >= width or self.box[1] >= height):
            raise InvalidField(f"{at}.box", f"lies outside the {width}x{height} picture at this stage")

    def denoising_steps(self, scheduler: SchedulerName, size: Size) -> int:
        steps, strength, _ = self._schedule()
        return img2img_steps(steps, strength, scheduler)

    def cost(self, at: str, scheduler: SchedulerName, size: Size) -> list[CostPart]:
        return [CostPart(f"{at}.detail", megapixels(size) * self.denoising_steps(scheduler, size))]

    def run(
        self, ops: StageOps, image: Image, params: GenerationParams, inputs: Mapping[str, Image | None]
    ) -> StageOutput:
        steps, strength, guidance = self._schedule()
        mask = inputs.get("mask_image_id")
        if mask is None:
            if self.box is None:
                raise ValueError(f"the mask picture {self.mask_image_id} is no longer stored")
            mask = box_mask(image.size, self.box)
        ask = RefinePass(
            prompt=self.prompt or params.prompt,
            negative_prompt=params.negative_prompt,
            strength=strength,
            steps=steps,
            guidance_scale=self.guidance_scale or guidance,  # the detail level's, not the job's
        )
        return StageOutput(ops.inpaint(image, mask, ask, model=self.model, feather=self.feather))
