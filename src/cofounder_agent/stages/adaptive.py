"""adaptive: refine until the no-reference quality score reaches a threshold (the seed's adaptive loop)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from cofounder_agent.contract.registry import register
from cofounder_agent.contract.schedule import img2img_steps, min_strength
from cofounder_agent.contract.stage import CostPart, Size, StageOps, StageOutput, megapixels
from cofounder_agent.stages.common import DenoisingStage, Strength

if TYPE_CHECKING:
    from PIL.Image import Image

    from cofounder_agent.contract.params import GenerationParams, SchedulerName


@register
class AdaptiveStage(DenoisingStage):
    """Refine until the no-reference quality (1 - PIQE/100) reaches ``threshold`` or ``max_passes``."""

    type: Literal["adaptive"]
    threshold: float = Field(0.8, ge=0.0, le=1.0)
    max_passes: int = Field(5, ge=1, le=10)
    steps: int = Field(12, ge=1, le=200)
    max_strength: Strength = 0.5

    # No check of steps x strength: each pass takes at least one step (see run).

    def denoising_steps(self, scheduler: SchedulerName, size: Size) -> int:
        # It picks each pass's strength as it goes and often stops early: count half the passes.
        return self.max_passes * img2img_steps(self.steps, self.max_strength, scheduler) // 2

    def cost(self, at: str, scheduler: SchedulerName, size: Size) -> list[CostPart]:
        # It may stop early; admission counts every pass.
        steps = self.max_passes * img2img_steps(self.steps, self.max_strength, scheduler)
        return [CostPart(f"{at}.max_passes", megapixels(size) * steps)]

    def run(
        self, ops: StageOps, image: Image, params: GenerationParams, inputs: Mapping[str, Image | None]
    ) -> StageOutput:
        """The seed's adaptive loop, with a real score instead of a random number."""
        scores: list[float] = [ops.quality(image)]
        passes: list[Image] = []
        while scores[-1] < self.threshold and len(passes) < self.max_passes:
            # Strength from the gap to the threshold (the seed's rule), but at least one step.
            strength = min(self.max_strength, (self.threshold - scores[-1]) * 0.8)
            strength = min(1.0, max(strength, min_strength(self.steps)))
            ask = self.ask(params, strength, self.steps)
            image = ops.refine(image, ask, model=self.model, stage=f"adaptive.{len(passes) + 1}")
            passes.append(image)
            scores.append(ops.quality(image))
        ops.note(scores=scores, passes=len(passes), threshold_met=scores[-1] >= self.threshold)
        return StageOutput(image, passes)
