"""The FastAPI application: services built once in the lifespan, routes injected with them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from cofounder_agent import __version__
from cofounder_agent.config import Settings
from cofounder_agent.docs_ui import install_docs
from cofounder_agent.errors import install_error_handlers
from cofounder_agent.jobs.ending import JobEnding
from cofounder_agent.jobs.outbox import EndingDispatcher
from cofounder_agent.jobs.pgbus import event_bus
from cofounder_agent.jobs.recipe_book import RecipeBook
from cofounder_agent.jobs.service import JobService
from cofounder_agent.jobs.store import Store
from cofounder_agent.middleware import (
    ApiKeyMiddleware,
    DeclaredSizeMiddleware,
    FormAsJsonMiddleware,
    InFlight,
    InFlightMiddleware,
)
from cofounder_agent.migrations import redacted
from cofounder_agent.openai_errors import OpenAIErrorShape
from cofounder_agent.openapi import install_openapi
from cofounder_agent.routes import (
    a1111,
    a1111_info,
    boards,
    health,
    images,
    jobs,
    media_routes,
    metrics,
    openai_compat,
    openai_edits,
    recipes,
)
from cofounder_agent.services.egress import webhook_client
from cofounder_agent.services.featured_image import FeaturedImageService
from cofounder_agent.services.fleet import Fleet
from cofounder_agent.services.gallery import Gallery
from cofounder_agent.services.metrics import Metrics
from cofounder_agent.services.pexels import PexelsClient
from cofounder_agent.services.webhooks import JobWebhooks, WebhookSender
from cofounder_agent.services.worker_pool import WorkerPool
from cofounder_agent.storage import ImageStore
from cofounder_agent.ui import install_ui

log = logging.getLogger(__name__)
MB = 1024 * 1024
# The OpenAI routes that take pictures (multipart): the upload limit, a 413 naming image.
PICTURE_PATHS = ("/v1/images/edits", "/v1/images/variations")
# How uvicorn serves the app (`serve` and the tests alike). An idle keep-alive connection stays
# open 75 s (nginx's default), longer than clients and proxies keep theirs (httpx and Node 5 s,
# AWS ALB 60 s): a server that closes first races a client reusing the connection, which then
# reads a reset instead of its response. uvicorn's own default, 5 s, loses that race to httpx.
KEEP_ALIVE_S = 75
# Open event streams last as long as their job: on SIGTERM give them 5 s, then close them, so
# shutdown (which re-queues the running job) happens within the grace period.
GRACEFUL_SHUTDOWN_S = 5


def create_app(
    settings: Settings | None = None,
    *,
    http_transport: httpx.AsyncBaseTransport | None = None,
    embedded_worker: bool = True,
) -> FastAPI:
    """Build the app; ``http_transport`` lets tests stand in for Pexels' servers.

    ``embedded_worker=False`` is an API replica (`serve --no-worker`): no engine in this process
    (torch is never imported); separate `worker` processes run the jobs, and health reports them.
    """
    settings = settings or Settings()
    in_flight = InFlight()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # 1. Services, built once and shared through app.state (see deps.py).
        http = httpx.AsyncClient(transport=http_transport, timeout=settings.pexels_timeout_s, follow_redirects=True)
        db = Store(settings.database_url, lease_s=settings.image_lease_s)
        log.info("job store: %s", redacted(settings.database_url))
        await db.init()  # migrates the schema to the newest revision, one replica at a time
        files = ImageStore(settings.image_data_dir)
        # The ports (job store/queue, event bus, blob store): the API side and the worker side
        # talk only through them.
        bus = event_bus(db)  # in-process on SQLite; the database's own on PostgreSQL
        ending = JobEnding(db, bus, files)
        # One engine and one worker per IMAGE_DEVICE entry; none on an API replica.
        pool = WorkerPool(db, bus, files, ending, settings) if embedded_worker else None
        fleet = Fleet(db, pool.by_worker() if pool else {}, settings.image_lease_s, files.volume_id)
        job_service = JobService(db, bus, ending, settings, RecipeBook(settings.image_data_dir / "recipes"))
        pexels = PexelsClient(
            settings.pexels_api_key,
            http,
            settings.pexels_base_url,
            max_download_bytes=int(settings.pexels_max_download_mb * MB),
        )
        app.state.settings, app.state.job_store, app.state.files = settings, db, files
        app.state.fleet, app.state.jobs, app.state.pexels = fleet, job_service, pexels
        app.state.featured = FeaturedImageService(fleet, job_service, pexels, files, settings)
        app.state.gallery = Gallery(db, files)

        # 2. What happens when a job ends: metrics, and its webhook if it asked for one.
        # Webhooks go through the egress policy: public addresses, or IMAGE_WEBHOOK_ALLOW.
        hooks_http = webhook_client(settings.image_webhook_allow)
        webhooks = WebhookSender(hooks_http, settings.image_webhook_secret, settings.image_webhook_attempts)
        app.state.metrics = metrics = Metrics(db, fleet, in_flight)

        # From the outbox: once per job end, whichever process (worker, API, restart) ended it.
        outbox = EndingDispatcher(db, [metrics.on_finish, JobWebhooks(webhooks, job_service).on_finish])

        # 3. Jobs a crash left running are queued again (once); queued jobs simply wait. What
        #    their interrupted attempts stored goes, and so do image files without a row.
        requeued, failed = await db.recover(files)
        if requeued or failed:
            log.warning("after a restart: re-queued %s job(s), failed %s interrupted twice", len(requeued), len(failed))
        for job_id in failed:  # their last event, as for any job that ends (hooks: the outbox)
            row = await db.get_job(job_id)
            if row is not None:
                await ending.finished(row)

        # 4. Models load in the background: /healthz answers at once, /readyz when loaded.
        if pool is not None:
            pool.start()
        outbox.start()
        try:
            yield
        finally:
            if pool is not None:
                await pool.stop()
            await outbox.stop()  # after the workers: the ends they recorded while stopping go out
            await webhooks.close()
            await bus.close()  # its last events written before the store's connections go
            await db.close()
            await http.aclose()
            await hooks_http.aclose()

    app = FastAPI(
        title="cofounder-agent image service",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc: install_docs, with their assets from the package
        redoc_url=None,
    )
    # Body limits: per router (FastAPI also counts bodies without a Content-Length there),
    # and by declared size up front, answered in the API's error shape.
    body_limit, upload_limit = int(settings.image_max_body_mb * MB), int(settings.image_max_upload_mb * MB)
    b64_limit = upload_limit * 4 // 3 + MB  # a picture as base64 in JSON: 4/3 of its bytes, plus the other fields
    app.add_middleware(FormAsJsonMiddleware)
    base64_pictures = ("/sdapi/v1/extra-single-image", "/sdapi/v1/img2img", "/sdapi/v1/png-info")
    routes = {"/v1/images": (upload_limit, "file")} | {path: (upload_limit, "image") for path in PICTURE_PATHS}
    routes |= {path: (b64_limit, "init_images" if path.endswith("img2img") else "image") for path in base64_pictures}
    app.add_middleware(DeclaredSizeMiddleware, default=body_limit, routes=routes)
    if settings.image_api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.image_api_key.get_secret_value())
    app.add_middleware(OpenAIErrorShape)  # outside the middleware answering 401 and 413
    app.add_middleware(InFlightMiddleware, counter=in_flight)  # added last: the outermost
    install_error_handlers(app)
    install_openapi(app, api_key=settings.image_api_key is not None)
    install_docs(app)
    install_ui(app)
    # openai_compat before images: POST /v1/images/generations is not an image id.
    # openai_edits too: POST /v1/images/edits and /variations are not image ids either.
    routers = (health, metrics, media_routes, jobs, openai_compat, images, boards, recipes)
    for module in (*routers, a1111_info):
        app.include_router(module.router, max_body_size=body_limit)
    app.include_router(images.upload_router, max_body_size=upload_limit)
    app.include_router(openai_edits.router, max_body_size=upload_limit)  # pictures, in multipart forms
    for router in (a1111_info.upload_router, a1111.router):  # base64 pictures in JSON
        app.include_router(router, max_body_size=b64_limit)
    return app
