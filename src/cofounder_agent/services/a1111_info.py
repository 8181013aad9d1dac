"""AUTOMATIC1111's view of this server: its progress, models, options and upscalers (`/sdapi/v1`).

A1111 is one user's server running one job; this service is a shared queue. So "the job"
A1111's clients ask about is the oldest running one, and ``job_count`` counts every job not
yet ended, so a client that waits for an idle server (``progress == 0 and job_count == 0``)
waits for the queue to drain, as it would on A1111.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cofounder_agent.config import Settings
from cofounder_agent.contract.a1111_names import SAMPLERS, SCHEDULE_TYPES
from cofounder_agent.contract.errors import DomainError, InvalidField
from cofounder_agent.jobs.service import JobService
from cofounder_agent.jobs.tables import JobRow
from cofounder_agent.schemas.a1111_info import (
    OptionsPublic,
    ProgressPublic,
    ProgressState,
    SamplerItem,
    SchedulerItem,
    SDModelItem,
    UpscalerItem,
)
from cofounder_agent.services.fleet import Fleet

# Upscaler names that need no model file: both run the upscale stage's Lanczos + tiled refine.
LANCZOS_NAMES = ("None", "Lanczos")
# Model files in IMAGE_MODELS_DIR that are face models, not upscalers (by their usual names).
_FACE_MODEL = re.compile(r"gfpgan|restoreformer|codeformer", re.IGNORECASE)
# A1111's sd_schedulers entries (default_rho, need_inner_model, aliases) for the types we map.
_SCHEDULE_FACTS: dict[str, tuple[float, bool, list[str] | None]] = {
    "automatic": (-1, False, None),
    "uniform": (-1, True, None),
    "karras": (7.0, False, None),
    "sgm_uniform": (-1, True, ["SGMUniform"]),
    "simple": (-1, True, None),
    "normal": (-1, True, None),
    "ddim": (-1, True, None),
}
_SCALE = re.compile(r"(?:^|[^0-9])([248])x|x([248])(?:[^0-9]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class A1111Info:
    """What the A1111 routes ask of the job system, the fleet and the models dir."""

    jobs: JobService
    fleet: Fleet
    settings: Settings

    # 1. Progress and interrupting.

    async def progress(self) -> ProgressPublic:
        """The oldest running job's progress; all zero when nothing runs or waits."""
        counts = await self.jobs.store.count_by_status()
        job_count = counts.get("running", 0) + counts.get("queued", 0)
        running = await self._running()
        if not running:
            return ProgressPublic(state=ProgressState(job_count=job_count))
        row = running[0]
        view = await self.jobs.public(row)
        started = row.started_at or row.created_at
        state = ProgressState(
            interrupted=row.cancel_requested,
            job=row.id,
            job_count=max(job_count, 1),  # it ran when counted, or started since
            job_timestamp=started.strftime("%Y%m%d%H%M%S"),
            sampling_step=view.step,
            sampling_steps=view.total_steps,
        )
        # A1111 reports at least 0.01 while a job runs: progress == 0 means idle to its clients.
        progress = min(1.0, max(0.01, view.progress))
        text = f"{view.stage} step {view.step}/{view.total_steps}" if view.stage else None
        return ProgressPublic(progress=progress, eta_relative=view.eta_s or 0.0, state=state, textinfo=text)

    async def interrupt(self) -> list[str]:
        """Ask every running job to stop at its next step (queued jobs stay); return their ids."""
        stopped = []
        for row in await self._running():
            with contextlib.suppress(DomainError):  # it ended meanwhile: nothing to stop
                await self.jobs.cancel(row.id, wait_s=0)
                stopped.append(row.id)
        return stopped

    async def _running(self) -> list[JobRow]:
        """The running jobs, oldest first (one per worker: a page holds them all)."""
        rows, _ = await self.jobs.store.list_jobs("running", 100, 0)
        return list(reversed(rows))

    # 2. Models and options.

    async def models(self) -> list[SDModelItem]:
        """The loaded base model as A1111 lists a checkpoint; none while no engine is ready."""
        status = await self.fleet.status()
        return [model_item(status.base_model)] if status.base_model else []

    async def options(self) -> OptionsPublic:
        found = await self.models()
        return OptionsPublic(
            sd_model_checkpoint=found[0].title if found else None,
            sd_checkpoint_hash=found[0].sha256 if found else None,
        )

    async def set_options(self, values: Mapping[str, Any]) -> None:
        """Accept any options; only ``sd_model_checkpoint`` is checked: it must name the loaded model.

        Nothing here can change at run time (one model per server), so the other keys, known or
        not, are ignored: open-webui posts back the whole dict it read.
        """
        wanted = values.get("sd_model_checkpoint")
        if wanted is None:
            return
        found = await self.models()
        if not any(_names(item, str(wanted)) for item in found):
            titles = ", ".join(repr(item.title) for item in found) or "none (no model is loaded yet)"
            raise InvalidField(
                "sd_model_checkpoint", f"no model {wanted!r}; this server runs one model, its title: {titles}"
            )

    # 3. Upscalers.

    def upscalers(self) -> list[UpscalerItem]:
        """None and Lanczos (Lanczos + tiled refine), then each upscaler file in the models dir."""
        items = [UpscalerItem(name=name, scale=4) for name in LANCZOS_NAMES]
        for path in self.upscaler_files():
            match = _SCALE.search(path.stem)
            scale = float(match.group(1) or match.group(2)) if match else None
            items.append(UpscalerItem(name=path.stem, model_name=path.stem, model_path=path.name, scale=scale))
        return items

    def upscaler_files(self) -> list[Path]:
        """The .safetensors files in IMAGE_MODELS_DIR that are not face models, by name."""
        folder = self.settings.models_dir
        if not folder.is_dir():
            return []
        face = self.settings.image_face_model
        return sorted(
            p for p in folder.glob("*.safetensors") if p.is_file() and p.name != face and not _FACE_MODEL.search(p.name)
        )

    def upscaler_file(self, name: str, field: str) -> str | None:
        """The upscale stage's ``upscaler`` for an A1111 upscaler name (None: Lanczos); else a 422."""
        if name.strip().lower() in (n.lower() for n in LANCZOS_NAMES):
            return None
        for path in self.upscaler_files():
            if name.strip() in (path.stem, path.name):
                return path.name
        accepted = ", ".join(item.name for item in self.upscalers())
        raise InvalidField(field, f"unknown upscaler {name!r}; accepted: {accepted}")


def samplers() -> list[SamplerItem]:
    """The A1111 samplers this server runs (contract.a1111_names.SAMPLERS)."""
    return [SamplerItem(name=s.name, aliases=list(s.aliases), options={}) for s in SAMPLERS]


def schedulers() -> list[SchedulerItem]:
    """The A1111 schedule types some sampler here maps, with A1111's own facts about each."""
    items = []
    for name, label in SCHEDULE_TYPES:
        rho, inner, aliases = _SCHEDULE_FACTS.get(name, (-1, False, None))
        items.append(SchedulerItem(name=name, label=label, aliases=aliases, default_rho=rho, need_inner_model=inner))
    return items


def model_item(location: str) -> SDModelItem:
    """A model as A1111 lists a checkpoint: ``title`` is ``<name> [<short hash>]``.

    The hash is the sha256 of the model's location (hub id, file or folder name), not of its
    weights: hashing gigabytes per request is not worth it, and it only needs to be stable.
    """
    filename = Path(location).name if Path(location).is_absolute() else location
    model_name = Path(filename).stem if filename.endswith(".safetensors") else filename.rsplit("/", 1)[-1]
    sha256 = hashlib.sha256(location.encode()).hexdigest()
    return SDModelItem(
        title=f"{model_name} [{sha256[:10]}]", model_name=model_name, hash=sha256[:10], sha256=sha256, filename=filename
    )


def _names(item: SDModelItem, wanted: str) -> bool:
    """Whether ``wanted`` names the model, as A1111's checkpoint aliases do (title, name, file, hash)."""
    wanted = wanted.strip()
    return wanted in (item.title, item.model_name, item.filename, item.hash, item.sha256)
