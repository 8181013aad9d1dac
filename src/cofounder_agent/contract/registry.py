"""The stage registry: ``type`` -> stage class, and ``AnyStage``, the request field read through it.

``AnyStage`` looks a stage up in the registry when a body is validated and builds its JSON
schema (a oneOf discriminated by ``type``) when the OpenAPI document is built, so a stage
registered after the app was imported (a plugin, a test) is accepted and documented.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_args, get_origin

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, SchemaSerializer, SchemaValidator, core_schema

from cofounder_agent.contract.stage import StageSpec

S = TypeVar("S", bound=type[StageSpec])

_REGISTRY: dict[str, type[StageSpec]] = {}


def stage_type(cls: type[StageSpec]) -> str:
    """The ``type`` tag of a stage class: its ``type`` field's one literal string."""
    annotation = cls.model_fields["type"].annotation
    tags = get_args(annotation) if get_origin(annotation) is Literal else ()
    if len(tags) != 1 or not isinstance(tags[0], str):
        raise TypeError(f"{cls.__name__}.type must be a Literal of one string, not {annotation!r}")
    return tags[0]


def register(cls: S) -> S:
    """Register a stage class under its ``type`` (a class decorator)."""
    tag = stage_type(cls)
    if _REGISTRY.get(tag, cls) is not cls:
        raise ValueError(f"stage type {tag!r} is already registered by {_REGISTRY[tag].__name__}")
    _REGISTRY[tag] = cls
    return cls


def unregister(tag: str) -> None:
    """Remove the stage registered under ``tag`` (tests, plugins that unload)."""
    _REGISTRY.pop(tag, None)


def registered() -> Mapping[str, type[StageSpec]]:
    """The registered stage classes by ``type``, in registration order."""
    return MappingProxyType(_REGISTRY)


def _union(classes: tuple[type[StageSpec], ...]) -> core_schema.TaggedUnionSchema:
    return core_schema.tagged_union_schema(
        {stage_type(cls): cls.__pydantic_core_schema__ for cls in classes}, discriminator="type"
    )


@lru_cache(maxsize=8)  # one per registry state: rebuilt only when a stage is (un)registered
def _validator(classes: tuple[type[StageSpec], ...]) -> SchemaValidator:
    return SchemaValidator(_union(classes))


def _validate(value: Any) -> StageSpec:
    # pydantic's own discriminated union over the registry as it is now: its messages and
    # error locations (stages.0.inpaint.box) are the ones a static union gives.
    stage: StageSpec = _validator(tuple(_REGISTRY.values())).validate_python(value)
    return stage


def _serialize(value: StageSpec, info: core_schema.SerializationInfo) -> Any:
    serializer: SchemaSerializer = type(value).__pydantic_serializer__
    return serializer.to_python(
        value,
        mode=info.mode,
        by_alias=bool(info.by_alias),
        exclude_unset=info.exclude_unset,
        exclude_defaults=info.exclude_defaults,
        exclude_none=info.exclude_none,
        round_trip=info.round_trip,
    )


class _Registered:
    """Pydantic hooks of ``AnyStage``: validate and document through the registry."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate, serialization=core_schema.plain_serializer_function_ser_schema(_serialize, info_arg=True)
        )

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return handler(_union(tuple(_REGISTRY.values())))


if TYPE_CHECKING:
    AnyStage = StageSpec
else:
    # Not Annotated[StageSpec, ...]: FastAPI would document the abstract base as a schema of its own.
    AnyStage = Annotated[object, _Registered()]
