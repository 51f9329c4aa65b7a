"""The HTTP side: schema and version endpoints, and recipe validation before a job starts.

A bad recipe in `alwayson_scripts.multipass` gets a 422 naming every bad field, before the
WebUI creates the job: nothing is generated. The check is a small ASGI middleware that reads
the request body once and replays it, which works on every Starlette the WebUIs pin.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from .. import __version__
from ..recipe import HugeNumber, Problem, RecipeError, decode_json_bytes, read_json, shown
from ..schema import recipe_schema

KEY = "multipass"
JOB_PATHS = ("/sdapi/v1/txt2img", "/sdapi/v1/img2img")

# validate(enabled, recipe, request body) raises RecipeError for a recipe that cannot run
Validator = Callable[[Any, Any, dict[str, Any]], None]


def problems_of(body: dict[str, Any], validate: Validator) -> list[dict[str, Any]]:
    """Problems with the Multipass args of a txt2img/img2img request body ([] if none)."""
    scripts = body.get("alwayson_scripts") or {}
    if not isinstance(scripts, dict):
        return []
    entry = next((v for k, v in scripts.items() if str(k).lower() == KEY), None)
    if not isinstance(entry, dict):
        return []
    args = entry.get("args") or []
    if not isinstance(args, list):
        problem = {"where": "alwayson_scripts.multipass", "field": "args", "value": args}
        allowed = "a list [enabled, recipe]"
        message = f"alwayson_scripts.multipass, field 'args': got {args!r}; allowed: {allowed}"
        return [problem | {"allowed": allowed, "message": message}]
    enabled = args[0] if args else False
    recipe = args[1] if len(args) > 1 else {}
    try:
        validate(enabled, recipe, body)
        return []
    except RecipeError as e:
        return [problem_json(p) for p in e.problems]


def problem_json(p: Problem) -> dict[str, Any]:
    """A problem as the 422 body lists it; its value as given where small, else shown short."""
    return {
        "where": p.where,
        "field": p.field,
        "value": _small(p.value),
        "allowed": p.allowed,
        "message": str(p),
    }


def _small(value: Any, depth: int = 0) -> Any:
    if isinstance(value, HugeNumber) or depth > 3:
        return shown(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= 200 else shown(value)
    if isinstance(value, (list, tuple)) and len(value) <= 16:
        return [_small(v, depth + 1) for v in value]
    if isinstance(value, dict) and len(value) <= 16:
        return {str(k): _small(v, depth + 1) for k, v in value.items()}
    return shown(value)


class RecipeCheck:
    """ASGI middleware: 422 for a job request whose Multipass recipe does not validate."""

    def __init__(self, app: Any, validate: Validator) -> None:
        self.app = app
        self.validate = validate

    async def __call__(
        self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Any
    ) -> None:
        if (
            scope.get("type") != "http"
            or scope.get("method") != "POST"
            or scope.get("path") not in JOB_PATHS
        ):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            # read as recipe files are: duplicate keys and huge numbers in the recipe are named
            # NaN: the WebUI's own reader takes it, so the field check must name it
            data = read_json(decode_json_bytes(body or b"{}"), constants=True)
        except (ValueError, RecursionError):
            data = None  # not ours to judge: the WebUI answers malformed requests itself
        problems = problems_of(data, self.validate) if isinstance(data, dict) else []
        if problems:
            await _send_json(
                send, 422, {"error": "Multipass recipe is not valid", "detail": problems}
            )
            return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_json(send: Any, status: int, payload: Any) -> None:
    data = json.dumps(payload, default=str).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def mount(app: Any, validate: Validator, detectors: Callable[[], list[str]] = lambda: []) -> None:
    """Add the endpoints and the recipe check to the WebUI's FastAPI app."""

    def schema() -> dict[str, Any]:
        return recipe_schema(detectors())

    def version() -> dict[str, Any]:
        return {"version": __version__}

    app.add_api_route("/multipass/v1/schema", schema, methods=["GET"])
    app.add_api_route("/multipass/v1/version", version, methods=["GET"])
    # the WebUI itself rebuilds its middleware stack after launch (initialize_util.setup_middleware)
    app.middleware_stack = None
    app.add_middleware(RecipeCheck, validate=validate)
