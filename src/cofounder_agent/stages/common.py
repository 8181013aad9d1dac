"""What the stages that denoise with a loaded UNet share: their prompt, guidance and UNet options."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import Field

from cofounder_agent.contract.body import Prompt
from cofounder_agent.contract.stage import RefinePass, StageSpec, UNet

if TYPE_CHECKING:
    from cofounder_agent.contract.params import GenerationParams

Strength = Annotated[float, Field(gt=0.0, le=1.0)]
# A model file in the models dir: a plain .safetensors file name, never a path.
MODEL_FILE = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.safetensors$"


class DenoisingStage(StageSpec):
    """A stage that denoises with one of the loaded UNets, under a prompt."""

    prompt: Prompt | None = Field(None, description="default: the job's prompt")
    guidance_scale: float | None = Field(None, ge=1.0, le=30.0, description="default: the job's")
    model: UNet = Field("refiner", description="which loaded UNet denoises")

    denoises_whole_picture: ClassVar[bool] = True

    def ask(self, params: GenerationParams, strength: float, steps: int) -> RefinePass:
        """One img2img pass of this stage: its own prompt and guidance, or the job's."""
        return RefinePass(
            prompt=self.prompt or params.prompt,
            negative_prompt=params.negative_prompt,
            strength=strength,
            steps=steps,
            guidance_scale=self.guidance_scale or params.guidance_scale,
        )
