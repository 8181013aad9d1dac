"""The OpenAI Images API shapes (POST /v1/images/generations), for the official clients."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cofounder_agent.contract.body import Body, Prompt

_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
# The sizes the validator takes, spelled out for the OpenAPI document (multiples of 8 from
# 64 to 2048 a side), so that clients and schema-driven tools know which strings are valid.
_SIDE = "(?:" + "|".join(str(side) for side in range(64, 2049, 8)) + ")"
SIZE_PATTERN = f"^(?:auto|{_SIDE}x{_SIDE})$"


class OpenAIImageRequest(Body):
    """OpenAI's request; options this server has no use for (quality, style, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt: Prompt
    model: str | None = None
    n: int = Field(1, ge=1, le=8)
    size: str = Field(
        "1024x1024",
        description="WIDTHxHEIGHT, multiples of 8 from 64 to 2048, or auto",
        json_schema_extra={"pattern": SIZE_PATTERN},
    )
    response_format: Literal["url", "b64_json"] = "url"
    user: str | None = Field(None, max_length=200)

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        if value == "auto":
            return "1024x1024"
        match = _SIZE.fullmatch(value)
        if match is None:
            raise ValueError("must be WIDTHxHEIGHT, e.g. 1024x1024")
        for side in map(int, match.groups()):
            if not 64 <= side <= 2048 or side % 8:
                raise ValueError(f"{side} is not a multiple of 8 from 64 to 2048")
        return value

    @property
    def dimensions(self) -> tuple[int, int]:
        width, height = self.size.split("x")
        return int(width), int(height)


class OpenAIImage(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class OpenAIImagesResponse(BaseModel):
    created: int
    data: list[OpenAIImage]
