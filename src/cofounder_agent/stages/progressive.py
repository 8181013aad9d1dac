"""progressive: several refine passes with a decreasing strength; each pass is a picture."""

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
class ProgressiveStage(DenoisingStage):
    """Several refine passes with a decreasing strength schedule; each pass is a picture."""

    type: Literal["progressive"]
    strengths: list[Strength] = Field(default_factory=lambda: [0.5, 0.3, 0.15], min_length=1, max_length=8)
    steps: int = Field(20, ge=1, le=200)

    def check(self, at: str, scheduler: SchedulerName, *, last: bool) -> None:
        check_strengths(f"{at}.strengths", self.steps, self.strengths, scheduler)

    def denoising_steps(self, scheduler: SchedulerName, size: Size) -> int:
        return sum(img2img_steps(self.steps, s, scheduler) for s in self.strengths)

    def cost(self, at: str, scheduler: SchedulerName, size: Size) -> list[CostPart]:
        steps = self.denoising_steps(scheduler, size)  # one pass per strength
        return [CostPart(f"{at}.strengths", megapixels(size) * steps)]

    def run(
        self, ops: StageOps, image: Image, params: GenerationParams, inputs: Mapping[str, Image | None]
    ) -> StageOutput:
        passes: list[Image] = []
        for number, strength in enumerate(self.strengths, start=1):
            ask = self.ask(params, strength, self.steps)
            image = ops.refine(image, ask, model=self.model, stage=f"progressive.{number}")
            passes.append(image)
        return StageOutput(image, passes)
