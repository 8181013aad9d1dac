"""The recipe stages, one file each; importing this package registers them all."""

from cofounder_agent.contract.registry import AnyStage, register, registered

# isort: off
# Registration order is the order the OpenAPI oneOf and pydantic's messages list the types in.
from cofounder_agent.stages.refine import RefineStage
from cofounder_agent.stages.progressive import ProgressiveStage
from cofounder_agent.stages.adaptive import AdaptiveStage
from cofounder_agent.stages.upscale import UpscaleStage
from cofounder_agent.stages.inpaint import InpaintStage
from cofounder_agent.stages.variations import VariationsStage
from cofounder_agent.stages.face_restore import FaceRestoreStage

# isort: on

__all__ = [
    "AdaptiveStage",
    "AnyStage",
    "FaceRestoreStage",
    "InpaintStage",
    "ProgressiveStage",
    "RefineStage",
    "UpscaleStage",
    "VariationsStage",
    "register",
    "registered",
]
