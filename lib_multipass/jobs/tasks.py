"""A list's tasks: each job checked as `multipass run` checks its job, with what it loads
(for affinity) and its estimated steps (for the list's bar)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..recipe import Problem, RecipeError
from .affinity import Need
from .listfile import JobSpec
from .workers import Task


def make_tasks(
    specs: Sequence[JobSpec],
    backend: Any | None,
    *,
    default_checkpoint: str,
) -> list[Task]:
    """Every job's task, each checked as `multipass run` checks its job (when `backend` is
    given: names, files, masks); RecipeError naming every problem of every job at once."""
    from ..inputs import InputError, read_inputs
    from ..preflight import prepare
    from ..runner import make_job

    tasks, problems = [], []
    inputs_of: dict[Path, Any] = {}
    for spec in specs:
        inputs = None
        if spec.init is not None:
            if spec.init not in inputs_of:
                try:
                    inputs_of[spec.init] = read_inputs(spec.init)
                except InputError as e:
                    inputs_of[spec.init] = e
            inputs = inputs_of[spec.init]
            if isinstance(inputs, InputError):
                problems.append(Problem(spec.where, "init", inputs.value, inputs.allowed))
                continue
        job = make_job(
            spec.recipe,
            default_checkpoint=default_checkpoint,
            size=spec.size,
            recipe_dir=spec.recipe_dir,
            inputs=inputs,
        )
        steps = job.count * job.ctx.steps * (1 + len(spec.recipe.passes))
        if backend is not None:
            try:
                runs, _masks = prepare(spec.recipe, job, backend)
            except RecipeError as e:
                problems += [
                    dataclasses.replace(p, where=f"{spec.where}, {p.where}") for p in e.problems
                ]
                continue
            base = 0 if job.images is not None else job.ctx.steps
            steps = job.count * (base + sum(r.count.run for r in runs))
        tasks.append(Task(spec, job, _need(spec, job, backend), max(1, steps)))
    if problems:
        raise RecipeError(problems)
    return tasks


def _need(spec: JobSpec, job: Any, backend: Any | None) -> Need:
    names = [job.ctx.checkpoint] + [
        p.checkpoint for p in spec.recipe.passes if p.enabled and p.checkpoint
    ]
    if backend is not None:
        names = [backend.checkpoint_id(n) or n for n in names]
    out: list[str] = []
    for n in names:
        if n and n not in out:
            out.append(n)
    return Need(tuple(out))
