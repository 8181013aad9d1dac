"""AUTOMATIC1111's infotext: the ``parameters`` text A1111 tools read from a PNG, written and parsed.

The format (A1111 1.10, ``processing.create_infotext``)::

    a lighthouse at dusk
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1, Size: 512x512, ...

The last line's keys come in A1111's order; a value holding ``,``, ``:``, ``"`` or a newline is
JSON-quoted. It is written from the metadata this service stores with each picture, and only
what is true of that picture: a picture no denoising made (an upload, a learned upscale of
one) has no infotext.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from cofounder_agent import __version__
from cofounder_agent.contract.a1111_names import A1111_NAMES

VERSION = f"cofounder-agent {__version__}"
# Stage types that denoise (an upscale only when no learned upscaler does the work).
_DENOISING = frozenset({"refine", "progressive", "adaptive", "inpaint", "variations", "upscale"})
# A1111's parse_generation_parameters: "key: value" pairs, a value quoted or up to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")


def quote(value: object) -> str:
    """A value as A1111 writes it: JSON-quoted when it holds a separator."""
    text = str(value)
    if not any(mark in text for mark in ',:"\n'):
        return text
    return json.dumps(text, ensure_ascii=False)


def model_name(location: str | None) -> str | None:
    """A model's name as A1111 shows it: the file or folder name, without ``.safetensors``."""
    if not location:
        return None
    name = PurePosixPath(location.replace("\\", "/").rstrip("/")).name
    return name.removesuffix(".safetensors").removesuffix(".ckpt") or None


def _number(value: object) -> str | None:
    return f"{value:g}" if isinstance(value, int | float) else None


def _applied(metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The specs of the stages that ran (outcome ok), in order."""
    return [r["spec"] for r in metadata.get("recipe_stages", []) if r.get("outcome") == "ok" and "spec" in r]


def _denoised(spec: Mapping[str, Any]) -> bool:
    return spec.get("type") in _DENOISING and not (spec.get("type") == "upscale" and spec.get("upscaler"))


def infotext(metadata: Mapping[str, Any], size: tuple[int, int]) -> str | None:
    """The infotext of a stored picture of ``size`` from its metadata; None when nothing denoised it."""
    params = metadata.get("params")
    if not isinstance(params, Mapping) or not params.get("prompt"):
        return None
    stages = _applied(metadata)
    generated = metadata.get("source") != "refined"
    first = next((spec for spec in stages if _denoised(spec)), None)
    if not generated and first is None:
        return None  # e.g. an upload upscaled by a learned model: no prompt, steps or seed made it
    # A refined picture's steps, guidance and prompt are its first denoising stage's.
    source: Mapping[str, Any] = params if generated or first is None else first
    pairs = _pairs(params, source, stages, size)
    upscales = [spec for spec in stages if spec.get("type") == "upscale"]
    if generated:
        pairs["Model"] = model_name(metadata.get("model"))
    strength_of = upscales[0] if generated and upscales else first
    if strength_of is not None and _denoised(strength_of):
        pairs["Denoising strength"] = _number(strength_of.get("strength"))
    pairs |= _extras(metadata, params, stages, upscales)
    pairs["Version"] = VERSION
    line = ", ".join(f"{key}: {quote(value)}" for key, value in pairs.items() if value is not None)
    negative = params.get("negative_prompt")
    head = str(source.get("prompt") or params["prompt"]) + (f"\nNegative prompt: {negative}" if negative else "")
    return f"{head}\n{line}"


def _pairs(
    params: Mapping[str, Any], source: Mapping[str, Any], stages: list[dict[str, Any]], size: tuple[int, int]
) -> dict[str, object | None]:
    """The infotext's keys from Steps to Size, in A1111's order."""
    sampler, schedule = A1111_NAMES.get(params.get("scheduler", ""), (None, None))
    pairs: dict[str, object | None] = {
        "Steps": source.get("steps") or params.get("steps"),
        "Sampler": sampler,
        "Schedule type": schedule,
        "CFG scale": _number(source.get("guidance_scale") or params.get("guidance_scale")),
        "Seed": params.get("seed"),
    }
    faces = [spec for spec in stages if spec.get("type") == "face_restore"]
    if faces:
        pairs["Face restoration"] = model_name(faces[-1].get("face_model")) or "face_restore"
    width, height = size
    for spec in stages:  # Size is what the first pass made, as A1111 writes it for hires fix
        if spec.get("type") == "upscale":
            factor = spec.get("factor") or 1
            width, height = width // factor, height // factor
    pairs["Size"] = f"{width}x{height}"
    return pairs


def _extras(
    metadata: Mapping[str, Any], params: Mapping[str, Any], stages: list[dict[str, Any]], upscales: list[dict[str, Any]]
) -> dict[str, object | None]:
    """A1111's extra_generation_params that have a counterpart here, in A1111's spelling."""
    extras: dict[str, object | None] = {}
    masks = [spec for spec in stages if spec.get("type") == "inpaint"]
    if masks:
        extras["Mask blur"] = masks[0].get("feather")
    if upscales:
        factor = 1
        for spec in upscales:
            factor *= spec.get("factor") or 1
        extras["Hires upscale"] = factor
        extras["Hires steps"] = upscales[0].get("steps") if not upscales[0].get("upscaler") else None
        extras["Hires upscaler"] = upscales[0].get("upscaler") or "Lanczos"
    if metadata.get("refiner_applied"):
        extras["Refiner"] = model_name(metadata.get("refiner_model")) or "refiner"
        if params.get("refiner_mode") == "ensemble":
            extras["Refiner switch at"] = _number(params.get("switch_at"))
    return extras


def parse(text: str) -> dict[str, str]:
    """A1111's ``parse_generation_parameters``: Prompt, Negative prompt and each key (``Size`` as Size-1/-2)."""
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:  # not a parameters line: part of the prompt
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in (line.strip() for line in lines):
        if line.startswith("Negative prompt:"):
            negative.append(line[len("Negative prompt:") :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    found = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _PARAM.findall(last):
        if len(value) > 1 and value[0] == '"' and value[-1] == '"':
            with contextlib.suppress(ValueError):
                value = str(json.loads(value))
        size = _IMAGE_SIZE.match(value)
        if size is not None:
            found[f"{key}-1"], found[f"{key}-2"] = size.group(1), size.group(2)
        else:
            found[key] = value
    return found
