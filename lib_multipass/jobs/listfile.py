"""The job-list file: JSON Lines, one object per line, each one job or a product of jobs.

A line names a recipe (a file, relative to the list, or an inline object) and overrides its
base: any base field (`prompt`, `negative_prompt`, `checkpoint`, `seed`, `images`, `steps`,
`cfg_scale`, `sampler`, `scheduler`, ...), `size` ("WxH") and `init` (an image or a folder, as
`multipass run --init`). Plural keys make a product, one job per combination, for the
overnight case: `recipes`, `prompts`, `checkpoints` (lists) and `seeds` (a list, or a range
"100-199"):

    {"recipe": "portrait.json", "prompt": "a knight", "seed": 7, "images": 4}
    {"recipes": ["a.json", "b.json"], "prompts": ["a fox", "an owl"], "seeds": "1-50"}

Blank lines and lines starting with '#' are skipped. Every line is checked before any job runs;
each problem names the list file and line (and, in a product, the job), the field, the value
and what is allowed, in the form recipe files use.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fields import BASE_FIELDS, field_map
from ..recipe import (
    Problem,
    RecipeError,
    _Bad,
    check_recipe,
    coerce,
    explain,
    read_json,
    read_recipe_file,
    read_text_file,
    recipe_to_dict,
)

MAX_JOBS = 10_000  # jobs in one list, products expanded
MAX_LINE_BYTES = 1024 * 1024
_BASE = field_map(BASE_FIELDS)
BASE_KEYS = tuple(f.name for f in BASE_FIELDS if f.name not in ("version", "step_mode"))
PLURALS = {"recipes": "recipe", "prompts": "prompt", "checkpoints": "checkpoint", "seeds": "seed"}
OWN_KEYS = ("recipe", "size", "init", "name", *PLURALS)
KEYS = (*OWN_KEYS, *(k for k in BASE_KEYS if k not in OWN_KEYS))
SIZE_ALLOWED = "a size WxH, each side a multiple of 8 from 64 to 4096 (e.g. 512x768)"
SEEDS_ALLOWED = (
    "a list of seeds (whole numbers from 0 to 4294967295) or a range 'FIRST-LAST' "
    f"of at most {MAX_JOBS} seeds"
)


@dataclass(frozen=True)
class JobSpec:
    """One job of a list: its recipe (overrides merged into the base) and where it came from."""

    number: int  # 1-based, in the expanded list
    line: int  # the list file's line
    where: str  # how messages name it: "jobs.jsonl line 3" (", job 2 of 6" in a product)
    recipe: Any
    recipe_dir: Path  # where the recipe's relative paths (mask images) start
    recipe_name: str  # the recipe file's stem, or "inline"
    name: str  # the line's `name`, else the recipe's name
    size: tuple[int, int] | None = None
    init: Path | None = None

    @property
    def key(self) -> str:
        """Who this job is, whatever its place in the list: a hash of its recipe and inputs.
        A second run of a list skips the jobs whose key the manifest has as done."""
        doc = {
            "recipe": recipe_to_dict(self.recipe, compact=True),
            "size": self.size,
            "init": str(self.init) if self.init else None,
        }
        text = json.dumps(doc, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def folder(self) -> str:
        """The job's output folder name: its number, name and first seed."""
        seed = self.recipe.base.seed if self.recipe.base else -1
        return f"{self.number:04d}-{_slug(self.name)}-{'random' if seed == -1 else seed}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "job"


def read_job_list(path: Path) -> list[JobSpec]:
    """Every job of the list file at `path`; RecipeError naming every problem of every line."""
    path = Path(path)
    text = read_text_file(path, f"job list {str(path)!r}")
    return parse_job_list(text, path.name, path.parent)


def parse_job_list(text: str, list_name: str, base_dir: Path) -> list[JobSpec]:
    """The jobs of a list's text; raises RecipeError naming every problem, each by its line."""
    jobs: list[JobSpec] = []
    problems: list[Problem] = []
    recipes: dict[Path, Any] = {}  # a recipe file read once, however many lines use it
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{list_name} line {number}"
        line_jobs = list(_line_jobs(stripped, where, number, base_dir, recipes))
        problems += _shared_seeds([spec for spec, _ in line_jobs if spec is not None], where)
        for spec, found in line_jobs:
            problems += found
            if spec is not None:
                if len(jobs) >= MAX_JOBS:
                    problems.append(
                        Problem(where, "(jobs)", "more", f"at most {MAX_JOBS} jobs in one list")
                    )
                    raise RecipeError(problems)
                jobs.append(dataclasses.replace(spec, number=len(jobs) + 1))
    if not jobs and not problems:
        problems.append(Problem(list_name, "(file)", "no jobs", "at least one job line"))
    if problems:
        raise RecipeError(problems)
    return jobs


def _shared_seeds(specs: list[JobSpec], where: str) -> list[Problem]:
    """A line's jobs that differ only in their seed must not share a seed: a job of N images
    takes seeds S to S+N-1, so seeds 1, 2 with 2 images each would make seed 2 twice."""
    groups: dict[str, list[tuple[int, int]]] = {}
    for spec in specs:
        base = spec.recipe.base
        if base.seed == -1 or spec.init is not None:
            continue  # random seeds are drawn apart; given images differ whatever the seed
        doc = recipe_to_dict(
            dataclasses.replace(spec.recipe, base=dataclasses.replace(base, seed=0))
        )
        groups.setdefault(json.dumps([doc, spec.size, str(spec.init)], default=str), []).append(
            (base.seed, base.images)
        )
    for runs in groups.values():
        runs.sort()
        for (a, n), (b, _) in itertools.pairwise(runs):
            if b < a + n:
                allowed = (
                    f"seeds at least 'images' ({n}) apart: a job of {n} images takes seeds "
                    f"{a} to {a + n - 1} (e.g. a list [{a}, {a + n}, {a + 2 * n}], or images 1)"
                )
                return [Problem(where, "seeds", f"{a} and {b}", allowed)]
    return []


def _line_jobs(
    line: str, where: str, number: int, base_dir: Path, recipes: dict[Path, Any]
) -> Iterator[tuple[JobSpec | None, list[Problem]]]:
    """The jobs of one line, each with its problems; a bad line yields its problems once."""
    if len(line.encode()) > MAX_LINE_BYTES:
        allowed = f"a line of at most {MAX_LINE_BYTES // 1024} KB"
        yield None, [Problem(where, "(line)", "a longer line", allowed)]
        return
    try:
        data = read_json(line)
    except json.JSONDecodeError as e:
        yield (
            None,
            [Problem(where, "(line)", e.msg, f"one JSON object per line (column {e.colno})")],
        )
        return
    except (ValueError, RecursionError) as e:
        yield None, [Problem(where, "(line)", str(e)[:80], "one JSON object per line")]
        return
    if not isinstance(data, Mapping):
        yield None, [Problem(where, "(line)", data, 'a JSON object such as {"recipe": "r.json"}')]
        return
    problems = _key_problems(data, where)
    values = _values(data, where, base_dir, problems)
    axes = _axes(data, where, base_dir, recipes, problems)
    if problems:
        yield None, problems
        return
    combos = list(itertools.product(*axes.values()))
    if len(combos) > MAX_JOBS:
        allowed = f"at most {MAX_JOBS} jobs in one list"
        yield None, [Problem(where, "(product)", f"{len(combos)} jobs", allowed)]
        return
    for k, combo in enumerate(combos):
        chosen = dict(zip(axes, combo, strict=True))
        at = where if len(combos) == 1 else f"{where}, job {k + 1} of {len(combos)}"
        yield _job(chosen, values, at, number)


def _key_problems(data: Mapping[str, Any], where: str) -> list[Problem]:
    problems = []
    for key in getattr(data, "duplicates", ()):
        problems.append(Problem(where, key, "given twice", "each key once"))
    for key in data:
        if key not in KEYS:
            near = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            problems.append(
                Problem(
                    where, str(key), data[key], f"no such key{hint}; the keys are {', '.join(KEYS)}"
                )
            )
    for plural, single in PLURALS.items():
        if plural in data and single in data:
            problems.append(
                Problem(where, plural, data[plural], f"either '{single}' or '{plural}', not both")
            )
    if "recipe" not in data and "recipes" not in data:
        problems.append(
            Problem(where, "recipe", "nothing", "a recipe file's path or a recipe object")
        )
    return problems


def _values(
    data: Mapping[str, Any], where: str, base_dir: Path, problems: list[Problem]
) -> dict[str, Any]:
    """The line's single overrides, checked as the same fields are in a recipe's base."""
    out: dict[str, Any] = {}
    for key in BASE_KEYS:
        if key in data and key not in ("prompt", "checkpoint", "seed"):
            value = _field(key, data[key], where, problems)
            if value is not None:
                out[key] = value
    if "size" in data:
        out["size"] = _size(data["size"], where, problems)
    if "init" in data:
        init = data["init"]
        if not isinstance(init, str) or not init:
            problems.append(Problem(where, "init", init, "an image file or a folder of them"))
        else:
            path = Path(init) if Path(init).is_absolute() else base_dir / init
            if not path.exists():
                allowed = "an image file or a folder of them (this is not there)"
                problems.append(Problem(where, "init", init, allowed))
            out["init"] = path
            for key in ("images", "size"):
                if key in data:
                    why = (
                        "not with 'init': the job's images, their number and size, "
                        "are the given ones"
                    )
                    problems.append(Problem(where, key, data[key], why))
    if "name" in data and (not isinstance(data["name"], str) or not data["name"].strip()):
        problems.append(Problem(where, "name", data["name"], "a non-empty text"))
    elif "name" in data:
        out["name"] = data["name"].strip()
    return out


def _field(key: str, value: Any, where: str, problems: list[Problem]) -> Any:
    field = _BASE[key]
    try:
        return coerce(field, value)
    except _Bad:
        why = explain(field, value)
        problems.append(Problem(where, key, value, field.allowed() + (f" ({why})" if why else "")))
        return None


def _size(value: Any, where: str, problems: list[Problem]) -> tuple[int, int] | None:
    m = (
        re.fullmatch(r"\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*", value)
        if isinstance(value, str)
        else None
    )
    if m is not None:
        w, h = int(m[1]), int(m[2])
        if (
            _BASE["width"].accepts_number(w)
            and _BASE["height"].accepts_number(h)
            and not w % 8
            and not h % 8
        ):
            return w, h
    problems.append(Problem(where, "size", value, SIZE_ALLOWED))
    return None


def _axes(
    data: Mapping[str, Any],
    where: str,
    base_dir: Path,
    recipes: dict[Path, Any],
    problems: list[Problem],
) -> dict[str, list[Any]]:
    """The product's axes: one value each for single keys, a list for plural ones."""
    axes: dict[str, list[Any]] = {}
    for plural, single in PLURALS.items():
        if single in data:
            given, key = [data[single]], single
        elif plural in data:
            given, key = data[plural], plural
            if single == "seed" and isinstance(given, str):
                given = _seed_range(given, where, problems)
            if not isinstance(given, list) or not given:
                if given is not None:
                    allowed = (
                        SEEDS_ALLOWED if single == "seed" else f"a non-empty list of {single}s"
                    )
                    problems.append(Problem(where, plural, data[plural], allowed))
                continue
        else:
            continue
        if single == "recipe":
            axes[single] = [
                _recipe(
                    r, f"{key}[{i}]" if key == plural else key, where, base_dir, recipes, problems
                )
                for i, r in enumerate(given)
            ]
        else:
            axes[single] = [_field(single, v, where, problems) for v in given]
    return axes


def _seed_range(text: str, where: str, problems: list[Problem]) -> list[int] | None:
    m = re.fullmatch(r"\s*(\d{1,10})\s*-\s*(\d{1,10})\s*", text)
    if m is None or int(m[1]) > int(m[2]) or int(m[2]) - int(m[1]) >= MAX_JOBS:
        problems.append(Problem(where, "seeds", text, SEEDS_ALLOWED))
        return None
    return list(range(int(m[1]), int(m[2]) + 1))


@dataclass(frozen=True)
class _Recipe:
    data: Mapping[str, Any]
    where: str  # how its problems are named: "recipe file 'a.json'" or "recipe"
    folder: Path
    name: str


def _recipe(
    given: Any,
    key: str,
    where: str,
    base_dir: Path,
    recipes: dict[Path, Any],
    problems: list[Problem],
) -> _Recipe | None:
    if isinstance(given, Mapping):
        return _Recipe(given, f"{where}, {key}", base_dir, str(given.get("name") or "inline"))
    if not isinstance(given, str) or not given:
        problems.append(Problem(where, key, given, "a recipe file's path or a recipe object"))
        return None
    path = Path(given) if Path(given).is_absolute() else base_dir / given
    if path not in recipes:
        try:
            recipes[path] = read_recipe_file(path)
        except RecipeError as e:
            recipes[path] = e
    data = recipes[path]
    if isinstance(data, RecipeError):
        problems += [dataclasses.replace(p, where=f"{where}, {p.where}") for p in data.problems]
        return None
    return _Recipe(data, f"{where}, recipe file {given!r}", path.parent, path.stem)


def _job(
    chosen: dict[str, Any], values: dict[str, Any], where: str, line: int
) -> tuple[JobSpec | None, list[Problem]]:
    """One job: the recipe with the line's overrides merged into its base, checked."""
    source: _Recipe = chosen["recipe"]
    data = dict(source.data)
    base = (
        dict(data.get("base") or {}) if isinstance(data.get("base"), Mapping) else data.get("base")
    )
    overrides = {k: v for k, v in values.items() if k in BASE_KEYS}
    overrides |= {k: v for k, v in chosen.items() if k != "recipe"}
    if isinstance(base, dict) or base is None:
        data["base"] = {**(base or {}), **overrides}
    recipe, found = check_recipe(data)
    problems = [_named(p, source.where) for p in found]
    if recipe is None or problems:
        return None, problems
    spec = JobSpec(
        number=0,
        line=line,
        where=where,
        recipe=recipe,
        recipe_dir=source.folder,
        recipe_name=source.name,
        name=values.get("name") or source.name,
        size=values.get("size"),
        init=values.get("init"),
    )
    return spec, []


def _named(p: Problem, where: str) -> Problem:
    return dataclasses.replace(p, where=f"{where}, {p.where}")
