"""Named recipes: list, read and save reusable job templates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from cofounder_agent.deps import JobServiceDep
from cofounder_agent.jobs.recipe_book import BUILT_IN, NAME
from cofounder_agent.jobs.resolve import resolve_recipe
from cofounder_agent.schemas import ErrorBody
from cofounder_agent.schemas.jobs import JobCreate, RecipeTemplate

router = APIRouter(prefix="/v1/recipes", tags=["recipes"])
# A recipe name as the store takes it; the path says so, so a bad name is a 422 naming it.
RecipeName = Annotated[str, Path(pattern=NAME.pattern, description="lowercase letters, digits, - and _, at most 64")]


class RecipeListed(BaseModel):
    name: str
    built_in: bool = Field(description="a recipe that ships with the server")
    overridden: bool = Field(description="a built-in replaced by a saved recipe; DELETE restores it")


class RecipesPublic(BaseModel):
    data: list[RecipeListed]
    count: int


@router.get("")
async def list_recipes(jobs: JobServiceDep) -> RecipesPublic:
    """The recipes a job can name: built-in ones and those saved in the recipes dir."""
    book = jobs.recipes
    data = [
        RecipeListed(name=name, built_in=name in BUILT_IN, overridden=name in BUILT_IN and book.saved(name))
        for name in book.names()
    ]
    return RecipesPublic(data=data, count=len(data))


@router.get("/{name}", responses={404: {"model": ErrorBody}}, response_model_exclude_none=True)
async def get_recipe(name: RecipeName, jobs: JobServiceDep) -> RecipeTemplate:
    """One recipe's options."""
    return jobs.recipes.get(name)


@router.put(
    "/{name}",
    responses={201: {"model": RecipeTemplate, "description": "Saved as a new recipe"}, 422: {"model": ErrorBody}},
    response_model_exclude_none=True,
)
async def put_recipe(name: RecipeName, body: RecipeTemplate, jobs: JobServiceDep, response: Response) -> RecipeTemplate:
    """Save a recipe (201 when new); a saved recipe overrides a built-in of the same name until deleted."""
    # The checks a job gets, now: a saved recipe that no job could use is refused here.
    resolve_recipe(JobCreate.model_validate({"prompt": "check", **body.model_dump(exclude_none=True)}), jobs.settings)
    if jobs.recipes.put(name, body):
        response.status_code = 201
    return jobs.recipes.get(name)


@router.delete("/{name}", status_code=204, responses={404: {"model": ErrorBody}})
async def delete_recipe(name: RecipeName, jobs: JobServiceDep) -> Response:
    """Delete a saved recipe; a built-in one of the same name is restored."""
    jobs.recipes.delete(name)
    return Response(status_code=204)
