"""Schemathesis hooks for tests/test_schemathesis.py: small jobs, and the rules JSON Schema cannot state.

``before_call`` rewrites each generated body just before it is sent. Every rewrite turns a
value the schema accepts into another value the schema accepts (values the schema refuses are
left alone), so a negative case stays negative; schemathesis re-validates a case a hook
changed in any event. Two kinds of rewrite:

1. Work: sizes, step counts and image counts go to their smallest, and options the body
   omits get small values instead of the server's defaults (1024 px, 40 steps), so that every
   job the run queues (and the synchronous generation endpoints wait for) takes moments.
2. Rules across fields or resources, which the API refuses with a 422 naming the field by
   design (docs/jobs.md, docs/stages.md) and which a JSON Schema cannot express: a schedule
   in which a stage runs no step (steps x strength, an inpaint's own steps x strength, steps x
   switch_at), refiner options of another mode, variations not last, an inpaint with both or
   neither of mask and box, references to boards, pictures, recipes and model files that do
   not exist, a seed request that allows no source, an A1111 model other than the loaded
   one, an A1111 upscale that is not 2x/4x of a decodable picture (or asks for faces on a
   server without a face model). Their 422s have tests of their own; here positive cases
   keep clear of them so that
   ``positive_data_acceptance`` checks everything else.
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import schemathesis
from PIL import Image

# Field -> (lowest valid, highest valid, the value a valid one becomes).
_CAPS: dict[str, tuple[int, int, int]] = {
    "width": (64, 2048, 64),
    "height": (64, 2048, 64),
    "num_inference_steps": (20, 100, 20),
    "num_images": (1, 8, 1),
    "n": (1, 8, 1),
    "max_passes": (1, 10, 1),
    "factor": (2, 4, 2),
    "tile": (64, 2048, 64),
}
# Omitted options, per operation: small values instead of the server's defaults.
_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/jobs"): {"width": 64, "height": 64, "steps": 6},
    ("PUT", "/v1/recipes/{name}"): {"width": 64, "height": 64, "steps": 6},
    ("POST", "/api/media/generate-image"): {"width": 64, "height": 64, "num_inference_steps": 20},
    ("POST", "/v1/images/generations"): {"size": "64x64"},
}
_ID = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART = ("/v1/images", "/v1/images/edits", "/v1/images/variations")
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
_MODES = ("ensemble", "img2img", "none")
_A1111_GENERATION = ("/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/png-info")


def _is_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _is_fraction(value: Any, *, closed: bool = False) -> bool:
    return type(value) in (int, float) and 0 < value < 1 + closed and type(value) is not bool


def _png(size: int = 16, hole: bool = False) -> bytes:
    """A picture; with ``hole``, RGBA with a fully transparent square (OpenAI's mark of the region to edit)."""
    image = Image.new("RGBA" if hole else "RGB", (size, size), (90, 140, 200))
    if hole:
        image.paste((0, 0, 0, 0), (size // 4, size // 4, size // 2, size // 2))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _shrink(body: dict[str, Any]) -> dict[str, Any]:
    out = dict(body)
    for key, (low, high, small) in _CAPS.items():
        if _is_int(out.get(key), low, high):
            out[key] = small
    if isinstance(out.get("size"), str) and (out["size"] == "auto" or _SIZE.fullmatch(out["size"])):
        out["size"] = "64x64"
    return out


def _references(body: dict[str, Any]) -> dict[str, Any]:
    """Drop references to things the fresh server does not have (each is a 422 by design)."""
    out = dict(body)
    out.pop("callback_url", None)  # nothing listens, and only public addresses are allowed
    for key in ("board_id", "mask_image_id"):
        if isinstance(out.get(key), str) and _ID.fullmatch(out[key]):
            del out[key]
    for key in ("recipe", "upscaler", "face_model"):
        if isinstance(out.get(key), str):
            del out[key]
    ids = out.get("input_image_ids")
    if isinstance(ids, list) and all(isinstance(i, str) and _ID.fullmatch(i) for i in ids):
        out["input_image_ids"] = []
    return out


def _refiner(spec: dict[str, Any], mode: Any, names: tuple[str, str, str]) -> dict[str, Any]:
    """Keep only the options of the refiner mode, with schedules in which every stage runs."""
    switch_at, steps, strength = names
    out = dict(spec)
    if mode != "ensemble" and _is_fraction(out.get(switch_at)):
        del out[switch_at]
    elif mode == "ensemble" and _is_fraction(out.get(switch_at)):
        out[switch_at] = 0.5
    for key, valid in (
        (steps, _is_int(out.get(steps), 1, 200)),
        (strength, _is_fraction(out.get(strength), closed=True)),
    ):
        if mode != "img2img" and valid:
            del out[key]
    if mode == "img2img":
        if _is_int(out.get(steps, 2), 1, 200):
            out[steps] = 2
        if _is_fraction(out.get(strength, 0.5), closed=True):
            out[strength] = 0.5
    return out


def _stage(stage: Any) -> Any:
    if not isinstance(stage, dict):
        return stage
    out = _references(_shrink(stage))
    kind = out.get("type")
    if kind in ("refine", "upscale", "variations", "progressive", "adaptive") and _is_int(out.get("steps", 2), 1, 200):
        out["steps"] = 2  # x 0.5 strength: one denoising step per pass
    if kind in ("refine", "upscale", "variations") and _is_fraction(out.get("strength", 0.5), closed=True):
        out["strength"] = 0.5
    strengths = out.setdefault("strengths", [0.5]) if kind == "progressive" else None
    if kind == "progressive" and isinstance(strengths, list) and all(_is_fraction(s, closed=True) for s in strengths):
        out["strengths"] = [0.5] if strengths else strengths
    if kind == "adaptive" and _is_fraction(out.get("max_strength", 0.5), closed=True):
        out["max_strength"] = 0.5
    if kind == "variations" and isinstance(out.get("prompts"), list) and len(out["prompts"]) > 1:
        out["prompts"] = out["prompts"][:1]
    if kind == "inpaint":
        # Its own strength and steps replace the detail level's: keep at least one step.
        if _is_fraction(out.get("strength"), closed=True):
            out["strength"] = 0.5
        if _is_int(out.get("steps"), 1, 200):
            out["steps"] = 4
        box = out.get("box")
        if box is None or (isinstance(box, list) and len(box) == 4 and all(type(v) is int for v in box)):
            out["box"] = [0, 0, 8, 8]
        out.setdefault("detail", "low")
    return out


def _stages(stages: Any) -> Any:
    if not isinstance(stages, list):
        return stages
    # Variations end a recipe; one upscale (x2) keeps later stages within what is denoised at once.
    variations = [s for s in stages if isinstance(s, dict) and s.get("type") == "variations"]
    rest = [s for s in stages if not (isinstance(s, dict) and s.get("type") == "variations")][:2]
    return [_stage(s) for s in rest + variations[-1:]]


def _a1111(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A1111's options and extras: the loaded model only; a decodable picture, 2x, no face model."""
    out = dict(body)
    if path == "/sdapi/v1/options":
        out.pop("sd_model_checkpoint", None)  # only the loaded model's title is accepted
        return out
    if isinstance(out.get("image"), str) and out["image"]:
        out["image"] = base64.b64encode(_png()).decode()
    if _is_number(out.get("upscaling_resize")) and 0 < out["upscaling_resize"] <= 8:
        out["upscaling_resize"] = 2  # 2 or 4 only
    for key in ("gfpgan_visibility", "codeformer_visibility", "extras_upscaler_2_visibility"):
        if _is_number(out.get(key)) and 0 <= out[key] <= 1:
            out[key] = 0  # the server has no face model; one upscaler
    if out.get("resize_mode") == 1 and type(out["resize_mode"]) is int:
        out["resize_mode"] = 0
    if isinstance(out.get("upscaler_1"), str):
        out["upscaler_1"] = "None"
    return out


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def repair(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body with small work and clear of the cross-field rules (see the module docstring)."""
    if path in ("/sdapi/v1/options", "/sdapi/v1/extra-single-image"):
        return _a1111(path, body)
    out = _references(_shrink({**_DEFAULTS.get((method, path), {}), **body}))
    if "stages" in out:
        out["stages"] = _stages(out["stages"])
    if path == "/api/media/generate-image":
        if out.get("use_pexels") is False and out.get("use_generation", False) is False:
            out["use_pexels"] = True  # no source at all: 503 no_image_source
        if out.get("use_refinement") is False and out.get("refiner_mode") in _MODES[:2]:
            out["refiner_mode"] = "none"
        refine = out.get("use_refinement", True)
        mode = out.get("refiner_mode") or ("ensemble" if refine is not False else "none")
        out = _refiner(out, mode, ("switch_at", "refiner_steps", "refiner_strength"))
    elif path in ("/v1/jobs", "/v1/recipes/{name}"):
        if _is_int(out.get("steps"), 1, 200):
            out["steps"] = 6  # ensemble at 0.8: 4 base steps and 2 refiner steps
        spec = out.get("refiner")
        if isinstance(spec, dict):
            out["refiner"] = _refiner(spec, spec.get("mode", "ensemble"), ("switch_at", "steps", "strength"))
    return out


def _a1111_generation(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A1111's txt2img/img2img/png-info: small work, decodable pictures, clear of the 422s by design.

    Those (docs/compatibility.md): sampler and schedule names we do not run, more than 8 images,
    hires fix at other than 2x/4x or with an unknown upscaler, tiling, scripts, faces without a
    face model, schedules in which a pass runs no step, pictures that do not decode, empty masks.
    """
    if path == "/sdapi/v1/png-info":
        return {**body, "image": base64.b64encode(_png()).decode()} if isinstance(body.get("image"), str) else body
    out = _shrink(body)
    for key in ("sampler_name", "sampler_index", "scheduler", "hr_upscaler", "script_name"):
        if isinstance(out.get(key), str):
            del out[key]
    for key in ("tiling", "restore_faces"):
        if out.get(key) is True:
            out[key] = False
    for key, small in (("steps", 4), ("batch_size", 1), ("n_iter", 1), ("hr_second_pass_steps", 0)):
        if _is_int(out.get(key), 0 if key == "hr_second_pass_steps" else 1, 200):
            out[key] = small
    out.setdefault("steps", 4)
    if _is_fraction(out.get("refiner_switch_at")):
        out["refiner_switch_at"] = 0.5
    if _is_fraction(out.get("denoising_strength", 0.5), closed=True):
        out["denoising_strength"] = 0.5
    if out.get("enable_hr") is True:
        out["hr_scale"] = 2
        for key in ("hr_resize_x", "hr_resize_y"):
            if _is_int(out.get(key), 0, 2**63):
                out[key] = 0
    picture = base64.b64encode(_png()).decode()
    if isinstance(out.get("init_images"), list) and all(isinstance(i, str) for i in out["init_images"]):
        out["init_images"] = [picture] * len(out["init_images"])
    if isinstance(out.get("mask"), str):
        out["mask"] = base64.b64encode(_mask()).decode()
    return out


def _mask() -> bytes:
    buffer = io.BytesIO()
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (4, 4, 12, 12))
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    """Send each body as ``repair`` leaves it."""
    # Uploads are done in map_body: schemathesis counts a body it re-validates with bytes in it
    # as negative, so a multipart body is left as generated here.
    if isinstance(case.body, dict) and case.operation.path.startswith(_A1111_GENERATION):
        case.body = _a1111_generation(case.operation.path, case.body)
    elif isinstance(case.body, dict) and case.operation.path not in _MULTIPART:
        case.body = repair(case.operation.method.upper(), case.operation.path, case.body)


@schemathesis.hook("map_body").apply_to(path="/v1/images", method="POST")
def upload_a_picture(context: schemathesis.HookContext, body: Any) -> Any:
    """Upload a picture the server can decode (any bytes match "binary"), into no board."""
    if isinstance(body, dict) and isinstance(body.get("file"), bytes | str):
        body = {**_references(body), "file": _png()}
    return body


def _is_file(value: Any) -> bool:
    return isinstance(value, bytes | str)


@schemathesis.hook("map_body").apply_to(path="/v1/images/edits", method="POST")
def edit_a_picture(context: schemathesis.HookContext, body: Any) -> Any:
    """Edit a small picture the server decodes, with a mask of its size (or its own alpha)."""
    if not isinstance(body, dict):
        return body
    out = _shrink(body)
    picture = _png(64, hole=True)  # 64 px: the smallest size; its alpha marks the region
    for key in ("image", "image[]", "mask"):  # a form has no null: it would send the text "null"
        if key in out and out[key] is None:
            del out[key]
    if _is_file(out.get("image")) or ("image" not in out and "image[]" not in out):  # one or the other
        out["image"] = picture
    if isinstance(out.get("image[]"), list) and all(_is_file(f) for f in out["image[]"]):
        out["image[]"] = [picture] if out["image[]"] else []
    if _is_file(out.get("mask")):
        out["mask"] = picture
    return out


@schemathesis.hook("map_body").apply_to(path="/v1/images/variations", method="POST")
def vary_a_picture(context: schemathesis.HookContext, body: Any) -> Any:
    """Vary a picture the server decodes, one at a time, at the smallest size."""
    if not isinstance(body, dict):
        return body
    out = _shrink(body)
    if out.get("size") in ("512x512", "1024x1024"):
        out["size"] = "256x256"
    if _is_file(out.get("image")):
        out["image"] = _png(64)
    return out
