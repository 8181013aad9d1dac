"""The base of every recipe stage's spec: what a stage reads besides the picture it is handed."""

from __future__ import annotations

from cofounder_agent.contract.body import Body


class StageSpec(Body):
    """A stage of a job as the request gives it; each kind names itself in ``type``."""

    type: str

    def image_inputs(self) -> dict[str, str]:
        """Stored pictures the stage reads besides its input, by field name (an inpaint mask)."""
        return {}

    def model_files(self) -> dict[str, str]:
        """Model files in the models dir the stage loads, by field name (a learned upscaler)."""
        return {}
