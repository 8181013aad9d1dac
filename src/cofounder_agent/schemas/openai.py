"""The OpenAI Images API shapes (generations, edits, variations, models, errors), for the official clients."""

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
# OpenAI allows n up to 10; a job here makes at most 8 pictures, so 9 and 10 are a 400 naming n.
MAX_N = 8


class OpenAIImageRequest(Body):
    """OpenAI's request; options this server has no use for (quality, style, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt: Prompt
    model: str | None = None
    n: int = Field(1, ge=1, le=MAX_N)
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
        return size_of(self.size)


class OpenAIImage(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class OpenAIImagesResponse(BaseModel):
    created: int
    data: list[OpenAIImage]


# /v1/images/edits and /v1/images/variations take multipart forms (their fields are route
# parameters); these are their shared limits and the answers of /v1/models and of errors.
VariationSize = Literal["256x256", "512x512", "1024x1024"]
ResponseFormat = Literal["url", "b64_json"]


def size_of(size: str) -> tuple[int, int]:
    """Width and height of a ``WIDTHxHEIGHT`` size that matched ``SIZE_PATTERN`` (not ``auto``)."""
    width, height = size.split("x")
    return int(width), int(height)


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="when the model was made, as OpenAI reports it; 0: unknown")
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, rate_limit_error or server_error")
    param: str | None = Field(description="the request field at fault, as OpenAI's clients read it")
    code: str | None = Field(description="this server's stable error code (the `code` of its own error shape)")


class OpenAIErrorBody(BaseModel):
    """The error shape of the OpenAI Images API: the ``openai`` client raises its typed exceptions from it."""

    error: OpenAIErrorDetail
