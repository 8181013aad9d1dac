#!/usr/bin/env bash
# Install everything into .venv (CPU torch pinned by constraints.txt), lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."

# The PostgreSQL tests start their own server from Debian's binaries (never a mock, never skipped).
# The /ui browser tests drive Debian's Chromium through its own chromedriver (never downloaded,
# never skipped); fonts-dejavu-core gives the screenshots glyphs. One apt-get update for both.
need_pg=() need_browser=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pg=(postgresql)
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || need_browser=(chromium chromium-driver fonts-dejavu-core)
if [ ${#need_pg[@]} -gt 0 ] || [ ${#need_browser[@]} -gt 0 ]; then
    apt-get update -qq
    export DEBIAN_FRONTEND=noninteractive
    if [ ${#need_pg[@]} -gt 0 ]; then apt-get install -y -qq "${need_pg[@]}" >/dev/null; fi
    # Without recommends: chromium-common would pull in upower, udev, mesa, printing tools.
    if [ ${#need_browser[@]} -gt 0 ]; then
        apt-get install -y -qq --no-install-recommends "${need_browser[@]}" >/dev/null
    fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'

echo "== ruff"; .venv/bin/ruff check src tests; .venv/bin/ruff format --check src tests
echo "== mypy"; .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports
# Cyclomatic complexity: nothing at D (21) or worse; radon prints only what it finds.
echo "== radon"; complex=$(.venv/bin/radon cc src -n D -s); if [ -n "$complex" ]; then echo "$complex"; exit 1; fi
echo "== hadolint"; .venv/bin/hadolint Dockerfile
# The compose file against the Compose Specification's schema (vendored by check-jsonschema).
echo "== compose"; .venv/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
echo "== pytest"
# pytest exits 5 when it collected no test: set -e turns that into a failure, as it should.
.venv/bin/python -m pytest -q -rs --timeout=900 "$@"
