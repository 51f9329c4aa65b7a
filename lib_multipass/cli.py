"""The `multipass` command: demo, run, models, plan, schema, fields.

Every door validates the same way: a flag gets the bounds and the message form of the same
value in a recipe (`field 'x': got V; allowed: ...`), and every problem of a job (flags, the
recipe file, names the backend does not know, unusable checkpoint files, the output folder)
is reported at once, before anything runs.

Exit codes: 0 done; 2 bad input (nothing ran); 3 cancelled with Ctrl-C or SIGTERM (what was
finished is saved); 1 an error during the job (what was finished is saved).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib.util
import json
import re
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .checkpoints import family_or_default, find_checkpoint
from .fields import BASE_FIELDS, OUTPUT_FIELDS, RECIPE_FIELDS, Field, field_map
from .geometry import Crop, Size
from .recipe import (
    Base,
    Problem,
    RecipeError,
    _Bad,
    check_recipe,
    coerce,
    explain,
    read_recipe_file,
    recipe_to_dict,
)

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 3
TINY_NOTE = (
    "note: the built-in tiny-toon, tiny-photo (SD1) and tiny-xl (SDXL) models are random, "
    "untrained networks: they make noise-like pictures, so that every code path runs on a "
    "machine with no models"
)

CLI = "command line"
_BASE = field_map(BASE_FIELDS)
_RECIPE = field_map(RECIPE_FIELDS)
_OUTPUT = field_map(OUTPUT_FIELDS)
# flags that carry a recipe value: the same field, the same bounds, the same message
FLAG_FIELDS: dict[str, Field] = {
    "--images": _BASE["images"],
    "--seed": _BASE["seed"],
    "--rng": _BASE["rng"],
    "--image-rules": _BASE["image_rules"],
    "--steps": _BASE["steps"],
    "--step-mode": _RECIPE["step_mode"],
    "--from-pass": _RECIPE["from_pass"],
    "--stop-after": _RECIPE["stop_after"],
    "--animation": _OUTPUT["animation"],
    "--frame-ms": _OUTPUT["frame_ms"],
    "--loop": _OUTPUT["loop"],
    "--cache-mb": Field(
        "cache_mb",
        "int",
        0,
        "RAM cache",
        None,
        minimum=0,
        maximum=1024 * 1024,
        help="MB of RAM kept for recently used checkpoints; 0 keeps none.",
    ),
    "--batch-size": Field("batch_size", "int", 1, "Batch size", None, minimum=1, maximum=64),
    "--workers": Field("workers", "int", 1, "Workers", None, minimum=1, maximum=256),
    "--images-per-request": Field(
        "images_per_request", "int", 4, "Images per request", None, minimum=1, maximum=100
    ),
}
SIZE_ALLOWED = "a size WxH, each side a multiple of 8 from 64 to 4096 (e.g. 512x768)"
PATH_FLAGS = {
    "--size": SIZE_ALLOWED,
    "--out": "an output folder",
    "--models": "a folder of checkpoints",
    "--webui": "a WebUI folder (its models/Stable-diffusion is used)",
    "--loras": "a folder of LoRA files",
    "--embeddings": "a folder of textual-inversion embeddings",
    "--init": "an image file or a folder of them",
    "--mask": "a mask image file",
    "--webui-url": "a WebUI's address, http:// or https:// with a host (e.g. http://192.168.1.20:7860)",
    "--ray-address": "a Ray cluster's address (e.g. ray://head:10001 or auto)",
}


# flags without which no backend can be made: their problems are said before anything loads
BACKEND_FLAGS = (
    "--models",
    "--webui",
    "--loras",
    "--embeddings",
    "--device",
    "--dtype",
    "--cache-mb",
)


class CommandLineError(RecipeError):
    """A command line that cannot run; its problems name the flag and what is allowed."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as problems that say what is allowed (no usage dump)."""

    def error(self, message: str) -> Any:
        raise CommandLineError([_usage_problem(self, message)])


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [s for a in parser._actions for s in a.option_strings if s.startswith("--")]


def _usage_problem(parser: argparse.ArgumentParser, message: str) -> Problem:
    command = parser.prog
    if m := re.match(
        r"argument (\S+?)(?:/\S+)?: invalid choice: '(.*)' \(choose from (.*)\)", message
    ):
        return Problem(CLI, m[1], m[2], f"one of {m[3]}")
    if m := re.match(r"argument (\S+?)(?:/\S+)?: expected one argument", message):
        allowed = FLAG_FIELDS[m[1]].allowed() if m[1] in FLAG_FIELDS else PATH_FLAGS.get(m[1])
        return Problem(CLI, m[1], "nothing", allowed or "a value")
    if m := re.match(r"the following arguments are required: (.*)", message):
        names = m[1]
        allowed = "a recipe JSON file" if "recipe" in names else f"{names} given"
        if names == "list":
            allowed = "a job list file (JSON Lines)"
        if names == "command":
            allowed = "a command: one of demo, run, jobs, models, plan, schema, fields"
        shown_name = names.upper() if names in ("recipe", "list") else names
        return Problem(CLI, shown_name, "nothing", allowed)
    if m := re.match(r"argument (\S+?)(?:/\S+)?: (.*)", message):
        return Problem(CLI, m[1], m[2], "see `multipass --help`")
    return Problem(CLI, "(usage)", message, f"the options of `{command}`: see `{command} --help`")


def _unknown_problems(parser: argparse.ArgumentParser, unknown: list[str]) -> list[Problem]:
    options = _options(parser)
    out = []
    for token in unknown:
        name = token.split("=", 1)[0]
        if name.startswith("-"):
            close = difflib.get_close_matches(name, options, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            allowed = f"no such option{hint}; the options of `{parser.prog}` are " + ", ".join(
                options
            )
            out.append(Problem(CLI, name, token, allowed))
        else:
            out.append(Problem(CLI, "(argument)", token, f"the arguments of `{parser.prog}` only"))
    return out


def build_parser() -> dict[str, argparse.ArgumentParser]:
    """The argument parser of the `multipass` command, and one per subcommand ('' is the top).

    Values are taken as text and checked against the field table afterwards (see flag_values),
    so a flag and the same value in a recipe get the same bounds and the same message.
    """
    parser = Parser(
        prog="multipass",
        description="Multi-pass image workflows: checkpoint switching, denoise chains, "
        "detailed-inpaint crops.",
    )
    parser.add_argument("--version", action="version", version=f"multipass {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    plan = sub.add_parser("plan", help="print the runs a recipe expands into")
    plan.add_argument("recipe", type=Path, help="a recipe JSON file")
    plan.add_argument("--size", help="base image size, e.g. 512x768 (default: recipe)")
    plan.add_argument("--steps", help="base sampling steps (default: recipe)")
    plan.add_argument("--step-mode", help="img2img step arithmetic: proportional or fixed")
    plan.add_argument(
        "--models", type=Path, help="checkpoint folder: names and families are read from it"
    )
    plan.add_argument(
        "--webui",
        type=Path,
        help="a WebUI folder: its models/Stable-diffusion, models/Lora and embeddings/",
    )
    plan.add_argument("--loras", type=Path, help="a folder of LoRA files: names are checked")
    plan.add_argument("--embeddings", type=Path, help="a folder of textual-inversion embeddings")
    plan.add_argument("--allow-ckpt", action="store_true", help="allow pickle-based .ckpt files")
    plan.add_argument(
        "--batch-size", help="pieces sampled together, 1 to 64 (default 1): for tile calls"
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    _chain_args(plan)

    demo = sub.add_parser("demo", help="run the demo job on the built-in tiny models")
    demo.add_argument("--out", type=Path, default=Path("multipass-demo"), help="output folder")
    _model_args(demo)
    _device_args(demo)

    run = sub.add_parser("run", help="run a recipe headless on diffusers")
    run.add_argument("recipe", type=Path, help="a recipe JSON file")
    run.add_argument("--out", type=Path, help="output folder (default: outputs/RECIPE-NAME)")
    run.add_argument("--images", help="number of images, 1 to 64 (default: recipe)")
    run.add_argument("--seed", help="first image's seed, -1 for random (default: recipe)")
    run.add_argument(
        "--rng", help="the WebUI's random number source: CPU, GPU or NV (default: recipe, CPU)"
    )
    run.add_argument(
        "--image-rules",
        help="whose image a seed makes where the WebUIs differ: A1111 or Forge (Forge 2, "
        "reForge, Neo) (default: recipe, A1111)",
    )
    run.add_argument("--size", help="base image size, e.g. 512x768 (default: recipe)")
    run.add_argument("--batch-size", help="images (or tiles) sampled together, 1 to 64 (default 1)")
    run.add_argument("--stages", action="store_true", help="also write every stage's image")
    run.add_argument(
        "--init",
        type=Path,
        help="start from this image, or a folder's images, instead of generating the base",
    )
    run.add_argument(
        "--mask",
        type=Path,
        help="the job's inpaint mask (white is inpainted), for passes whose mask source is 'job'",
    )
    _chain_args(run)
    run.add_argument(
        "--animation", help="also write each image's chain as an animation: webp, gif or none"
    )
    run.add_argument("--frame-ms", help="the animation's frame duration, 20 to 10000 ms (500)")
    run.add_argument("--loop", help="times the animation repeats, 0 (forever) to 1000")
    _model_args(run)
    _device_args(run)

    jobs = sub.add_parser("jobs", help="run a job list: here, on Ray workers or on WebUI hosts")
    jobs.add_argument("list", type=Path, help="a job list file (JSON Lines)")
    jobs.add_argument("--out", type=Path, help="output folder (default: outputs/LIST-NAME)")
    jobs.add_argument(
        "--engine",
        choices=["embedded", "ray"],
        help="embedded (default: this process) or ray (actors on a local Ray or --ray-address)",
    )
    jobs.add_argument("--workers", help="Ray actors (default: one per GPU, else per CPU)")
    jobs.add_argument("--ray-address", help="an existing Ray cluster (default: start one here)")
    jobs.add_argument(
        "--webui-url",
        action="append",
        help="a running WebUI with Multipass as a worker (repeatable)",
    )
    jobs.add_argument(
        "--images-per-request",
        help="images a WebUI host makes per request, each request's written when it returns "
        "(default 4; fewer lose less when a host stops, more switch checkpoints less often)",
    )
    jobs.add_argument(
        "--fresh", action="store_true", help="run every job again, even those already done"
    )
    jobs.add_argument("--stages", action="store_true", help="also write every stage's image")
    jobs.add_argument(
        "--animation", help="also write each image's chain as an animation: webp, gif or none"
    )
    jobs.add_argument("--frame-ms", help="the animation's frame duration, 20 to 10000 ms (500)")
    jobs.add_argument("--loop", help="times the animation repeats, 0 (forever) to 1000")
    _model_args(jobs)
    _device_args(jobs)

    models = sub.add_parser("models", help="list the checkpoints the runner can load")
    _model_args(models)

    detectors = sub.add_parser("detectors", help="list the detectors detect passes can use")
    detectors.add_argument("--detectors", type=Path, help="a folder of YOLO models")
    detectors.add_argument(
        "--webui", type=Path, help="a WebUI folder: also its models/adetailer YOLO models"
    )
    detectors.add_argument(
        "--allow-ckpt", action="store_true", help="allow pickle-based .pt models (they run code)"
    )

    schema = sub.add_parser("schema", help="print the recipe JSON schema")
    fields = sub.add_parser("fields", help="print every recipe field as a Markdown table")
    return {
        "": parser,
        "plan": plan,
        "demo": demo,
        "run": run,
        "jobs": jobs,
        "models": models,
        "detectors": detectors,
        "schema": schema,
        "fields": fields,
    }


def _chain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from-pass",
        help="start at this pass (1 to 16): --init images are the pass before's output",
    )
    p.add_argument("--stop-after", help="stop after this pass (0: the last), to continue later")


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", help="auto (fp16 on a GPU, fp32 on the CPU), fp32, fp16 or bf16")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", type=Path, help="a folder of .safetensors checkpoints")
    p.add_argument("--detectors", type=Path, help="a folder of YOLO models for detect passes")
    p.add_argument(
        "--webui",
        type=Path,
        help="a WebUI folder: use its models/Stable-diffusion checkpoints, models/Lora LoRAs "
        "and embeddings/",
    )
    p.add_argument("--loras", type=Path, help="a folder of LoRA files (<lora:name:weight>)")
    p.add_argument(
        "--embeddings", type=Path, help="a folder of textual-inversion embeddings (by file name)"
    )
    p.add_argument(
        "--allow-ckpt",
        action="store_true",
        help="allow pickle-based .ckpt (and LoRA/embedding .pt) files (they run code)",
    )
    p.add_argument(
        "--cache-mb",
        help="MB of RAM kept for recently used checkpoints (default: 60%% of the memory "
        "available at start; 0: none)",
    )


# -- flags as fields ----------------------------------------------------------------------------


def _flag(flag: str, text: str | None, problems: list[Problem]) -> Any:
    """A flag's value checked as its field is in a recipe (None when not given or bad)."""
    if text is None:
        return None
    field = FLAG_FIELDS[flag]
    try:
        return coerce(field, text, lenient=True)
    except _Bad:
        why = explain(field, text, lenient=True)
        problems.append(
            Problem(CLI, flag, _typed(text), field.allowed() + (f" ({why})" if why else ""))
        )
        return None


def _typed(text: str) -> Any:
    """A flag's text as messages show it: as a number where it is one (as a recipe's would be)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _size(text: str | None, problems: list[Problem]) -> Size | None:
    if text is None:
        return None
    w, h = _BASE["width"], _BASE["height"]
    m = re.fullmatch(r"\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*", text)
    if m is None:
        problems.append(Problem(CLI, "--size", text, SIZE_ALLOWED))
        return None
    size = int(m[1]), int(m[2])
    if not (w.accepts_number(size[0]) and h.accepts_number(size[1])) or size[0] % 8 or size[1] % 8:
        problems.append(Problem(CLI, "--size", text, SIZE_ALLOWED))
        return None
    return size


def _folder(flag: str, path: Path | None, problems: list[Problem]) -> None:
    if path is not None and not path.is_dir():
        what = "a file" if path.exists() else "not there"
        problems.append(Problem(CLI, flag, str(path), f"an existing folder (this one is {what})"))


def check_out_dir(out: Path) -> list[Problem]:
    """Problems with the output folder, found before any sampling, without creating it: the
    folder, or the nearest folder above it that exists, must take a new entry."""
    allowed = "a folder Multipass can create and write to"
    here = out
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        what = "it is a file" if here == out else f"{here} is a file"
        return [Problem(CLI, "--out", str(out), f"{allowed} ({what})")]
    try:
        if here == out:
            with tempfile.NamedTemporaryFile(dir=out, prefix=".multipass-write-test-"):
                pass
        else:
            Path(tempfile.mkdtemp(dir=here, prefix=".multipass-write-test-")).rmdir()
    except OSError as e:
        return [Problem(CLI, "--out", str(out), f"{allowed} ({e.strerror or e} in {here})")]
    return []


# -- commands ------------------------------------------------------------------------------------


def _backend(args: argparse.Namespace, cache_mb: int | None) -> Any:
    from tqdm import tqdm

    from .backends.diffusers_backend import DiffusersBackend

    return DiffusersBackend(
        **backend_settings(args, cache_mb), report=lambda line: tqdm.write(line, file=sys.stderr)
    )


def backend_settings(args: argparse.Namespace, cache_mb: int | None) -> dict[str, Any]:
    """The diffusers backend's settings from the command line, as plain data: a job list's
    workers (in this process or on Ray) make their own backends from them."""
    from .tiny import ensure_tiny_models

    folders = []
    if getattr(args, "models", None):
        folders.append(args.models)
    if getattr(args, "webui", None):
        folders.append(args.webui / "models" / "Stable-diffusion")
    folders.append(ensure_tiny_models())
    loras, embeddings = network_folders(args)
    return {
        "folders": folders,
        "loras": loras,
        "embeddings": embeddings,
        "cache_bytes": None if cache_mb is None else cache_mb * 1024 * 1024,
        "allow_ckpt": args.allow_ckpt,
        "device": getattr(args, "device", None) or "auto",
        "dtype": getattr(args, "dtype", None) or "auto",
    }


def network_folders(args: argparse.Namespace) -> tuple[list[Path], list[Path]]:
    """The LoRA and embedding folders of a run: --loras and --embeddings first, then a
    WebUI's models/Lora, models/LyCORIS and embeddings (where the WebUI keeps them)."""
    loras = [args.loras] if getattr(args, "loras", None) else []
    embeddings = [args.embeddings] if getattr(args, "embeddings", None) else []
    webui = getattr(args, "webui", None)
    if webui is not None:
        loras += [webui / "models" / "Lora", webui / "models" / "LyCORIS"]
        embeddings.append(webui / "embeddings")
    return loras, embeddings


def _device_flags(args: argparse.Namespace, problems: list[Problem]) -> None:
    """--device and --dtype, checked against this machine's torch before anything loads."""
    from .backends.diffusers_backend import resolve_device, resolve_dtype

    device, problem = resolve_device(args.device or "auto")
    if problem:
        problems.append(Problem(CLI, "--device", args.device, problem))
        return
    _dtype, problem = resolve_dtype(args.dtype or "auto", str(device))
    if problem:
        problems.append(Problem(CLI, "--dtype", args.dtype, f"{problem} (device {device})"))


def registry(args: argparse.Namespace) -> Any:
    """The detectors of this run: OpenCV's, mediapipe's, YOLO models in ~/.cache/multipass/
    detectors, --detectors and a WebUI's models/adetailer."""
    from .detectors import Registry

    return Registry(**registry_settings(args))


def registry_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The detector registry's settings, as plain data (for a job list's workers)."""
    from .tiny import default_home

    folders = [default_home() / "detectors"]
    if getattr(args, "detectors", None):
        folders.append(args.detectors)
    if getattr(args, "webui", None):
        folders.append(args.webui / "models" / "adetailer")
    return {"folders": folders, "allow_pickles": bool(getattr(args, "allow_ckpt", False))}


def cmd_detectors(args: argparse.Namespace) -> int:
    problems: list[Problem] = []
    _folder("--detectors", args.detectors, problems)
    _folder("--webui", args.webui, problems)
    if problems:
        raise RecipeError(problems)
    entries = registry(args).entries()
    for name, e in entries.items():
        state = "ready" if e.problem is None else f"unavailable: {name} {e.problem}"
        print(f"{name:24s} {e.what:8s} {state}  ({e.source})")
    if not any(e.problem is None for e in entries.values()):
        print(
            "No detector can run here. Install OpenCV 4.x for its face, profile and body "
            'cascades (pip install "opencv-python-headless>=4.5,<5"), or ultralytics or '
            "mediapipe for their models."
        )
    return EXIT_OK


def _model_flags(args: argparse.Namespace, problems: list[Problem]) -> int | None:
    _folder("--models", getattr(args, "models", None), problems)
    _folder("--detectors", getattr(args, "detectors", None), problems)
    _folder("--loras", getattr(args, "loras", None), problems)
    _folder("--embeddings", getattr(args, "embeddings", None), problems)
    webui = getattr(args, "webui", None)
    if webui is not None:
        _folder("--webui", webui, problems)
        if webui.is_dir():
            _folder("--webui", webui / "models" / "Stable-diffusion", problems)
    return _flag("--cache-mb", getattr(args, "cache_mb", None), problems)


def _family_reader(models: Path | None, webui: Path | None = None):
    from .tiny import TINY_FAMILIES

    folders = [f for f in (models, webui / "models" / "Stable-diffusion" if webui else None) if f]

    def family_of(name: str) -> str:
        if name in TINY_FAMILIES:
            return TINY_FAMILIES[name]
        for folder in folders if name else ():
            try:
                return family_or_default(find_checkpoint(folder, name).path)
            except LookupError:
                continue
        return "sd1"

    return family_of


def _crop_finder(recipe: Any, job: Any):
    """The crops a plan can show before the job runs: from boxes and mask images."""
    from .preflight import load_masks
    from .regions.crops import crops_for

    masks = load_masks(recipe, job)
    drawn = job.ctx.boxes_drawn_on

    def find(index: int, p: Any, size: Size, family: str) -> tuple[Crop, ...] | None:
        if p.mask_source in ("job", "detect"):
            return None  # the job's own mask arrives with the job; detections at run time
        found = crops_for(p, masks.get(index), job.job_mask, drawn, size, family)
        return tuple(m.crop for m in found)

    return find


def _recipe(path: Path, problems: list[Problem]) -> Any | None:
    """The recipe file's recipe (partly, where fields are bad), its problems added."""
    try:
        data = read_recipe_file(path)
    except RecipeError as e:
        problems += e.problems
        return None
    recipe, found = check_recipe(data)
    problems += found
    return recipe


def _chain(recipe: Any, args: argparse.Namespace, problems: list[Problem]) -> Any:
    """The recipe with --from-pass and --stop-after applied; their problems named under the
    flags, in the recipe's words."""
    from .recipe import chain_problems

    start = _flag("--from-pass", args.from_pass, problems)
    stop = _flag("--stop-after", args.stop_after, problems)
    if recipe is None or (start is None and stop is None):
        return recipe
    changes = {"from_pass": start, "stop_after": stop}
    chained = dataclasses.replace(recipe, **{k: v for k, v in changes.items() if v is not None})
    flags = {"from_pass": "--from-pass", "stop_after": "--stop-after"}
    for q in chain_problems(chained):
        given = getattr(args, q.field)
        where, field = (CLI, flags[q.field]) if given is not None else (q.where, q.field)
        problems.append(dataclasses.replace(q, where=where, field=field))
    return chained


def cmd_plan(args: argparse.Namespace) -> int:
    from .engine import Job
    from .plan import JobContext, chain_note, format_plan, plan_as_dicts, plan_recipe

    problems: list[Problem] = []
    size = _size(args.size, problems)
    steps = _flag("--steps", args.steps, problems)
    step_mode = _flag("--step-mode", args.step_mode, problems)
    batch_size = _flag("--batch-size", args.batch_size, problems) or 1
    _folder("--models", args.models, problems)
    _folder("--webui", args.webui, problems)
    _folder("--loras", args.loras, problems)
    _folder("--embeddings", args.embeddings, problems)
    recipe = _chain(_recipe(args.recipe, problems), args, problems)
    if problems:
        raise RecipeError(problems)
    base = recipe.base or Base()
    ctx = JobContext.from_base(base, step_mode or recipe.step_mode)
    if size and size != (ctx.width, ctx.height):
        # the recipe's boxes are drawn on its own base size: they scale with the image
        ctx = dataclasses.replace(
            ctx, width=size[0], height=size[1], box_space=(ctx.width, ctx.height)
        )
    if steps:
        ctx = dataclasses.replace(ctx, steps=steps)
    job = Job(ctx, recipe_dir=args.recipe.parent, detectors=registry(args))
    note = _check_names(recipe, job, args)
    runs = plan_recipe(
        recipe,
        ctx,
        family_of=_family_reader(args.models, args.webui),
        find_crops=_crop_finder(recipe, job),
    )
    if args.json:
        doc = {"recipe": recipe_to_dict(recipe, compact=True), "runs": plan_as_dicts(runs)}
        print(json.dumps(doc, indent=2))
    else:
        print(f"{args.recipe}:")
        print(format_plan(runs, ctx, batch_size))
        if chain_note(recipe):
            print(chain_note(recipe))
        if note:
            print(note)
    return EXIT_OK


def _check_names(recipe: Any, job: Any, args: argparse.Namespace) -> str:
    """The names a recipe gives (checkpoints in the given folders and the built-in ones,
    samplers, schedule types, upscalers, detectors, files) checked as `run` checks them, where
    the runner is installed; else a note saying what could not be checked."""
    from .preflight import prepare

    if importlib.util.find_spec("diffusers") is None:
        return (
            "note: checkpoint, sampler, schedule-type and upscaler names were not checked: "
            'the runner is not installed (pip install torch==2.13.0, then pip install -e ".[run]")'
        )
    backend = _backend(args, 0)
    if not job.ctx.checkpoint:  # as `run` does: the first listed checkpoint
        job = dataclasses.replace(
            job, ctx=dataclasses.replace(job.ctx, checkpoint=backend.checkpoints()[0].name)
        )
    prepare(recipe, job, backend)
    return ""


def cmd_models(args: argparse.Namespace) -> int:
    problems: list[Problem] = []
    cache_mb = _model_flags(args, problems)
    if problems:
        raise RecipeError(problems)
    backend = _backend(args, cache_mb)
    for c in backend.checkpoints():
        what = backend.describe_file(c)
        print(f"{c.name:30s} {what:12s} {c.path.stat().st_size / 2**20:9.1f} MiB  {c.path}")
    for title, files, describe in (
        ("LoRAs", backend.loras.files, backend.describe_lora),
        ("embeddings", backend.embeddings.files, backend.describe_embedding),
    ):
        if files:
            print(f"\n{title}:")
            for f in files.values():
                size = f.path.stat().st_size / 2**20
                print(f"{f.name:30s} {describe(f):12s} {size:9.1f} MiB  {f.path}")
    return EXIT_OK


class Interrupts:
    """SIGINT and SIGTERM during a job: the first stops it after the current step (and says
    so), the second stops it at once; either way every finished image is saved."""

    def __init__(self, control: Any) -> None:
        self.control = control
        self.count = 0
        self.saving = False  # once the job is over, interrupts never cut the saving short
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            # as a command, the process ends next: a late interrupt must not print a
            # traceback from the interpreter's shutdown; in-process callers get theirs back
            signal.signal(sig, signal.SIG_IGN if _AS_COMMAND else handler)

    def handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.saving:
            print("\nmultipass: saving the finished images, a moment", file=sys.stderr, flush=True)
            return
        if self.count == 1:
            self.control.cancel()
            print(
                "\nmultipass: stopping after the current step; finished images will be saved "
                "(interrupt again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
            return
        print("\nmultipass: stopping now", file=sys.stderr, flush=True)
        raise KeyboardInterrupt


def _execute(
    recipe: Any,
    job: Any,
    backend: Any,
    out_dir: Path,
    interrupts: Interrupts,
    stages: bool,
    animation: Any = None,
) -> int:
    from tqdm import tqdm

    from .engine import run_job
    from .runner import write_outputs

    bars: list[Any] = []  # made at the first step: no bar for a job that never starts

    def on_progress(p: Any) -> None:
        if not bars:
            bars.append(tqdm(total=p.total, unit="step", dynamic_ncols=True, leave=True))
        bar = bars[0]
        bar.total = p.total
        which = f"{p.image + 1}" if p.batch == 1 else f"{p.image + 1}-{p.image + p.batch}"
        bar.set_description(f"{p.label} [{which}/{p.images}]", refresh=False)
        bar.update(p.done - bar.n)  # the total can shrink (fewer detections than counted)

    try:
        result = run_job(recipe, job, backend, control=interrupts.control, progress=on_progress)
    finally:
        interrupts.saving = True
        for bar in bars:
            bar.close()
    extra = {} if animation is None else {"animation": animation}
    written = write_outputs(result, recipe, job, out_dir, stages=stages, **extra)
    print(f"multipass: {result.account()}")
    order = ", ".join(result.checkpoints_loaded) or "none"
    disk = ", ".join(f"{n} x{k}" for n, k in backend.disk_loads.items()) or "none"
    print(f"checkpoints loaded in turn: {order} (read from disk: {disk})")
    for path in written.finals:
        print(f"  {path}")
    count = len(written.intermediates)
    plural = "" if count == 1 else "s"
    print(f"  {count} stage image{plural}, contact sheet: {written.contact_sheet}")
    for path in written.animations:
        print(f"  {path}")
    if result.stopped == "error":
        print(f"multipass: error: {result.error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_CANCELLED if result.stopped == "cancelled" else EXIT_OK


def _checked_job(recipe: Any, job: Any, backend: Any, problems: list[Problem]) -> None:
    """Every problem of the job at once (fields, flags, names, files, folders), or nothing."""
    from .preflight import prepare

    if recipe is None:
        raise RecipeError(problems)
    prepare(recipe, job, backend, problems)


def cmd_run(args: argparse.Namespace) -> int:
    from .engine import Control
    from .runner import make_job

    problems: list[Problem] = []
    images = _flag("--images", args.images, problems)
    seed = _flag("--seed", args.seed, problems)
    rng = _flag("--rng", args.rng, problems)
    rules = _flag("--image-rules", args.image_rules, problems)
    size = _size(args.size, problems)
    batch_size = _flag("--batch-size", args.batch_size, problems) or 1
    cache_mb = _model_flags(args, problems)
    _device_flags(args, problems)
    inputs = _inputs(args, problems)
    job_mask = _job_mask(args.mask, problems)
    recipe = _chain(_recipe(args.recipe, problems), args, problems)
    animation = _animation(args, problems)
    out = args.out or Path("outputs") / args.recipe.stem
    problems += check_out_dir(out)
    if recipe is None or any(p.where == CLI and p.field in BACKEND_FLAGS for p in problems):
        raise RecipeError(problems)  # no backend can be made: say everything found so far
    with Interrupts(Control()) as interrupts:
        backend = _backend(args, cache_mb)
        job = make_job(
            recipe,
            default_checkpoint=backend.checkpoints()[0].name,
            images=images,
            seed=seed,
            size=size,
            recipe_dir=args.recipe.parent,
            batch_size=batch_size,
            detectors=registry(args),
            inputs=inputs,
            job_mask=job_mask,
            rng=rng,
            image_rules=rules,
        )
        _checked_job(recipe, job, backend, problems)
        if any(not c.pickled for c in backend.checkpoints()) and _uses_tiny(recipe, job):
            print(TINY_NOTE)
        _chain_notes(recipe, inputs or [])
        return _execute(recipe, job, backend, out, interrupts, args.stages, animation)


def _chain_notes(recipe: Any, inputs: list[Any]) -> None:
    """A continued chain's images made by another chain (their infotext tells): said, since
    the result is then not the whole chain's; the job runs all the same."""
    from .runner import other_chain

    if recipe.from_pass < 2:
        return
    for given in inputs:
        if other_chain(recipe, given.infotext):
            print(
                f"note: {given.name} was made by other passes than this recipe's before pass "
                f"{recipe.from_pass} (its infotext says so): the result is not what the "
                "whole chain makes in one go"
            )


def _animation(args: argparse.Namespace, problems: list[Problem]) -> Any:
    """--animation, --frame-ms and --loop, checked (frame and loop flags need an animation)."""
    from .runner import Animation

    fmt = _flag("--animation", args.animation, problems)
    frame_ms = _flag("--frame-ms", args.frame_ms, problems)
    loop = _flag("--loop", args.loop, problems)
    if fmt in (None, "none"):
        for flag, value in (("--frame-ms", args.frame_ms), ("--loop", args.loop)):
            if value is not None and args.animation is None:
                why = "only with --animation webp or gif: it is the animation's"
                problems.append(Problem(CLI, flag, _typed(value), why))
        return Animation()
    default = Animation()
    return Animation(
        fmt,
        default.frame_ms if frame_ms is None else frame_ms,
        default.loop if loop is None else loop,
    )


def _inputs(args: argparse.Namespace, problems: list[Problem]) -> list[Any] | None:
    """The images of `--init`, checked (None when not given or bad); --images and --size
    cannot be given with them."""
    from .inputs import InputError, read_inputs

    if args.init is None:
        return None
    for flag, value in (("--images", args.images), ("--size", args.size)):
        if value is not None:
            why = "not with --init: the job's images, their number and size, are the given ones"
            problems.append(Problem(CLI, flag, _typed(value), why))
    try:
        return read_inputs(args.init)
    except InputError as e:
        problems.append(Problem(CLI, "--init", e.value, e.allowed))
        return None


def _job_mask(path: Path | None, problems: list[Problem]) -> Any:
    from .inputs import InputError, read_mask

    if path is None:
        return None
    try:
        return read_mask(path)
    except InputError as e:
        problems.append(Problem(CLI, "--mask", e.value, e.allowed))
        return None


def _uses_tiny(recipe: Any, job: Any) -> bool:
    from .tiny import TINY_SEEDS

    names = {job.ctx.checkpoint, *(p.checkpoint for p in recipe.passes)}
    return bool(names & set(TINY_SEEDS))


def _jobs_flags(args: argparse.Namespace, problems: list[Problem]) -> tuple[str, int | None]:
    """The engine of a job list and its worker count, checked."""
    from .jobs.webui_workers import url_problem

    workers = _flag("--workers", args.workers, problems)
    per_request = _flag("--images-per-request", args.images_per_request, problems)
    if args.images_per_request is not None and not args.webui_url:
        allowed = "only with --webui-url"
        problems.append(
            Problem(CLI, "--images-per-request", _typed(args.images_per_request), allowed)
        )
    args.images_per_request = per_request
    urls = args.webui_url or []
    for url in urls:
        if why := url_problem(url):
            problems.append(Problem(CLI, "--webui-url", url, why))
    engine = args.engine or ("webui" if urls else "embedded")
    if urls and args.engine:
        why = "--engine or --webui-url, not both: with --webui-url the hosts are the workers"
        problems.append(Problem(CLI, "--engine", args.engine, why))
    if engine == "ray" and importlib.util.find_spec("ray") is None:
        why = 'Ray installed first: pip install -e ".[run,ray]" (or pip install ray)'
        problems.append(Problem(CLI, "--engine", "ray", why))
    for flag, value in (("--workers", args.workers), ("--ray-address", args.ray_address)):
        if value is not None and engine != "ray":
            problems.append(Problem(CLI, flag, _typed(value), "only with --engine ray"))
    if args.ray_address is not None and engine == "ray":
        from .jobs.ray_workers import address_problem, address_unreachable

        address = args.ray_address
        if why := address_problem(address) or address_unreachable(address):
            problems.append(Problem(CLI, "--ray-address", address, why))
    return engine, workers


def cmd_jobs(args: argparse.Namespace) -> int:
    from .engine import Control
    from .jobs.driver import ListRun, make_tasks
    from .jobs.listfile import read_job_list
    from .jobs.progress import Display

    problems: list[Problem] = []
    engine, count = _jobs_flags(args, problems)
    cache_mb = None
    if engine != "webui":
        cache_mb = _model_flags(args, problems)
        _device_flags(args, problems)
    animation = _animation(args, problems)
    if engine == "webui" and animation.fmt != "none":
        why = "not with --webui-url: hosts send back finished images, not their stages"
        problems.append(Problem(CLI, "--animation", args.animation, why))
    out = args.out or Path("outputs") / args.list.stem
    problems += check_out_dir(out)
    specs = []
    try:
        specs = read_job_list(args.list)
    except RecipeError as e:
        problems += e.problems
    if not specs or any(p.where == CLI and p.field in BACKEND_FLAGS for p in problems):
        raise RecipeError(problems)
    started_ray = False
    with Interrupts(Control()) as interrupts:
        try:
            backend = None if engine == "webui" else _backend(args, cache_mb)
            default = backend.checkpoints()[0].name if backend is not None else ""
            try:
                tasks = make_tasks(specs, backend, default_checkpoint=default)
            except RecipeError as e:
                problems += e.problems
            if problems:
                raise RecipeError(problems)
            workers, started_ray = _list_workers(engine, count, args, backend, cache_mb, tasks)
            run = ListRun(
                tasks, workers, out, stages=args.stages, fresh=args.fresh, animation=animation
            )
            run.display = Display(workers, run.total_steps, len(run.waiting))
            interrupts.control = run
            summary = run.run()
            interrupts.saving = True
        except KeyboardInterrupt:
            print(f"\nmultipass: stopped at once; finished jobs are kept in {out}", file=sys.stderr)
            return EXIT_CANCELLED
        finally:
            if started_ray:
                import ray

                ray.shutdown()
    return _jobs_report(summary, out, run.stopping, hosts=engine == "webui")


def _hosts(urls: Sequence[str], tasks: Sequence[Any], per_request: int | None) -> list[Any]:
    """WebUI hosts as workers, each asked for its checkpoints first: a host that does not
    answer, and a job whose checkpoints no host has, are named before anything is sent."""
    from .jobs.webui_workers import IMAGES_PER_REQUEST, WebUIWorker

    hosts = [WebUIWorker(url, images_per_request=per_request or IMAGES_PER_REQUEST) for url in urls]
    problems = [
        Problem(CLI, "--webui-url", h.url, why) for h in hosts if (why := h.ask_checkpoints())
    ]
    if problems:
        raise RecipeError(problems)
    known = sorted(set().union(*(h.checkpoints or set() for h in hosts)))
    for task in tasks:
        if not any(h.can_run(task) for h in hosts):
            missing = [
                n for n in task.need.checkpoints if not any(h.can_run_name(n) for h in hosts)
            ]
            if missing:
                allowed = "a checkpoint of the hosts: " + ", ".join(known[:20])
                problems.append(Problem(task.spec.where, "checkpoint", missing[0], allowed))
            else:
                allowed = "checkpoints that one host has all of (each host lacks one)"
                names = ", ".join(task.need.checkpoints)
                problems.append(Problem(task.spec.where, "checkpoint", names, allowed))
    if problems:
        raise RecipeError(problems)
    return hosts


def _list_workers(
    engine: str,
    count: int | None,
    args: argparse.Namespace,
    backend: Any,
    cache_mb: int | None,
    tasks: Sequence[Any],
) -> tuple[list[Any], bool]:
    """The workers of a job list, and whether a local Ray was started for them."""
    if engine == "webui":
        return _hosts(args.webui_url, tasks, args.images_per_request), False
    if engine == "embedded":
        from .jobs.workers import LocalWorker

        return [LocalWorker(backend, registry(args))], False
    import os

    from .jobs.ray_workers import ray_workers, start_ray

    started = start_ray(args.ray_address, max(count or 0, os.cpu_count() or 1))
    settings = backend_settings(args, cache_mb)
    return ray_workers(count, settings, registry_settings(args)), started


def _jobs_report(summary: Any, out: Path, stopped: bool, hosts: bool) -> int:
    from .jobs.manifest import MANIFEST_NAME

    print(f"multipass: jobs: {summary.text()}, {summary.images} images written")
    for worker, loads in summary.loads.items():
        read = ", ".join(f"{k} x{v}" for k, v in sorted(loads.items())) or "none"
        ran = f"{summary.ran[worker]} job(s)"
        print(f"  {worker}: {ran}" + ("" if hosts else f", checkpoints read from disk: {read}"))
    print(f"  manifest: {out / MANIFEST_NAME}")
    if summary.resumed:
        print(f"  {summary.resumed} job(s) went on from the images an earlier run wrote")
    if summary.skipped:
        print(
            f"  {summary.skipped} job(s) already done in {out} were skipped; "
            "--fresh runs them again"
        )
    if summary.failed:
        print(f"multipass: {summary.failed} job(s) failed; the manifest says why", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_CANCELLED if stopped else EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_RECIPE
    from .engine import Control
    from .recipe import parse_recipe
    from .runner import make_job

    problems: list[Problem] = []
    cache_mb = _model_flags(args, problems)
    _device_flags(args, problems)
    problems += check_out_dir(args.out)
    if problems:
        raise RecipeError(problems)
    recipe = parse_recipe(DEMO_RECIPE)
    with Interrupts(Control()) as interrupts:
        backend = _backend(args, cache_mb)
        job = make_job(recipe, default_checkpoint="tiny-toon")
        _checked_job(recipe, job, backend, [])
        print(TINY_NOTE)
        print(format_plan_for(recipe, job, backend))
        return _execute(recipe, job, backend, args.out, interrupts, stages=True)


def format_plan_for(recipe: Any, job: Any, backend: Any) -> str:
    """The plan table of a job on a backend (sizes, steps, crops)."""
    from .plan import format_plan, plan_recipe

    runs = plan_recipe(
        recipe,
        job.ctx,
        family_of=backend.checkpoint_family,
        find_crops=_crop_finder(recipe, job),
    )
    return format_plan(runs, job.ctx, job.batch_size)


def cmd_schema(args: argparse.Namespace) -> int:
    from .schema import recipe_schema

    print(json.dumps(recipe_schema(), indent=2))
    return EXIT_OK


def cmd_fields(args: argparse.Namespace) -> int:
    from .docs import fields_markdown

    print(fields_markdown())
    return EXIT_OK


COMMANDS = {
    "demo": cmd_demo,
    "run": cmd_run,
    "jobs": cmd_jobs,
    "models": cmd_models,
    "detectors": cmd_detectors,
    "plan": cmd_plan,
    "schema": cmd_schema,
    "fields": cmd_fields,
}
NEEDS = {
    "plan": "Pillow (`pip install pillow`)",
    "schema": "nothing beyond Multipass itself",
    "fields": "nothing beyond Multipass itself",
}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parsers = build_parser()
    args, unknown = parsers[""].parse_known_args(argv)
    if unknown:
        raise CommandLineError(_unknown_problems(parsers[args.command], unknown))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = _parse(argv)
        return COMMANDS[args.command](args)
    except RecipeError as e:
        print(f"multipass: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\nmultipass: stopped before the job started; nothing was made", file=sys.stderr)
        return EXIT_CANCELLED
    except ModuleNotFoundError as e:  # a package of the runner is missing (not a bug of ours)
        command = getattr(locals().get("args"), "command", "run")
        needs = NEEDS.get(
            command,
            'the runner\'s packages: install torch==2.13.0 first, then `pip install -e ".[run]"`',
        )
        print(
            f"multipass: {e.name or e} is not installed; `multipass {command}` needs {needs}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT


_AS_COMMAND = False


def command() -> None:
    """The `multipass` command's entry point (and `python -m lib_multipass`)."""
    global _AS_COMMAND
    _AS_COMMAND = True
    sys.exit(main())


if __name__ == "__main__":
    command()
