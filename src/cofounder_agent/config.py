"""Service settings, read from the environment (and ``.env``) by pydantic-settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from cofounder_agent.contract.params import RefinerMode, SchedulerName
from cofounder_agent.services.egress import parse_allow_setting

DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
# One IMAGE_DEVICE entry: what engine/device.py resolves (auto, cpu, cuda, cuda:N).
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
EMPTY_API_KEY = "IMAGE_API_KEY is set but empty: set a key, or unset the variable to run without auth"


class Settings(BaseSettings):
    """Every knob of the service; the environment variable is the field name in capitals."""

    # Errors name the setting, never its value: IMAGE_DATABASE_URL may carry a password.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    # Models (DESIGN.md §2). auto = SDXL from the local HF cache, else the built-in tiny model.
    image_model: str = "auto"
    image_refiner_model: str = "auto"
    image_vae: str | None = None
    image_single_file_config: str | None = None
    image_refiner_single_file_config: str | None = None
    image_allow_download: bool = False
    # A comma list (cuda:0,cuda:1) runs one engine and one worker per device in one process.
    image_device: str = Field("auto", description="auto, cpu, cuda, cuda:N, or a comma list of them")
    image_precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    # fp32 weights of base + refiner take 21.3 GiB (5.73 B parameters), so a 24 GB card runs
    # out at the first 1024² decode: the seed's 20 GB rule picked fp32 for it. 28 GiB leaves
    # about 6 GiB for activations; 32 GB and larger cards still get fp32.
    image_fp32_min_vram_gb: float = Field(28.0, gt=0)

    # Defaults for requests that do not say.
    image_refiner_mode: RefinerMode = "ensemble"
    image_scheduler: SchedulerName = "euler"
    image_switch_at: float = Field(0.8, gt=0, lt=1)
    image_refiner_steps: int = Field(30, ge=1, le=200)
    image_refiner_strength: float = Field(0.3, gt=0, le=1)

    # Storage and logs.
    image_data_dir: Path = Path("data")
    # A secret: a PostgreSQL URL carries the password (logs show it as ***).
    image_database_url: SecretStr | None = Field(
        None, description="the job store: postgresql+asyncpg://user:pass@host/db; default: SQLite in the data dir"
    )
    image_models_dir: Path | None = Field(None, description="upscaler/face model files; default: <data dir>/models")
    image_face_model: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.safetensors$",
        description="face_restore's default model: a GFPGAN or RestoreFormer .safetensors file in the models dir",
    )
    image_log_file: Path | None = Path("logs/cofounder_agent.log")
    image_log_level: str = "INFO"
    image_log_format: Literal["text", "json"] = "text"

    # The fast path (docs/benchmarks.md): off by default; each keeps the pixels to rounding.
    image_channels_last: bool = False
    image_fuse_qkv: bool = False
    image_compile: bool = Field(False, description="torch.compile the UNets; compiles each size at start")
    image_compile_mode: Literal["default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune"] = (
        "max-autotune-no-cudagraphs"
    )
    image_compile_sizes: list[int] = Field(
        default_factory=lambda: [1024], description="square sizes to compile and warm up at start"
    )

    # Micro-batching: compatible queued jobs (same size, schedule, guidance, refiner settings)
    # run as one batch of up to this many; 1 turns it off. It pays on GPUs (see docs/benchmarks.md).
    image_batch_max: int = Field(1, ge=1, le=16)
    image_batch_wait_s: float = Field(
        0.0, ge=0, le=5, description="how long a job that could batch waits for companions to be queued"
    )

    # Jobs (issue #3): backpressure, limits, webhooks, access.
    image_max_queue: int = Field(100, ge=1, description="queued jobs beyond this get 429")
    image_job_timeout_s: float = Field(600.0, gt=0)
    # Leases (docs/jobs.md): a worker renews its jobs' leases every third of this; a job whose
    # lease runs out (its worker died or hung) is queued again, or fails after its last attempt.
    image_lease_s: float = Field(
        60.0, ge=1, le=3600, description="how long a claimed job stays a worker's without a heartbeat"
    )
    # Admission by cost (docs/jobs.md): pixels x denoising steps over every image and stage
    # pass, in megapixel-steps (1024x1024 for one step = 1). The heaviest built-in recipes at
    # 1024x1024 and 40 steps cost 74 an image (full_pipeline) and 79 (adaptive, counting all
    # its passes, with an img2img refiner), so 8 images fit (632); 8 x 2048x2048 x 200 steps
    # (6400) and 8 progressive stages of 8 passes at 200 steps (6400 at strength 0.5, 12800
    # at 1) are 6-13 times over.
    image_max_job_cost: float = Field(
        1000.0, gt=0, description="jobs costing more megapixel-steps are refused with 422 before queueing"
    )
    image_max_body_mb: float = Field(1.0, gt=0, description="JSON request bodies")
    image_max_upload_mb: float = Field(20.0, gt=0)
    image_webhook_secret: SecretStr | None = None
    image_webhook_attempts: int = Field(5, ge=1, le=20)
    # NoDecode: the validator reads both a JSON list and "a,b" (pydantic-settings alone takes JSON only).
    image_webhook_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="host names and CIDRs webhooks may reach besides public addresses"
    )
    image_api_key: SecretStr | None = None

    # Pexels stock photos (fallback source).
    pexels_api_key: SecretStr | None = None
    pexels_base_url: str = "https://api.pexels.com"
    pexels_timeout_s: float = Field(10.0, gt=0)
    pexels_max_download_mb: float = Field(20.0, gt=0)

    @field_validator(
        "image_log_file",
        "image_vae",
        "image_single_file_config",
        "image_refiner_single_file_config",
        "pexels_api_key",
        "image_webhook_secret",
        "image_models_dir",
        "image_face_model",
        "image_database_url",
        mode="before",
    )
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        # IMAGE_LOG_FILE= (empty) turns file logging off instead of naming the current directory.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("image_database_url")
    @classmethod
    def _database_driver(cls, value: SecretStr | None) -> SecretStr | None:
        # The store is async: name the driver, so a bare postgresql:// fails here, not at start.
        if value is None:
            return None
        try:
            driver = make_url(value.get_secret_value()).drivername
        except ArgumentError:
            raise ValueError("not a database URL: use postgresql+asyncpg://… or sqlite+aiosqlite:///…") from None
        if driver not in DATABASE_DRIVERS:
            raise ValueError(
                f"the driver {driver!r} is not supported: use postgresql+asyncpg://… or sqlite+aiosqlite:///…"
            )
        return value

    @field_validator("image_device")
    @classmethod
    def _device_list(cls, value: str) -> str:
        entries = [entry.strip() for entry in value.split(",")]
        for entry in entries:
            if not _DEVICE.fullmatch(entry):
                raise ValueError(f"IMAGE_DEVICE: {entry!r} is not auto, cpu, cuda or cuda:N (a comma list of them)")
        if len(entries) > 1 and "auto" in entries:
            raise ValueError("IMAGE_DEVICE: auto picks one device; list the devices instead (cuda:0,cuda:1)")
        # Two engines on one GPU would only fight over its memory; on CPU they share the cores (tests).
        gpus = ["cuda:0" if entry == "cuda" else entry for entry in entries if entry != "cpu"]
        if len(gpus) != len(set(gpus)):
            raise ValueError("IMAGE_DEVICE: a GPU is listed twice (only cpu may repeat)")
        return ",".join(entries)

    @field_validator("image_webhook_allow", mode="before")
    @classmethod
    def _allow_list(cls, value: object) -> list[str]:
        return parse_allow_setting(value)

    @field_validator("image_api_key", mode="before")
    @classmethod
    def _api_key_not_empty(cls, value: object) -> object:
        # The server listens on all interfaces in a container: an empty key (a typo, an unset
        # shell variable in a compose file) must not quietly mean "no auth".
        given = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(given, str) and not given.strip():
            raise ValueError(EMPTY_API_KEY)
        return value

    @property
    def database_url(self) -> str:
        """The job store's SQLAlchemy URL: IMAGE_DATABASE_URL, else SQLite in the data dir."""
        if self.image_database_url is not None:
            return self.image_database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{(self.image_data_dir / 'jobs.sqlite3').resolve()}"

    @property
    def devices(self) -> list[str]:
        """IMAGE_DEVICE as a list: one engine and one worker each."""
        return self.image_device.split(",")

    def for_device(self, device: str) -> Settings:
        """These settings for the engine on one of ``devices``."""
        return self.model_copy(update={"image_device": device})

    @property
    def models_dir(self) -> Path:
        return self.image_models_dir or self.image_data_dir / "models"
