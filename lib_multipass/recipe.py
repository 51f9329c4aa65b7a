"""Recipes: the passes to run after the base generation, parsed and validated from every form.

A recipe arrives as a JSON file, an API dict (named fields) or the WebUI's positional args.
All three go through one coercion per field kind, driven by the field table, and every bad value
is reported with the pass, the field, the value and what is allowed.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import json
import math
import re
import reprlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .controlnet import unit_problems
from .fields import (
    BASE_FIELDS,
    MAX_LIST,
    MAX_NAME,
    MAX_NAMES,
    MAX_PASSES,
    MAX_SIDE,
    MAX_TEXT,
    PASS_FIELDS,
    RECIPE_FIELDS,
    SEP,
    Field,
)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One bad input: where it is, which field, the value given and what is allowed."""

    where: str
    field: str
    value: Any
    allowed: str
    # the fields whose values make this problem (default: `field`): a pass that inherits
    # all of them has the problem where they are given, not again itself
    about: tuple[str, ...] = ()

    def __str__(self) -> str:

        return (
            f"{self.where}, field '{self.field}': got {shown(self.value)}; allowed: {self.allowed}"
        )


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 8, 8, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 80, 80, 40


def shown(value: Any) -> str:
    """A value as messages show it: its repr, short, whatever its size or depth."""
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class RecipeError(ValueError):
    """A recipe that cannot be run; `problems` lists every bad input found."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = str(self.problems[0])
        else:
            text = f"{len(self.problems)} problems:\n" + "\n".join(f"- {p}" for p in self.problems)
        super().__init__(text)

    @classmethod
    def single(cls, where: str, field: str, value: Any, allowed: str) -> RecipeError:
        """An error with one problem."""
        return cls([Problem(where, field, value, allowed)])


class _Bad(Exception):
    """Raised by a coercion when a value is not allowed; its text, if any, says which part."""


def _make(name: str, fields: Sequence[Field], extra: Sequence[tuple] = ()) -> type:
    spec = [(f.name, Any, dataclasses.field(default=f.default)) for f in fields]
    cls = dataclasses.make_dataclass(name, [*spec, *extra], frozen=True)
    cls.__module__ = __name__
    return cls


Pass = _make("Pass", PASS_FIELDS)
Pass.__doc__ = "One pass after the base generation; see PASS_FIELDS for every field."
Base = _make("Base", BASE_FIELDS)
Base.__doc__ = "The base generation, for the headless runner (the WebUI brings its own)."
Recipe = _make(
    "Recipe",
    RECIPE_FIELDS,
    extra=[
        ("base", Any, dataclasses.field(default=None)),
        ("passes", Any, dataclasses.field(default=())),
    ],
)
Recipe.__doc__ = "A whole Multipass job description: format version, step mode, base, passes."


# ---------------------------------------------------------------------------------------------
# coercion of one value


_NUM = re.compile(r"[,;\s]+")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _to_number(field: Field, v: Any, lenient: bool) -> float:
    if lenient and isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise _Bad from None
    if not _is_number(v):
        raise _Bad
    if isinstance(v, int):
        if abs(v) > 2**63:  # no field takes it; and float() of a huge int overflows
            raise _Bad
        return v
    if not math.isfinite(v):
        raise _Bad
    return v


def _item(field: Field, x: Any, lenient: bool) -> float:
    """One number of a list, with what is wrong with it named."""
    try:
        n = float(_to_number(field, x, lenient))
    except _Bad:
        raise _Bad(f"{shown(x)} is not a number") from None
    if not field.accepts_number(n):
        raise _Bad(f"{n:g} is out of range")
    return n


def coerce(field: Field, v: Any, *, lenient: bool = False) -> Any:
    """Return `v` as the field's type or raise _Bad.

    Strict (JSON, API) takes JSON types only; lenient (UI widgets, infotext) also takes text.
    """
    kind = field.kind
    if kind == "bool":
        if isinstance(v, bool):
            return v
        if lenient and isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return v.strip().lower() == "true"
        raise _Bad
    if kind in ("int", "float"):
        n = _to_number(field, v, lenient)
        if kind == "int":
            if n != int(n):
                raise _Bad
            n = int(n)
        else:
            n = float(n)
        if not field.accepts_number(n):
            raise _Bad
        return n
    if kind == "str":
        if v is None and lenient:
            return ""
        if not isinstance(v, str) or len(v) > MAX_TEXT:
            raise _Bad
        return v
    if kind == "choice":
        if isinstance(v, str):
            if v in field.choices:
                return v
            if lenient:
                for c in field.choices:
                    if c.lower() == v.strip().lower():
                        return c
        raise _Bad
    if kind in ("floats", "sides"):
        items = _split(v, lenient)
        if len(items) > MAX_LIST:
            raise _Bad(f"{len(items)} numbers")
        out = tuple(_item(field, x, lenient) for x in items)
        if kind == "sides" and len(out) not in (0, 4):
            raise _Bad(f"{len(out)} numbers")
        return out
    if kind == "names":
        if lenient and isinstance(v, str):
            v = _names_from_text(v)
        if not isinstance(v, (list, tuple)):
            raise _Bad
        if len(v) > MAX_NAMES:
            raise _Bad(f"{len(v)} names")
        for x in v:
            if not isinstance(x, str) or not x or len(x) > MAX_NAME:
                raise _Bad(f"{shown(x)} is not a name")
        return tuple(v)
    if kind == "boxes":
        if lenient and isinstance(v, str):
            v = [_split(part, True) for part in v.split(";") if part.strip()]
        if not isinstance(v, (list, tuple)):
            raise _Bad
        if len(v) > MAX_LIST:
            raise _Bad(f"{len(v)} boxes")
        return tuple(_box(field, box, i, lenient) for i, box in enumerate(v))
    raise AssertionError(kind)


def _box(field: Field, box: Any, index: int, lenient: bool) -> tuple[int, int, int, int]:
    if isinstance(box, (list, tuple)):
        text = " ".join(x if isinstance(x, str) else shown(x) for x in box[:5])
    else:
        text = shown(box)
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise _Bad(f"box {index + 1} ({text}) is not four numbers")
    try:
        nums = [_to_number(field, x, lenient) for x in box]
    except _Bad:
        raise _Bad(f"box {index + 1} ({text}) is not four numbers") from None
    if any(n != int(n) for n in nums):
        raise _Bad(f"box {index + 1} ({text}) is not in whole pixels")
    x1, y1, x2, y2 = (int(n) for n in nums)
    if not (0 <= x1 < x2 <= MAX_SIDE and 0 <= y1 < y2 <= MAX_SIDE):
        raise _Bad(f"box {index + 1} ({text}) is empty or out of range")
    return (x1, y1, x2, y2)


def _names_from_text(text: str) -> Any:
    """Names as infotext holds them (a JSON list); a bare name is a list of one."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise _Bad("not a JSON list of names") from None
    return [text]


def _split(v: Any, lenient: bool) -> Sequence[Any]:
    if lenient and isinstance(v, str):
        return [x for x in _NUM.split(v.strip().strip("[]")) if x]
    if lenient and v is None:
        return []
    if not isinstance(v, (list, tuple)):
        raise _Bad
    return v


def explain(field: Field, v: Any, *, lenient: bool = False) -> str | None:
    """Why `v` is not allowed for `field` ('' if no detail can be given), or None if it is."""
    try:
        coerce(field, v, lenient=lenient)
        return None
    except _Bad as e:
        if not str(e) and not lenient and isinstance(v, str) and field.kind in LIST_KINDS:
            # text where a list belongs (a UI field's raw text): say which item is wrong
            try:
                coerce(field, v, lenient=True)
                return "give a JSON list"
            except _Bad as inner:
                return str(inner)
        return str(e)


LIST_KINDS = ("floats", "sides", "boxes", "names")


# ---------------------------------------------------------------------------------------------
# records


def _suggest(key: str, names: Sequence[str]) -> str:
    low = key.lower()
    close = [n for n in names if low and (low in n or n.startswith(low[:5]))][:1]
    close = close or difflib.get_close_matches(low, names, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _record(
    cls: type,
    fields: Sequence[Field],
    data: Any,
    where: str,
    problems: list[Problem],
    *,
    lenient: bool = False,
    skip: Sequence[str] = (),
) -> Any:
    if not isinstance(data, Mapping):
        problems.append(Problem(where, "(all)", data, "an object of named fields"))
        return None
    by_name = {f.name: f for f in fields}
    names = [*by_name, *skip]
    for key in getattr(data, "duplicates", ()):
        problems.append(Problem(where, key, data[key], "each field given once, not twice"))
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key in skip:
            continue
        field = by_name.get(key)
        if field is None:
            allowed = "no such field" + _suggest(str(key), names)
            allowed += "; the fields are " + ", ".join(names)
            problems.append(Problem(where, str(key), raw, allowed))
            continue
        try:
            values[key] = coerce(field, raw, lenient=lenient)
        except _Bad:
            why = explain(field, raw, lenient=lenient)
            problems.append(
                Problem(where, key, raw, field.allowed() + (f" ({why})" if why else ""))
            )
    return cls(**values)


def _pass_checks(p: Any, where: str, problems: list[Problem]) -> None:
    """Rules that tie fields of one pass together.

    A missing mask image is checked when a job is planned: mask images do not travel in infotext,
    so a pasted recipe may lack one until the user supplies it.
    """
    if p.schedule == "list" and not p.strengths:
        problems.append(
            Problem(where, "strengths", p.strengths, "at least one strength for schedule 'list'")
        )
    if p.region == "crop" and p.mask_source == "boxes" and not p.boxes:
        problems.append(
            Problem(where, "boxes", p.boxes, "at least one box for mask source 'boxes'")
        )
    if p.region == "crop" and p.mask_source == "detect":
        if not p.detector:
            problems.append(Problem(where, "detector", p.detector, "a detector's name"))
        if p.detect_min_area > p.detect_max_area:
            allowed = f"at least the smallest detection's area ({p.detect_min_area:g})"
            problems.append(Problem(where, "detect_max_area", p.detect_max_area, allowed))
    if p.region != "crop":
        for name in ("prompt", "negative_prompt"):
            if SEP in getattr(p, name):
                allowed = f"one prompt: {SEP} separates the prompts of a crop pass's crops"
                problems.append(Problem(where, name, getattr(p, name), allowed))
    if (p.tile_width == 0) != (p.tile_height == 0):
        problems.append(
            Problem(
                where,
                "tile_height" if p.tile_height == 0 else "tile_width",
                (p.tile_width, p.tile_height),
                "both tile width and height set, or both 0 (automatic)",
            )
        )
    for name in ("tile_width", "tile_height"):
        if getattr(p, name) % 8:
            allowed = "a multiple of 8 from 64 to 4096, or 0 for automatic"
            problems.append(Problem(where, name, getattr(p, name), allowed))
    if p.region == "tiles" and p.tile_style == "sd-upscale" and p.seams_fix != "none":
        allowed = (
            "'none' with tile style 'sd-upscale' (it blends its overlaps; a seams fix is for "
            "tile style 'ultimate')"
        )
        problems.append(Problem(where, "seams_fix", p.seams_fix, allowed))
    if p.converge_below and p.repeats < 2:
        allowed = (
            "0 (off) with 1 repeat: convergence stops a strength's repeats early, so it needs "
            "repeats of 2 or more"
        )
        problems.append(Problem(where, "converge_below", p.converge_below, allowed))
    problems += [Problem(where, *problem) for problem in unit_problems(p)]
    if (p.working_width == 0) != (p.working_height == 0):
        problems.append(
            Problem(
                where,
                "working_height" if p.working_height == 0 else "working_width",
                (p.working_width, p.working_height),
                "both working width and height set, or both 0 (automatic)",
            )
        )


BASE_INDEX = -1  # the pass index of the base generation, where runs and checks need one


def where_pass(i: int) -> str:
    """How errors name pass `i` (0-based): 'pass 1' is the first pass after the base; the base
    itself (BASE_INDEX) is 'base'."""
    return "base" if i == BASE_INDEX else f"pass {i + 1}"


def parse_pass(data: Any, index: int = 0, *, lenient: bool = False) -> Any:
    """One pass from a dict of named fields; raises RecipeError naming every bad field."""
    problems: list[Problem] = []
    p = _record(Pass, PASS_FIELDS, data, where_pass(index), problems, lenient=lenient)
    if p is not None and not problems:
        _pass_checks(p, where_pass(index), problems)
    if problems:
        raise RecipeError(problems)
    return p


def parse_recipe(data: Any, *, lenient: bool = False, allow_base: bool = True) -> Any:
    """A recipe from a JSON-like dict (a recipe file, or an API payload's recipe dict); raises
    RecipeError naming every problem."""
    recipe, problems = check_recipe(data, lenient=lenient, allow_base=allow_base)
    if problems:
        raise RecipeError(problems)
    return recipe


def check_recipe(
    data: Any, *, lenient: bool = False, allow_base: bool = True
) -> tuple[Any, list[Problem]]:
    """A recipe and every problem with it. Where fields are bad the recipe has their defaults,
    so checks that need the rest of it (checkpoint names, files) can still run and every
    problem of a job is reported at once. The recipe is None when `data` is not an object."""
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        return None, [Problem("recipe", "(all)", data, "an object with a 'passes' list")]
    sections = ("base", "passes") if allow_base else ("passes",)
    head = _record(Recipe, RECIPE_FIELDS, data, "recipe", problems, lenient=lenient, skip=sections)
    base = None
    if allow_base and data.get("base") is not None:
        base = _record(Base, BASE_FIELDS, data["base"], "base", problems, lenient=lenient)
        if base is not None:
            for name in ("width", "height"):
                if getattr(base, name) % 8:
                    problems.append(
                        Problem(
                            "base", name, getattr(base, name), "a multiple of 8 from 64 to 4096"
                        )
                    )
    raw_passes = data.get("passes", [])
    passes = []
    if not isinstance(raw_passes, (list, tuple)) or len(raw_passes) > MAX_PASSES:
        problems.append(
            Problem("recipe", "passes", raw_passes, f"a list of at most {MAX_PASSES} passes")
        )
        raw_passes = []
    for i, raw in enumerate(raw_passes):
        before = len(problems)
        p = _record(Pass, PASS_FIELDS, raw, where_pass(i), problems, lenient=lenient)
        if p is not None and len(problems) == before:
            _pass_checks(p, where_pass(i), problems)
        passes.append(p if p is not None else Pass(enabled=False))
    head = head if head is not None else Recipe()
    recipe = dataclasses.replace(head, base=base, passes=tuple(passes))
    if not problems:
        problems += chain_problems(recipe)
    return recipe, problems


def chain_problems(recipe: Any) -> list[Problem]:
    """Where a job starts and stops in its chain: at passes that exist, in order, with an
    enabled pass to run between them."""
    problems: list[Problem] = []
    _chain_checks(recipe, problems)
    return problems


def _chain_checks(recipe: Any, problems: list[Problem]) -> None:
    n = len(recipe.passes)
    start, stop = recipe.from_pass, recipe.stop_after
    if start > max(n, 1):
        problems.append(
            Problem("recipe", "from_pass", start, f"a pass of this recipe: 1 to {max(n, 1)}")
        )
        return
    if stop and not start <= stop <= n:
        allowed = f"a pass from {start} (the start) to {n}, or 0 for the last pass"
        if n < start:
            allowed = "0 for the last pass: this recipe has no passes"
        problems.append(Problem("recipe", "stop_after", stop, allowed))
        return
    chosen = recipe.passes[start - 1 : stop or n]
    if any(p.enabled for p in recipe.passes) and not any(p.enabled for p in chosen):
        field, value = ("from_pass", start) if start > 1 else ("stop_after", stop)
        allowed = f"an enabled pass from pass {start} to pass {stop or n} (all are disabled)"
        problems.append(Problem("recipe", field, value, allowed))


MAX_RECIPE_BYTES = 64 * 1024 * 1024  # a recipe with inline base64 mask images stays far below
MAX_INT_DIGITS = 30


class Keys(dict):
    """A JSON object as read by `read_json`: `duplicates` lists the keys it held more than once
    (the last one wins in plain JSON readers; Multipass reports them instead)."""

    duplicates: tuple[str, ...] = ()


class HugeNumber(str):
    """A JSON integer too long to be any field's value, kept as text (never turned into an int,
    which for thousands of digits is slow and refused by Python)."""

    def __repr__(self) -> str:
        return f"<a number of {len(self.lstrip('-'))} digits>"


def _object(pairs: list[tuple[str, Any]]) -> Keys:
    out = Keys()
    seen: list[str] = []
    for key, value in pairs:
        if key in out and key not in seen:
            seen.append(key)
        out[key] = value
    out.duplicates = tuple(seen)
    return out


def _integer(text: str) -> Any:
    return HugeNumber(text) if len(text.lstrip("-")) > MAX_INT_DIGITS else int(text)


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def read_json(text: str, *, constants: bool = False) -> Any:
    """JSON as Multipass reads recipes: objects as `Keys` (duplicates noted), huge integers as
    `HugeNumber`, NaN and Infinity refused (or, with `constants`, read as the floats Python's
    JSON makes of them, for the field checks to name). Raises ValueError (with JSON's line and
    column where it has them) or RecursionError for absurdly deep nesting."""
    return json.loads(
        text,
        object_pairs_hook=_object,
        parse_int=_integer,
        parse_constant=float if constants else _constant,
    )


def decode_json_bytes(raw: bytes) -> str:
    """Text of a JSON file: UTF-8 with or without a BOM, or UTF-16/32 with a BOM (as Windows
    Notepad and PowerShell save); raises ValueError saying what else it is."""
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if raw.startswith(bom):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise ValueError(f"not valid {encoding.upper()} text ({e.reason})") from None
    if b"\x00" in raw[:64]:
        raise ValueError("UTF-16 or UTF-32 text without a byte order mark")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = raw[e.start : e.start + 1].hex()
        raise ValueError(f"not UTF-8 text (byte 0x{bad} at offset {e.start})") from None


ENCODINGS = "UTF-8 (with or without a BOM), or UTF-16 with a BOM"


def parse_json_text(text: str, where: str) -> Any:
    """`read_json`, with its errors as RecipeError naming `where`."""
    try:
        return read_json(text)
    except json.JSONDecodeError as e:
        raise RecipeError(
            [Problem(where, "(file)", e.msg, f"valid JSON (line {e.lineno}, column {e.colno})")]
        ) from None
    except RecursionError:
        raise RecipeError(
            [Problem(where, "(file)", "nesting", "JSON nested a few levels deep, as a recipe is")]
        ) from None
    except ValueError as e:
        raise RecipeError([Problem(where, "(file)", str(e), "valid JSON")]) from None


def read_text_file(path: str | Path, where: str) -> str:
    """The text of a recipe or job-list file, at most MAX_RECIPE_BYTES in one of ENCODINGS;
    RecipeError naming `where` and why for a file that cannot be read so."""
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError("it is a folder")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_RECIPE_BYTES + 1)
    except OSError as e:
        why = e.strerror or str(e)
        raise RecipeError(
            [Problem(where, "(file)", str(path), f"a readable file ({why})")]
        ) from None
    if len(raw) > MAX_RECIPE_BYTES:
        limit = f"a file of at most {MAX_RECIPE_BYTES // 2**20} MB"
        raise RecipeError([Problem(where, "(file)", "a larger file", limit)])
    try:
        return decode_json_bytes(raw)
    except ValueError as e:
        raise RecipeError([Problem(where, "(file)", str(e), ENCODINGS)]) from None


def read_recipe_file(path: str | Path) -> Any:
    """The JSON data of a recipe file (not yet validated); RecipeError for a file that cannot
    be read as JSON, naming the file and why."""
    where = f"recipe file {str(Path(path))!r}"
    return parse_json_text(read_text_file(path, where), where)


def load_recipe(path: str | Path) -> Any:
    """Read and validate a recipe JSON file; raises RecipeError naming every problem."""
    return parse_recipe(read_recipe_file(path))


# ---------------------------------------------------------------------------------------------
# back to plain data


def plain(v: Any) -> Any:
    """A value with its tuples as lists, as JSON holds it."""
    if isinstance(v, tuple):
        return [plain(x) for x in v]
    return v


def record_to_dict(obj: Any, fields: Sequence[Field], *, compact: bool = False) -> dict[str, Any]:
    """A record as a JSON-ready dict; compact drops values equal to their defaults."""
    out = {}
    for f in fields:
        v = getattr(obj, f.name)
        if compact and v == f.default:
            continue
        out[f.name] = plain(v)
    return out


def recipe_to_dict(recipe: Any, *, compact: bool = False) -> dict[str, Any]:
    """A recipe as the JSON-ready dict that parse_recipe reads back to the same recipe."""
    out = record_to_dict(recipe, RECIPE_FIELDS, compact=compact)
    if compact:
        out["version"] = recipe.version
    if recipe.base is not None:
        out["base"] = record_to_dict(recipe.base, BASE_FIELDS, compact=compact)
    out["passes"] = [record_to_dict(p, PASS_FIELDS, compact=compact) for p in recipe.passes]
    return out


# ---------------------------------------------------------------------------------------------
# the WebUI's positional args: each pass's fields in table order


def positional_names(n_passes: int) -> list[str]:
    """Names of the positional args, e.g. 'pass1.denoising_strength', in order."""
    return [f"pass{i + 1}.{f.name}" for i in range(n_passes) for f in PASS_FIELDS]


def recipe_from_positional(values: Sequence[Any], n_passes: int) -> Any:
    """A recipe from `n_passes` groups of positional values (UI widget values, lenient types)."""
    width = len(PASS_FIELDS)
    if len(values) != width * n_passes:
        raise RecipeError(
            [
                Problem(
                    "recipe",
                    "args",
                    f"{len(values)} values",
                    f"{width * n_passes} values ({width} per pass for {n_passes} passes)",
                )
            ]
        )
    passes = [
        dict(zip((f.name for f in PASS_FIELDS), values[i * width : (i + 1) * width], strict=True))
        for i in range(n_passes)
    ]
    return parse_recipe({"passes": passes}, lenient=True, allow_base=False)


def recipe_to_positional(recipe: Any) -> list[Any]:
    """The positional values that recipe_from_positional turns back into `recipe`'s passes."""
    return [plain(getattr(p, f.name)) for p in recipe.passes for f in PASS_FIELDS]
