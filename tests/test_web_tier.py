"""The web tier (routes, schemas, client, CLI, app factory) imports no torch or diffusers."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_web_tier_loads_no_torch() -> None:
    code = (
        "import sys, cofounder_agent.main, cofounder_agent.cli, cofounder_agent.schemas;"
        "import cofounder_agent.routes.media_routes, cofounder_agent.services.image_service;"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules);"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
