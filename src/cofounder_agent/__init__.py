"""Self-hosted two-stage SDXL image service."""

__version__ = "0.1.0"
