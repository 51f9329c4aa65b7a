"""Recipes in the WebUI's infotext (the PNG "parameters" text) and back.

Compact: only values that differ from their defaults are written, under keys such as
"Multipass 2 denoising", with "Multipass version" and "Multipass passes" always present.
Values are quoted exactly as the WebUI quotes them, and pre-encoded where the WebUI's own
quoting would not survive its parser, so that write -> host quote -> host parse -> read is exact.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from . import __version__
from .fields import PASS_FIELDS, RECIPE_FIELDS, Field
from .recipe import MAX_PASSES, Problem, RecipeError, _Bad, coerce, explain, parse_recipe

PREFIX = "Multipass"
KEY_VERSION = f"{PREFIX} version"
KEY_PASSES = f"{PREFIX} passes"
KEY_RESULT = f"{PREFIX} result"
KEY_CHANGES_ALL = f"{PREFIX} changes"  # the API's info: each image's change per run
KEY_FOUND = "found"  # "Multipass N found: 3 faces, 2 inpainted"
KEY_CHANGES = "changes"  # "Multipass N changes: 12.31 4.02 0.87", each run's change

# the WebUI's pattern for one "key: value" item of the last infotext line (infotext_utils.py)
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")


def quote(text: Any) -> Any:
    """The WebUI's quoting of an infotext value: JSON-quoted if it holds ',', ':' or a newline."""
    if "," not in str(text) and "\n" not in str(text) and ":" not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    """The WebUI's unquoting: JSON-decode a value in double quotes, else leave it."""
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


def protect(text: str) -> str:
    """Pre-encode a value that the WebUI's quote would write but its parser would change.

    Values with ',', ':' or a newline are JSON-quoted by quote() and come back intact. Others
    come back changed if they begin with '"' (the parser JSON-decodes them) or have white space
    at either end (the parser strips it): those are written JSON-quoted here, which the parser
    decodes back to exactly `text`. (Values like 512x768 come back split in two keys whatever
    the quoting; `recipe_from_params` joins them.)
    """
    if "," in text or ":" in text or "\n" in text:
        return text
    if text[:1] == '"' or text != text.strip() or text == "":
        return json.dumps(text, ensure_ascii=False)
    return text


def _format(f: Field, v: Any) -> str:
    if f.kind == "bool":
        return "True" if v else "False"
    if f.kind in ("int", "float"):
        return repr(v)
    if f.kind in ("floats", "sides"):
        return " ".join(repr(x) for x in v)
    if f.kind == "boxes":
        return "; ".join(" ".join(str(c) for c in box) for box in v)
    if f.kind == "names":
        return json.dumps(list(v), ensure_ascii=False)
    return protect(v)


def pass_key(index: int, f: Field) -> str:
    """The infotext key of field `f` of pass `index` (0-based), e.g. 'Multipass 1 denoising'."""
    return f"{PREFIX} {index + 1} {f.infotext}"


def recipe_key(f: Field) -> str:
    """The infotext key of a recipe-level field, e.g. 'Multipass step mode'."""
    return f"{PREFIX} {f.infotext}"


INFOTEXT_PASS_FIELDS = tuple(f for f in PASS_FIELDS if f.infotext is not None)


def recipe_to_params(recipe: Any) -> dict[str, str]:
    """The recipe as infotext items (unquoted values, in a stable order), defaults left out."""
    out = {KEY_VERSION: __version__, KEY_PASSES: str(len(recipe.passes))}
    for f in RECIPE_FIELDS:
        v = getattr(recipe, f.name)
        if f.infotext is not None and v != f.default:
            out[recipe_key(f)] = _format(f, v)
    for i, p in enumerate(recipe.passes):
        for f in INFOTEXT_PASS_FIELDS:
            v = getattr(p, f.name)
            if v != f.default:
                out[pass_key(i, f)] = _format(f, v)
    return out


def result_params(
    recipe: Any,
    passes_ran: Sequence[int],
    result: str | None,
    found: Mapping[int, str] | None = None,
    changes: Mapping[int, Sequence[float]] | None = None,
) -> dict[str, str]:
    """Infotext items for one image: the passes of its chain (in order, numbered from 1) and
    a result such as 'complete' or 'stopped at pass 2, run 1 of 4: cancelled'.

    The chain is the passes that ran on it in this job, after those that made the image this
    job continued (`from_pass`: "Multipass from pass" says where this job began) and, when the
    job stopped after a chosen pass (`stop_after`), before the passes still to come, so that
    pasting it back sets up the whole chain and where to go on. Passes that did not run
    otherwise (disabled, or never reached) are left out. A pass of several runs writes each
    run's change (`changes`, 0-255).
    """
    from .plan import chain_span

    start, stop = chain_span(recipe)
    enabled = [i for i, p in enumerate(recipe.passes) if p.enabled]
    before = [i for i in enabled if i < start]
    after = [i for i in enabled if i >= stop] if recipe.stop_after and passes_ran else []
    written = [*before, *passes_ran, *after]
    chain = dataclasses.replace(
        recipe,
        passes=tuple(recipe.passes[i] for i in written),
        from_pass=len(before) + 1,
        stop_after=len(before) + len(passes_ran) if after else 0,
    )
    params = recipe_to_params(chain)
    for number, index in enumerate(written, start=1):
        if found and index in found:  # what a detect pass found in this image
            params[f"{PREFIX} {number} {KEY_FOUND}"] = protect(found[index])
        ran = (changes or {}).get(index, ())
        if len(ran) > 1 or (ran and recipe.passes[index].converge_below):
            params[f"{PREFIX} {number} {KEY_CHANGES}"] = changes_text(ran)
    if result is not None:
        params[KEY_RESULT] = protect(result)
    return params


def changes_text(changes: Sequence[float]) -> str:
    """A pass's changes per run as infotext and plans write them: '12.31 4.02 0.87'."""
    return " ".join(f"{c:.2f}" for c in changes)


def params_to_text(params: Mapping[str, Any]) -> str:
    """Infotext items joined as the WebUI writes them ('k: v, k: v', values quoted)."""
    return ", ".join(f"{k}: {quote(v)}" for k, v in params.items() if v is not None)


def parse_params_line(line: str) -> dict[str, str]:
    """The WebUI's parse of an infotext params line, WxH values split into '-1' and '-2' keys."""
    res: dict[str, str] = {}
    for k, v in RE_PARAM.findall(line):
        if v[:1] == '"' and v[-1:] == '"':
            v = unquote(v)
        m = RE_IMAGESIZE.match(v)
        if m is not None:
            res[f"{k}-1"], res[f"{k}-2"] = m.group(1), m.group(2)
        else:
            res[k] = v
    return res


def has_recipe(params: Mapping[str, Any]) -> bool:
    """Whether parsed infotext holds a Multipass recipe."""
    return KEY_PASSES in params


def recipe_from_params(params: Mapping[str, Any]) -> Any:
    """The recipe stored in parsed infotext items (as the WebUI's parser returns them).

    Keys of other extensions are ignored; a Multipass key with a bad value raises RecipeError
    naming the infotext key.
    """
    raw_count = params.get(KEY_PASSES)
    try:
        count = int(str(raw_count).strip())
        if not 0 <= count <= MAX_PASSES:
            raise ValueError
    except ValueError:
        raise RecipeError(
            [Problem("infotext", KEY_PASSES, raw_count, f"a whole number from 0 to {MAX_PASSES}")]
        ) from None
    problems: list[Problem] = []

    def read(f: Field, key: str, into: dict[str, Any]) -> None:
        if key in params:
            raw = params[key]
        elif f"{key}-1" in params and f"{key}-2" in params:
            raw = f"{params[f'{key}-1']}x{params[f'{key}-2']}"  # the host split a WxH value
        else:
            return
        try:
            into[f.name] = coerce(f, raw, lenient=True)
        except _Bad:
            why = explain(f, raw, lenient=True)
            problems.append(
                Problem("infotext", key, raw, f.allowed() + (f" ({why})" if why else ""))
            )

    head: dict[str, Any] = {}
    for f in RECIPE_FIELDS:
        if f.infotext is not None:
            read(f, recipe_key(f), head)
    passes: list[dict[str, Any]] = []
    for i in range(count):
        passes.append({})
        for f in INFOTEXT_PASS_FIELDS:
            read(f, pass_key(i, f), passes[-1])
    if problems:
        raise RecipeError(problems)
    return parse_recipe({**head, "passes": passes}, lenient=True, allow_base=False)


def recipe_from_infotext(text: str) -> Any | None:
    """The recipe in a whole infotext (prompt lines and params line), or None if it has none."""
    lines = text.strip().split("\n")
    params = parse_params_line(lines[-1]) if lines else {}
    return recipe_from_params(params) if has_recipe(params) else None
