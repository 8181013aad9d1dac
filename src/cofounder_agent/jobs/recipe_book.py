"""Named recipes: reusable job templates, built in or saved as JSON files in the recipes dir.

The server-side equivalent of the seed's ``data/workflows/*.json``. A job names one with
``"recipe": "full_pipeline"``; the options the job sets itself win over the template's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cofounder_agent.contract.errors import BrokenConfig, InvalidField, NotFound
from cofounder_agent.schemas.jobs import JobCreate, RecipeTemplate

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

BUILT_IN: dict[str, dict[str, Any]] = {
    "sdxl_with_refiner": {"refiner": {"mode": "ensemble", "switch_at": 0.8}},
    "full_pipeline": {
        "refiner": {"mode": "ensemble", "switch_at": 0.8},
        "stages": [
            {"type": "refine", "strength": 0.3, "steps": 30},
            {"type": "upscale", "factor": 2, "strength": 0.2, "steps": 20},
        ],
        "keep_intermediates": True,
    },
    "progressive": {"stages": [{"type": "progressive", "strengths": [0.5, 0.3, 0.15], "steps": 20}]},
    "adaptive": {"stages": [{"type": "adaptive", "threshold": 0.8, "max_passes": 5, "steps": 12}]},
    # The seed's portrait_pipeline: 35 base steps at cfg 7.5, refine 0.3 x 15, faces at 0.5.
    "portrait": {
        "steps": 35,
        "guidance_scale": 7.5,
        "stages": [
            {"type": "refine", "strength": 0.3, "steps": 15},
            {"type": "face_restore", "strength": 0.5},
        ],
    },
}

# The seed's enhance_textures: a refine pass with a texture prompt (strength 0.4, 15 steps, cfg 8).
TEXTURES = {
    "fabric": "detailed fabric texture, visible weave, cloth material",
    "metal": "metallic surface, reflective, detailed metal texture",
    "skin": "detailed skin texture, pores, natural skin",
    "wood": "wood grain, detailed wood texture, natural pattern",
    "stone": "stone texture, rough surface, detailed rock",
}
BUILT_IN |= {
    f"texture_{name}": {
        "stages": [{"type": "refine", "prompt": prompt, "strength": 0.4, "steps": 15, "guidance_scale": 8.0}]
    }
    for name, prompt in TEXTURES.items()
}
# The seed's multi_detail_enhancement example: faces, then a texture. Its third step, a masked
# region, needs the job's own mask: a job writes that chain in its own stages (docs/stages.md).
BUILT_IN["detail_chain"] = {
    "stages": [
        {"type": "face_restore", "strength": 0.6},
        {"type": "refine", "prompt": TEXTURES["fabric"], "strength": 0.4, "steps": 15, "guidance_scale": 8.0},
    ]
}


class RecipeBook:
    """Built-in recipes plus the operator's JSON files (which may override a built-in until deleted)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)

    def names(self) -> list[str]:
        return sorted(set(BUILT_IN) | {p.stem for p in self.dir.glob("*.json") if NAME.fullmatch(p.stem)})

    def saved(self, name: str) -> bool:
        """Whether a saved recipe file of this name exists (for a built-in name: an override)."""
        path = self._path(name)
        # As get() reads them: a symlink is never followed out of the recipes dir.
        return bool(NAME.fullmatch(name)) and path.is_file() and not path.is_symlink()

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def get(self, name: str) -> RecipeTemplate:
        if not NAME.fullmatch(name):
            raise NotFound("recipe", "recipe", f"no recipe named {name!r}")
        if self.saved(name):
            path = self._path(name)
            try:
                return RecipeTemplate.model_validate_json(path.read_bytes())
            except ValidationError as exc:  # a hand-edited file gone wrong: say which
                raise BrokenConfig(f"{path.name}: {exc.error_count()} errors", code="recipe_file_invalid") from None
        if name in BUILT_IN:
            return RecipeTemplate.model_validate(BUILT_IN[name])
        raise NotFound("recipe", "recipe", f"no recipe named {name!r}")

    def put(self, name: str, template: RecipeTemplate) -> bool:
        """Save a recipe; True when it is new."""
        if not NAME.fullmatch(name):
            raise InvalidField("name", "lowercase letters, digits, - and _, at most 64")
        path = self._path(name)
        new = not path.exists() and name not in BUILT_IN
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(template.model_dump(mode="json", exclude_unset=True), indent=2))
        tmp.replace(path)
        return new

    def delete(self, name: str) -> None:
        """Delete a saved recipe; a built-in of the same name is in force again."""
        if not self.saved(name):
            raise NotFound("recipe", "name", f"no saved recipe named {name!r}")
        self._path(name).unlink(missing_ok=True)  # a concurrent delete got there first: same end

    def apply(self, recipe: JobCreate) -> JobCreate:
        """The job's recipe over the named template: fields the job set win."""
        if recipe.recipe is None:
            return recipe
        if recipe.recipe not in self.names():  # a bad field of the job body: 422, not 404
            raise InvalidField("recipe", f"no recipe named {recipe.recipe!r}")
        template = self.get(recipe.recipe).model_dump(exclude_unset=True, exclude_none=True)
        own = recipe.model_dump(include=recipe.model_fields_set)
        return JobCreate.model_validate({**template, **own, "recipe": recipe.recipe})
