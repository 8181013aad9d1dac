"""Request and response models of the HTTP API: the contract between web tier and engine."""

from cofounder_agent.schemas.media import (
    Dimension,
    ErrorBody,
    ErrorDetail,
    ImageGenerationRequest,
    ImageGenerationResponse,
    MediaHealth,
    PexelsAttribution,
    Prompt,
    RefinerInfo,
)

__all__ = [
    "Dimension",
    "ErrorBody",
    "ErrorDetail",
    "ImageGenerationRequest",
    "ImageGenerationResponse",
    "MediaHealth",
    "PexelsAttribution",
    "Prompt",
    "RefinerInfo",
]
