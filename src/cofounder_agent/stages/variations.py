"""variations: one picture refined under several prompts as one batch; every variation is a final image."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from cofounder_agent.contract.body import Prompt
from cofounder_agent.contract.errors import InvalidField
from cofounder_agent.contract.registry import register
from cofounder_agent.contract.schedule import img2img_steps
from cofounder_agent.contract.stage import (
    CostPart,
    RefinePass,
    Size,
    StageOps,
    StageOutput,
    check_strengths,
    megapixels,
)
from cofounder_agent.stages.common import DenoisingStage, Strength

if TYPE_CHECKING:
    from PIL.Image import Image

    from cofounder_agent.contract.params import GenerationParams, SchedulerName


@register
class VariationsStage(DenoisingStage):
    """One picture refined under several prompts as one batch; every variation is a final image."""

    type: Literal["variations"]
    prompts: list[Prompt] = Field(min_length=1, max_length=8)
    prompt: None = Field(None, description="not used: each variation has its own prompt in prompts")
    strength: Strength = 0.5
    steps: int = Field(20, ge=1, le=200)

    def check(self, at: str, scheduler: SchedulerName, *, last: bool) -> None:
        if not last:
            raise InvalidField(f"{at}.type", "variations must be the last stage (each is a final image)")
        check_strengths(f"{at}.strength", self.steps, [self.strength], scheduler)

    def denoising_steps(self, scheduler: SchedulerName, size: Size) -> int:
        return img2img_steps(self.steps, self.strength, scheduler)  # one batched loop

    def cost(self, at: str, scheduler: SchedulerName, size: Size) -> list[CostPart]:
        # One batched loop: a pass per prompt.
        steps = len(self.prompts) * img2img_steps(self.steps, self.strength, scheduler)
        return [CostPart(f"{at}.prompts", megapixels(size) * steps)]

    def run(
        self, ops: StageOps, image: Image, params: GenerationParams, inputs: Mapping[str, Image | None]
    ) -> StageOutput:
        ask = RefinePass(
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            strength=self.strength,
            steps=self.steps,
            guidance_scale=self.guidance_scale or params.guidance_scale,
        )
        pictures = ops.refine_variations(image, list(self.prompts), ask, model=self.model)
        return StageOutput(pictures[0], variations=pictures)
