"""face_restore: restore faces with a GFPGAN or RestoreFormer model (the seed's detect_and_enhance_faces)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from cofounder_agent.contract.errors import InvalidField
from cofounder_agent.contract.registry import register
from cofounder_agent.contract.stage import ServerDefaults, StageOps, StageOutput, StageSpec
from cofounder_agent.stages.common import MODEL_FILE, Strength

if TYPE_CHECKING:
    from PIL.Image import Image

    from cofounder_agent.contract.params import GenerationParams


@register
class FaceRestoreStage(StageSpec):
    """Restore faces with a GFPGAN or RestoreFormer model, blended back by ``strength``.

    The seed's ``detect_and_enhance_faces``. No prompt, guidance or UNet: it runs the face model.
    """

    type: Literal["face_restore"]
    face_model: str | None = Field(
        None,
        pattern=MODEL_FILE,
        description="a GFPGAN or RestoreFormer .safetensors file in IMAGE_MODELS_DIR; default: IMAGE_FACE_MODEL",
    )
    strength: Strength = Field(0.5, description="1 takes the restored face, lower blends it with the original")
    max_faces: int = Field(8, ge=1, le=32, description="the largest faces first")

    def with_server_defaults(self, at: str, server: ServerDefaults, *, explicit: bool) -> StageSpec:
        """Its own model file, or ``IMAGE_FACE_MODEL``.

        A stage the caller wrote without a usable model is refused; one that came with a named
        recipe keeps no model and is skipped at run time, saying why (the portrait recipe still
        runs on a server without a face model).
        """
        name = self.face_model or server.face_model
        if name is None:
            problem = "no face restoration model: name a GFPGAN or RestoreFormer .safetensors file in the "
            problem += "models dir, or have the server set IMAGE_FACE_MODEL"
        elif not (server.models_dir / name).is_file():
            problem = f"{name!r}: no such file in the models dir"
        else:
            return self.model_copy(update={"face_model": name})
        if explicit:
            raise InvalidField(f"{at}.face_model", problem)
        return self

    def run(
        self, ops: StageOps, image: Image, params: GenerationParams, inputs: Mapping[str, Image | None]
    ) -> StageOutput:
        if self.face_model is None:  # only a named recipe's stage gets here without one
            ops.note(outcome="skipped", detail="no face model: the server has no IMAGE_FACE_MODEL")
            return StageOutput(image)
        restorer = ops.face_restorer(self.face_model)
        faces = ops.detect_faces(image, self.max_faces)
        ops.note(faces=len(faces), eyes_found=sum(face.eyes_found for face in faces))
        if not faces:
            ops.note(outcome="skipped", detail="no faces found")
            return StageOutput(image)
        return StageOutput(ops.restore_faces(image, faces, restorer, self.strength))
