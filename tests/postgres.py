"""The tests' PostgreSQL server: the starter lives in the package, so ``bench --suite scale`` uses it too."""

from cofounder_agent.bench.pgserver import create_database, postgres_server

__all__ = ["create_database", "postgres_server"]
