"""The precision rule: the seed's VRAM threshold, made a setting."""

from __future__ import annotations

import pytest

from cofounder_agent.engine.device import DeviceInfo, choose_precision, detect_device

CPU = DeviceInfo("cpu", "cpu")
BIG = DeviceInfo("cuda:0", "RTX 5090", vram_gb=31.4)
SMALL = DeviceInfo("cuda:0", "RTX 4070", vram_gb=11.7)


@pytest.mark.parametrize(
    ("policy", "device", "threshold", "expected"),
    [
        ("auto", CPU, 20, "fp32"),
        ("auto", BIG, 20, "fp32"),
        ("auto", SMALL, 20, "fp16"),
        ("auto", BIG, 40, "fp16"),
        ("auto", SMALL, 10, "fp32"),
        ("bf16", BIG, 20, "bf16"),
        ("fp16", BIG, 20, "fp16"),
        ("fp32", SMALL, 20, "fp32"),
        ("bf16", CPU, 20, "bf16"),
    ],
)
def test_choose_precision(policy: str, device: DeviceInfo, threshold: float, expected: str) -> None:
    assert choose_precision(policy, device, threshold) == expected


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="IMAGE_PRECISION"):
        choose_precision("int8", CPU, 20)


def test_detect_cpu_and_refuse_unknown_devices() -> None:
    assert detect_device("cpu") == CPU
    with pytest.raises(ValueError, match="IMAGE_DEVICE"):
        detect_device("tpu")


def test_default_threshold_keeps_24_gb_cards_in_fp16() -> None:
    # fp32 weights of base + refiner take 21.3 GiB: a 24 GB card (23.6 GiB as CUDA reports it)
    # cannot also hold a 1024² decode, so the default rule gives it fp16; a 32 GB card fp32.
    from cofounder_agent.config import Settings

    threshold = Settings(_env_file=None).image_fp32_min_vram_gb
    assert choose_precision("auto", DeviceInfo("cuda:0", "RTX 4090", vram_gb=23.6), threshold) == "fp16"
    assert choose_precision("auto", BIG, threshold) == "fp32"
