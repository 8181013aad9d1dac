"""Pick the device and the precision: the seed's VRAM rule, made explicit and testable."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from cofounder_agent.contract.params import Precision

log = logging.getLogger(__name__)

DTYPES: dict[Precision, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


@dataclass(frozen=True)
class DeviceInfo:
    """Where the models run and how much memory the accelerator has."""

    device: str  # "cpu" or "cuda:N"
    name: str
    vram_gb: float | None = None

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")


def detect_device(requested: str = "auto") -> DeviceInfo:
    """Resolve ``auto|cpu|cuda|cuda:N`` to a concrete device and read its VRAM."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return DeviceInfo(device="cpu", name="cpu")
    if not requested.startswith("cuda"):
        raise ValueError(f"IMAGE_DEVICE must be auto, cpu, cuda or cuda:N, not {requested!r}")
    if not torch.cuda.is_available():
        raise RuntimeError(f"IMAGE_DEVICE={requested} but torch sees no CUDA device")
    index = int(requested.split(":", 1)[1]) if ":" in requested else 0
    props = torch.cuda.get_device_properties(index)
    return DeviceInfo(device=f"cuda:{index}", name=props.name, vram_gb=props.total_memory / 1024**3)


def choose_precision(policy: str, device: DeviceInfo, fp32_min_vram_gb: float) -> Precision:
    """Apply ``IMAGE_PRECISION``: ``auto`` is fp32 on CPU, and on CUDA fp32 only with enough VRAM."""
    if policy in DTYPES:
        chosen: Precision = policy
        if not device.is_cuda and chosen == "fp16":
            log.warning("fp16 on CPU is slow and lossy; prefer fp32 or bf16 there")
        return chosen
    if policy != "auto":
        raise ValueError(f"IMAGE_PRECISION must be auto, fp32, fp16 or bf16, not {policy!r}")
    if not device.is_cuda:
        return "fp32"
    vram = device.vram_gb or 0.0
    return "fp32" if vram >= fp32_min_vram_gb else "fp16"
