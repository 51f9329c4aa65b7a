"""The README's recipe reference, generated from the field table (a test keeps them equal)."""

from __future__ import annotations

from .fields import BASE_FIELDS, PASS_FIELDS, RECIPE_FIELDS, Field
from .infotext import PREFIX


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(f: Field) -> str:
    if isinstance(f.default, tuple):
        return "`[]`"
    if isinstance(f.default, bool):
        return "`true`" if f.default else "`false`"
    if isinstance(f.default, str):
        return f'`"{f.default}"`'
    return f"`{f.default}`"


def _table(fields: tuple[Field, ...], key_prefix: str | None) -> list[str]:
    head = "| field | default | allowed | meaning |"
    rule = "|---|---|---|---|"
    if key_prefix is not None:
        head = "| field | default | allowed | infotext key | meaning |"
        rule = "|---|---|---|---|---|"
    rows = [head, rule]
    for f in fields:
        cells = [f"`{f.name}`", _default(f), _cell(f.allowed())]
        if key_prefix is not None:
            cells.append(f"`{key_prefix}{f.infotext}`" if f.infotext else "(not written)")
        cells.append(_cell(f.label + (f": {f.help}" if f.help else "")))
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def fields_markdown() -> str:
    """Markdown tables of every recipe, base and pass field."""
    parts = [
        "Recipe level:",
        "",
        *_table(RECIPE_FIELDS, f"{PREFIX} "),
        "",
        "`base` (headless runs only; in the WebUI the generation itself is the base):",
        "",
        *_table(BASE_FIELDS, None),
        "",
        "Each entry of `passes` (`N` is the pass number, from 1):",
        "",
        *_table(PASS_FIELDS, f"{PREFIX} N "),
    ]
    return "\n".join(parts)
