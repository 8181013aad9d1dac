"""The contract between the web tier and the engine: torch-free, and free of FastAPI and storage.

Both tiers import it; it imports neither (import-linter checks this in CI).
"""
