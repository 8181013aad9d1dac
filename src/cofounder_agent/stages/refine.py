"""refine: one img2img pass over the previous picture (the seed's refine_image)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from cofounder_agent.contract.registry import register
from cofounder_agent.contract.schedule import img2img_steps
from cofounder_agent.contract.stage import CostPart, Size, StageOps, StageOutput, check_strengths, megapixels
from cofounder_agent.stages.common import DenoisingStage, Strength

if TYPE_CHECKING:
    from PIL.Image import Image

    from cofounder_agent.contract.params import GenerationParams, SchedulerName


@register
class RefineStage(DenoisingStage):
    """An img2img pass over the previous picture (the seed's refine_image)."""

    type: Literal["refine"]
    strength: Strength = 0.3
    steps: int = Field(30, ge=1, le=200)

    def check(self, at: str, scheduler: SchedulerName, *, last: bool) -> None:
        check_strengths(f"{at}.strength", self.steps, [self.strength], scheduler)

    def denoising_steps(self, scheduler: SchedulerName, size: Size) -> int:
        return img2img_steps(self.steps, self.strength, scheduler)

    def cost(self, at: str, scheduler: SchedulerName, size: Size) -> list[CostPart]:
        return [CostPart(f"{at}.steps", megapixels(size) * img2img_steps(self.steps, self.strength, scheduler))]

    def run(
        self, ops: StageOps, image: Image, params: GenerationParams, inputs: Mapping[str, Image | None]
    ) -> StageOutput:
        ask = self.ask(params, self.strength, self.steps)
        return StageOutput(ops.refine(image, ask, model=self.model, stage="refine"))
