"""Request and response models of the HTTP API: the contract between web tier and engine."""

from cofounder_agent.contract.body import Dimension, Prompt
from cofounder_agent.schemas.media import (
    ErrorBody,
    ErrorDetail,
    ImageGenerationRequest,
    ImageGenerationResponse,
    MediaHealth,
    PexelsAttribution,
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
