"""JSON schema of the recipe format, derived from the field table."""

from __future__ import annotations

from typing import Any

from . import __version__
from .fields import (
    BASE_FIELDS,
    MAX_LIST,
    MAX_NAME,
    MAX_NAMES,
    MAX_SIDE,
    MAX_TEXT,
    PASS_FIELDS,
    RECIPE_FIELDS,
    Field,
)
from .recipe import MAX_PASSES


def _number(f: Field, integer: bool) -> dict[str, Any]:
    ranged: dict[str, Any] = {"type": "integer" if integer else "number"}
    if f.minimum is not None:
        ranged["minimum"] = f.minimum
    if f.maximum is not None:
        ranged["maximum"] = f.maximum
    if f.special is None:
        return ranged
    return {"anyOf": [ranged, {"const": f.special}]}


def field_schema(f: Field) -> dict[str, Any]:
    """The JSON schema of one field, with its label, help and default."""
    if f.kind == "bool":
        s: dict[str, Any] = {"type": "boolean"}
    elif f.kind in ("int", "float"):
        s = _number(f, f.kind == "int")
    elif f.kind == "str":
        s = {"type": "string", "maxLength": MAX_TEXT}
    elif f.kind == "choice":
        s = {"type": "string", "enum": list(f.choices)}
    elif f.kind == "floats":
        s = {"type": "array", "items": _number(f, False), "maxItems": MAX_LIST}
    elif f.kind == "sides":
        item = {"type": "number", "minimum": f.minimum, "maximum": f.maximum}
        s = {
            "type": "array",
            "items": item,
            "anyOf": [{"maxItems": 0}, {"minItems": 4, "maxItems": 4}],
        }
    elif f.kind == "names":
        name = {"type": "string", "minLength": 1, "maxLength": MAX_NAME}
        s = {"type": "array", "items": name, "maxItems": MAX_NAMES}
    elif f.kind == "boxes":
        coord = {"type": "integer", "minimum": 0, "maximum": MAX_SIDE}
        box = {"type": "array", "items": coord, "minItems": 4, "maxItems": 4}
        s = {"type": "array", "items": box, "maxItems": MAX_LIST}
    else:
        raise AssertionError(f.kind)
    s["title"] = f.label
    if f.help:
        s["description"] = f.help
    s["default"] = list(f.default) if isinstance(f.default, tuple) else f.default
    return s


def _object(fields: tuple[Field, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.name: field_schema(f) for f in fields},
    }


def recipe_schema(detectors: list[str] | None = None) -> dict[str, Any]:
    """JSON schema (draft 2020-12) for recipe files and the API's recipe dict; with
    `detectors`, the host's detectors are the detector field's allowed values."""
    schema = _object(RECIPE_FIELDS)
    schema["properties"]["base"] = _object(BASE_FIELDS) | {
        "description": "The base generation, for the headless runner; the WebUI ignores it."
    }
    schema["properties"]["passes"] = {
        "type": "array",
        "maxItems": MAX_PASSES,
        "items": _object(PASS_FIELDS),
    }
    if detectors is not None:
        schema["properties"]["passes"]["items"]["properties"]["detector"]["enum"] = detectors
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"multipass-recipe-{__version__}",
        "title": "Multipass recipe",
        **schema,
    }
