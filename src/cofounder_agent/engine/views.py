"""Per-request pipeline objects over the loaded modules.

A diffusers pipeline object carries its scheduler, so each request gets its own pipeline
object built over the same (shared, read-only) modules with a fresh scheduler. Building one
is cheap: no weights are copied or cast. ``from_pipe`` is not used because it casts the
shared modules to float32 unless told otherwise.
"""

from __future__ import annotations

from typing import Any, TypeVar

P = TypeVar("P")


def pipeline_view(cls: type[P], source: Any, scheduler: Any) -> P:
    """Build a ``cls`` pipeline over ``source``'s modules with its own ``scheduler``."""
    modules, optional = cls._get_signature_keys(cls)  # type: ignore[attr-defined]
    kwargs: dict[str, Any] = {name: getattr(source, name, None) for name in modules}
    kwargs["scheduler"] = scheduler
    for name in optional:
        if name in source.config:
            kwargs[name] = source.config[name]
    if "add_watermarker" in optional:
        kwargs["add_watermarker"] = getattr(source, "watermark", None) is not None
    view = cls(**kwargs)
    view.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]
    return view
