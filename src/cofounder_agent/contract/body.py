"""The request-body base every tier shares: strict pydantic models, torch-free and web-free."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

# Request bodies: no unknown fields, and no coercion (false is not 0, "1" is not 1, 2.0 is not
# 2): a body is valid exactly when it matches the OpenAPI document.
STRICT_BODY = ConfigDict(extra="forbid", strict=True)


# Deeper than any body of this API nests (a job's stages: 4 levels); deeper is refused with a
# 422 before anything recurses through it.
MAX_DEPTH = 32


def _integral(value: Any, depth: int = 0) -> Any:
    # JSON Schema's integer includes 2.0: read integral floats as ints (strict floats take ints).
    if depth > MAX_DEPTH:
        raise ValueError(f"the body nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v, depth + 1) for v in value]
    return value


class Body(BaseModel):
    """A request body: no unknown fields, no coercion beyond what JSON Schema calls equal."""

    model_config = STRICT_BODY

    @model_validator(mode="before")
    @classmethod
    def _integral_floats(cls, data: Any) -> Any:
        return _integral(data)


Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Dimension = Annotated[int, Field(ge=64, le=2048, multiple_of=8)]


# Ids of stored things (boards, pictures) are uuid4 hex: 32 lowercase hex digits.
HEX_ID_PATTERN = r"^[0-9a-f]{32}$"
_HEX_ID = re.compile(HEX_ID_PATTERN)


def _board_id(value: str) -> str:
    # A pattern's own error would show the caller the regex; say what a board id is instead.
    if not _HEX_ID.fullmatch(value):
        raise PydanticCustomError(
            "board_id", "must be a board's id: 32 hex digits, as POST /v1/boards returns it (GET /v1/boards lists them)"
        )
    return value


BoardId = Annotated[str, AfterValidator(_board_id), WithJsonSchema({"type": "string", "pattern": HEX_ID_PATTERN})]
