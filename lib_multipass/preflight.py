"""Checks before a job: everything that can be known wrong is found before anything runs.

The plan's problems (fields, sizes, crops, tiles), mask images, mask areas, detectors, and what
the backend cannot do for the base and each pass (names not in its lists, unusable files) are
all reported at once, each naming where it is; the engine's loop then assumes a valid job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from PIL import Image

from .fields import MAX_LIST
from .imaging import MASK_ALL_BLACK, MaskTooFragmented, mask_areas, open_mask_image, to_mask
from .plan import Run, base_run, plan_runs
from .protocol import Backend, Job
from .recipe import Problem, RecipeError, where_pass


def _masks_for(recipe: Any, job: Job) -> tuple[dict[int, Image.Image], list[Problem]]:
    """Load every pass's mask image before anything runs, so a bad one never half-runs a job."""
    masks: dict[int, Image.Image] = {}
    problems: list[Problem] = []
    for i, p in enumerate(recipe.passes):
        if p.enabled and p.region == "crop" and p.mask_source == "image" and p.mask_image:
            try:
                masks[i] = open_mask_image(p.mask_image, job.recipe_dir)
            except ValueError as e:
                problems.append(Problem(where_pass(i), "mask_image", p.mask_image, str(e)))
                continue
            if masks[i].getbbox() is None:
                problems.append(Problem(where_pass(i), "mask_image", p.mask_image, MASK_ALL_BLACK))
    return masks, problems + _split_problems(recipe, job, masks)


def prepare(
    recipe: Any, job: Job, backend: Backend, problems: Sequence[Problem] = ()
) -> tuple[list[Run], dict[int, Image.Image]]:
    """Plan and check the whole job; raises RecipeError before any work if anything is wrong.

    Every problem is reported at once: `problems` found earlier (bad fields, flags), the plan's,
    mask images, and what the backend cannot do for each pass and for the base generation
    (names not in its lists, unusable checkpoint files).
    """
    found = list(problems)
    ctx = job.ctx
    if job.job_mask is not None and not ctx.has_job_mask:
        ctx = dataclasses.replace(ctx, has_job_mask=True)
    runs, planned = plan_runs(recipe, ctx, family_of=backend.checkpoint_family)
    found += planned
    masks, mask_problems = _masks_for(recipe, job)
    found += mask_problems
    if job.images is None:
        found += backend.check_run(base_run(ctx))
    found += _detector_problems(recipe, job)

    seen = set()
    for run in runs:
        if run.pass_index not in seen:
            seen.add(run.pass_index)
            checked = backend.check_run(run)
            if len(seen) == 1 and run.pass_index > 0:  # a chain continued at this pass
                found += _continued(checked, recipe, run.pass_index, job.images is None)
            else:
                found += _own(checked, recipe.passes[run.pass_index])
    if job.images is not None and len(job.images) != len(job.seeds):
        found.append(
            Problem("job", "seeds", len(job.seeds), f"one seed per image ({len(job.images)})")
        )
    if found:
        raise RecipeError(_unique(found))
    return runs, masks


def _detector_problems(recipe: Any, job: Job) -> list[Problem]:
    """A detect pass's detector must be there (and loadable) before anything runs."""
    out = []
    for i, p in enumerate(recipe.passes):
        if not (p.enabled and p.region == "crop" and p.mask_source == "detect" and p.detector):
            continue
        if job.detectors is None:
            out.append(Problem(where_pass(i), "detector", p.detector, "no detectors here"))
            continue
        problem = job.detectors.problem(p.detector)
        if problem is None:
            try:
                job.detectors.get(p.detector)
            except Exception as e:  # a model file that does not load: named before the job
                problem = f"a detector that loads ({p.detector}: {' '.join(str(e).split())[:200]})"
        if problem is not None:
            out.append(Problem(where_pass(i), "detector", p.detector, problem))
    return out


def _split_problems(recipe: Any, job: Job, masks: dict[int, Image.Image]) -> list[Problem]:
    """A mask split into areas must have few enough of them, on the base image."""
    out = []
    for i, p in enumerate(recipe.passes):
        if not (p.enabled and p.region == "crop" and p.mask_split):
            continue
        source = {"image": masks.get(i), "job": job.job_mask}.get(p.mask_source)
        if source is None:
            continue
        try:
            mask_areas(to_mask(source, job.ctx.boxes_drawn_on), most=MAX_LIST)
        except MaskTooFragmented as e:
            allowed = f"a mask of at most {MAX_LIST} separate areas to split (this one: {e})"
            out.append(Problem(where_pass(i), "mask_split", True, allowed))
    return out


# fields a pass inherits when it leaves them empty (from the pass before, or the base)

INHERITED = ("checkpoint", "vae", "text_encoders", "sampler", "scheduler", "prompt")
FROM_EARLIER_PASSES = ("checkpoint", "vae", "text_encoders")  # the rest: from the base


def _own(problems: list[Problem], p: Any) -> list[Problem]:
    """A pass's problems with the values it sets itself: an inherited bad value is reported
    where it is given (the base, an earlier pass), once."""

    def own(q: Problem) -> bool:
        about = q.about or ((q.field, "sampler") if q.field == "scheduler" else (q.field,))
        return any(f not in INHERITED or bool(getattr(p, f)) for f in about)

    return [q for q in problems if own(q)]


def _continued(
    problems: list[Problem], recipe: Any, index: int, base_checked: bool
) -> list[Problem]:
    """The problems of the first pass a continued chain runs: a name it inherits from a pass
    before the start, which no run checks, is reported where that pass gives it; one it
    inherits from the base is reported by the base's check (or here, where there is none)."""
    out = []
    for q in problems:
        if _own([q], recipe.passes[index]):
            out.append(q)
            continue
        fields = [f for f in q.about or (q.field,) if f in FROM_EARLIER_PASSES]
        giver = next(
            (
                j
                for j in range(index - 1, -1, -1)
                if recipe.passes[j].enabled and any(getattr(recipe.passes[j], f) for f in fields)
            ),
            None,
        )
        if giver is not None:
            out.append(dataclasses.replace(q, where=where_pass(giver)))
        elif not base_checked:
            out.append(q)
    return out


def _unique(problems: list[Problem]) -> list[Problem]:
    """Problems in order, each once (a base and a pass can inherit the same bad name)."""
    out: list[Problem] = []
    for p in problems:
        if not any(
            q.where == p.where and q.field == p.field and q.allowed == p.allowed for q in out
        ):
            out.append(p)
    return out


def load_masks(recipe: Any, job: Job) -> dict[int, Image.Image]:
    """Every pass's mask image, by pass index; raises RecipeError naming an unreadable one."""
    masks, problems = _masks_for(recipe, job)
    if problems:
        raise RecipeError(problems)
    return masks
