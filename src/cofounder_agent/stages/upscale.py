"""upscale: enlarge 2x or 4x with a learned upscaler, or Lanczos plus a low-strength refine pass on tiles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from PIL import Image as PILImage
from pydantic import Field

from cofounder_agent.contract.errors import InvalidField
from cofounder_agent.contract.registry import register
from cofounder_agent.contract.schedule import img2img_steps
from cofounder_agent.contract.stage import CostPart, Size, StageOps, StageOutput, check_strengths, megapixels
from cofounder_agent.contract.tiles import tiles
from cofounder_agent.stages.common import MODEL_FILE, DenoisingStage, Strength

if TYPE_CHECKING:
    from PIL.Image import Image

    from cofounder_agent.contract.params import GenerationParams, SchedulerName


def lanczos(image: Image, factor: int) -> Image:
    """``image`` enlarged ``factor`` times with Lanczos."""
    return image.resize((image.width * factor, image.height * factor), PILImage.Resampling.LANCZOS)


@register
class UpscaleStage(DenoisingStage):
    """Enlarge 2x or 4x with a learned upscaler, or Lanczos plus a low-strength img2img pass on tiles."""

    type: Literal["upscale"]
    factor: Literal[2, 4] = 2
    upscaler: str | None = Field(
        None,
        pattern=MODEL_FILE,
        description="an ESRGAN-class .safetensors file in IMAGE_MODELS_DIR; omitted: Lanczos + tiled refine",
    )
    strength: Strength = 0.2
    steps: int = Field(20, ge=1, le=200)
    tile: int = Field(512, ge=64, le=2048, multiple_of=8)
    overlap: int = Field(64, ge=0, le=512, multiple_of=8)

    # It works in tiles: any picture size is fine for its memory.
    denoises_whole_picture = False

    def model_files(self) -> dict[str, str]:
        return {"upscaler": self.upscaler} if self.upscaler is not None else {}

    def check(self, at: str, scheduler: SchedulerName, *, last: bool) -> None:
        check_strengths(f"{at}.strength", self.steps, [self.strength], scheduler)

    def output_size(self, size: Size) -> Size:
        return size[0] * self.factor, size[1] * self.factor

    def check_size(self, at: str, size: Size, max_pixels: int) -> None:
        width, height = self.output_size(size)
        if width * height > max_pixels:
            raise InvalidField(f"{at}.factor", f"the result, {width}x{height}, is over {max_pixels} pixels")

    def _tiles(self, size: Size) -> list[tuple[int, int, int, int]]:
        """The tiles the refine pass runs on: over the enlarged picture, as the engine's tiler cuts them."""
        width, height = self.output_size(size)
        return list(tiles(width, height, self.tile, self._overlap()))

    def _overlap(self) -> int:
        return min(self.overlap, self.tile // 2)  # more would leave tiles that add nothing

    def denoising_steps(self, scheduler: SchedulerName, size: Size) -> int:
        if self.upscaler is not None:
            return 0  # a learned upscaler: no denoising step
        return len(self._tiles(size)) * img2img_steps(self.steps, self.strength, scheduler)

    def cost(self, at: str, scheduler: SchedulerName, size: Size) -> list[CostPart]:
        if self.upscaler is not None:
            return []
        pixels = sum(megapixels((right - left, bottom - top)) for left, top, right, bottom in self._tiles(size))
        steps = img2img_steps(self.steps, self.strength, scheduler)
        return [CostPart(f"{at}.factor" if self.factor == 4 else f"{at}.steps", pixels * steps)]

    def run(
        self, ops: StageOps, image: Image, params: GenerationParams, inputs: Mapping[str, Image | None]
    ) -> StageOutput:
        if self.upscaler is not None:
            upscaler = ops.load_upscaler(self.upscaler)
            ops.note(upscaler_scale=upscaler.scale)
            return StageOutput(ops.upscale_with_model(upscaler, image, self.factor, self.tile, self.overlap))
        big = lanczos(image.convert("RGB"), self.factor)
        ask = self.ask(params, self.strength, self.steps)

        def detail(tile: Image) -> Image:
            out = ops.refine(tile, ask, model=self.model, stage="upscale")
            # The VAE works in multiples of 8: fit an odd-sized edge tile back to its place.
            return out if out.size == tile.size else out.resize(tile.size)

        return StageOutput(ops.process_tiles(big, self.tile, self._overlap(), detail))
