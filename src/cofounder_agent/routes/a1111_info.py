"""AUTOMATIC1111's auxiliary `/sdapi/v1` endpoints: progress, interrupt, options, model lists, upscaling.

Thin translations onto the job queue and the fleet (services/a1111_info.py); what maps and
what is ignored is in docs/compatibility.md, "AUTOMATIC1111: the other endpoints".
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from cofounder_agent.deps import FleetDep, GalleryDep, ImageFilesDep, JobServiceDep, SettingsDep, disconnect_of
from cofounder_agent.jobs.attend import Caller
from cofounder_agent.schemas import ErrorBody
from cofounder_agent.schemas.a1111_info import (
    Empty,
    ExtrasSingleImageRequest,
    ExtrasSingleImageResponse,
    FaceRestorerItem,
    LatentUpscalerModeItem,
    OptionsPublic,
    ProgressPublic,
    SamplerItem,
    SchedulerItem,
    ScriptsList,
    SDModelItem,
    SDVaeItem,
    UpscalerItem,
)
from cofounder_agent.services import a1111_info as info
from cofounder_agent.services.a1111_extras import extra_single_image
from cofounder_agent.services.a1111_info import A1111Info

PREFIX = "/sdapi/v1"
router = APIRouter(prefix=PREFIX, tags=["a1111"])
# Routes that take a picture: included with the upload body limit (main.py).
upload_router = APIRouter(prefix=PREFIX, tags=["a1111"])


def _a1111(jobs: JobServiceDep, fleet: FleetDep, settings: SettingsDep) -> A1111Info:
    # A view over services the lifespan built once; it holds no state of its own.
    return A1111Info(jobs, fleet, settings)


A1111Dep = Annotated[A1111Info, Depends(_a1111)]


@router.get("/progress")
async def progress(a1111: A1111Dep, skip_current_image: bool = False) -> ProgressPublic:
    """The oldest running job's progress and seconds left; 0 and ``job_count`` 0 when idle.

    ``current_image`` is always null (no preview is rendered mid-job), so ``skip_current_image``
    changes nothing.
    """
    return await a1111.progress()


@router.post("/interrupt")
async def interrupt(a1111: A1111Dep) -> Empty:
    """Stop the running jobs at their next step (as DELETE /v1/jobs/{id}); queued jobs still run."""
    await a1111.interrupt()
    return Empty()


@router.post("/skip")
async def skip(a1111: A1111Dep) -> None:
    """A1111 skips the current image of a batch; a job here cannot drop one image, so this is interrupt."""
    await a1111.interrupt()


@router.get("/options")
async def get_options(a1111: A1111Dep) -> OptionsPublic:
    """The settings A1111's clients read; ``sd_model_checkpoint`` is the loaded model's title."""
    return await a1111.options()


@router.post("/options", responses={422: {"model": ErrorBody}})
async def set_options(a1111: A1111Dep, options: Annotated[dict[str, Any], Body()]) -> None:
    """Accept any options and ignore them (nothing changes at run time); a model not loaded here is a 422."""
    await a1111.set_options(options)


@router.get("/sd-models")
async def sd_models(a1111: A1111Dep) -> list[SDModelItem]:
    """The loaded base model; empty while no engine is ready."""
    return await a1111.models()


@router.get("/samplers")
async def samplers() -> list[SamplerItem]:
    """The A1111 samplers that map onto this server's schedulers."""
    return info.samplers()


@router.get("/schedulers")
async def schedulers() -> list[SchedulerItem]:
    """The A1111 schedule types some sampler here runs with."""
    return info.schedulers()


@router.get("/upscalers")
async def upscalers(a1111: A1111Dep) -> list[UpscalerItem]:
    """None and Lanczos (both Lanczos + tiled refine), then the upscaler files in IMAGE_MODELS_DIR."""
    return a1111.upscalers()


@router.get("/latent-upscale-modes")
async def latent_upscale_modes() -> list[LatentUpscalerModeItem]:
    """One mode, Latent: SillyTavern lists upscalers only when this answers too."""
    return [LatentUpscalerModeItem(name="Latent")]


@router.get("/sd-vae")
async def sd_vae() -> list[SDVaeItem]:
    """None to choose: the model's own VAE always decodes (``sd_vae`` is Automatic)."""
    return []


@router.get("/face-restorers")
async def face_restorers(settings: SettingsDep) -> list[FaceRestorerItem]:
    """The server's face model (IMAGE_FACE_MODEL), when it has one."""
    face = settings.image_face_model
    return [FaceRestorerItem(name=face)] if face and (settings.models_dir / face).is_file() else []


@router.get("/scripts")
async def scripts() -> ScriptsList:
    """No scripts: webuiapi reads this at start and adds no always-on script arguments."""
    return ScriptsList()


@upload_router.post(
    "/extra-single-image",
    responses={
        409: {"model": ErrorBody},
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
        429: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def extras_single_image(
    body: ExtrasSingleImageRequest, request: Request, a1111: A1111Dep, gallery: GalleryDep, files: ImageFilesDep
) -> ExtrasSingleImageResponse:
    """Upscale one picture 2x or 4x through the job queue (restoring faces when asked)."""
    return await extra_single_image(a1111, gallery, files, body, Caller(disconnect_of(request.receive)))
