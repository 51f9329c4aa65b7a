"""The `multipass` command: demo, run, models, plan, schema, fields.

Exit codes: 0 done; 2 bad input (usage, a recipe that does not validate); 3 cancelled (what was
finished is saved); 1 any other error (what was finished is saved).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .checkpoints import family_or_default, find_checkpoint
from .geometry import Crop, Size
from .recipe import Base, RecipeError, load_recipe, recipe_to_dict

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 3
TINY_NOTE = (
    "note: the built-in tiny-toon and tiny-photo models are random, untrained networks: they make "
    "noise-like pictures, so that every code path runs on a machine with no models"
)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 512x768") from None
    if not (64 <= w <= 4096 and 64 <= h <= 4096 and w % 8 == 0 and h % 8 == 0):
        raise argparse.ArgumentTypeError(f"{text!r}: sides must be multiples of 8 from 64 to 4096")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `multipass` command."""
    parser = argparse.ArgumentParser(
        prog="multipass",
        description="Multi-pass image workflows: checkpoint switching, denoise chains, "
        "detailed-inpaint crops.",
    )
    parser.add_argument("--version", action="version", version=f"multipass {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help="print the runs a recipe expands into")
    plan.add_argument("recipe", type=Path, help="a recipe JSON file")
    plan.add_argument("--size", type=_size, help="base image size, e.g. 512x768 (default: recipe)")
    plan.add_argument("--steps", type=int, help="base sampling steps (default: recipe)")
    plan.add_argument(
        "--step-mode", choices=("proportional", "fixed"), help="img2img step arithmetic"
    )
    plan.add_argument(
        "--models", type=Path, help="checkpoint folder, to read each checkpoint's family"
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")

    demo = sub.add_parser("demo", help="run the demo job on the built-in tiny models")
    demo.add_argument("--out", type=Path, default=Path("multipass-demo"), help="output folder")
    _model_args(demo)

    run = sub.add_parser("run", help="run a recipe headless on diffusers")
    run.add_argument("recipe", type=Path, help="a recipe JSON file")
    run.add_argument("--out", type=Path, help="output folder (default: outputs/RECIPE-NAME)")
    run.add_argument("--images", type=int, help="number of images (default: recipe)")
    run.add_argument("--seed", type=int, help="first image's seed (default: recipe)")
    run.add_argument("--size", type=_size, help="base image size, e.g. 512x768 (default: recipe)")
    _model_args(run)

    models = sub.add_parser("models", help="list the checkpoints the runner can load")
    _model_args(models)

    sub.add_parser("schema", help="print the recipe JSON schema")
    sub.add_parser("fields", help="print every recipe field as a Markdown table")
    return parser


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", type=Path, help="a folder of .safetensors checkpoints")
    p.add_argument(
        "--webui", type=Path, help="a WebUI folder: use its models/Stable-diffusion checkpoints"
    )
    p.add_argument(
        "--allow-ckpt", action="store_true", help="allow pickle-based .ckpt files (they run code)"
    )
    p.add_argument(
        "--cache-mb", type=int, default=2048, help="RAM kept for recently used checkpoints"
    )


def _backend(args: argparse.Namespace) -> Any:
    from .backends.diffusers_backend import DiffusersBackend
    from .tiny import ensure_tiny_models

    folders = []
    if getattr(args, "models", None):
        folders.append(args.models)
    if getattr(args, "webui", None):
        folders.append(args.webui / "models" / "Stable-diffusion")
    for folder in folders:
        if not folder.is_dir():
            raise RecipeError.single("command line", "--models/--webui", str(folder), "a folder")
    folders.append(ensure_tiny_models())
    return DiffusersBackend(
        folders, cache_bytes=args.cache_mb * 1024 * 1024, allow_ckpt=args.allow_ckpt
    )


def _family_reader(models: Path | None):
    def family_of(name: str) -> str:
        if models is None or not name:
            return "sd1"
        try:
            return family_or_default(find_checkpoint(models, name).path)
        except LookupError:
            return "sd1"

    return family_of


def _crop_finder(recipe: Any, job: Any):
    """The crops a plan can show before the job runs: from boxes and mask images."""
    from .engine import crops_for, load_masks

    masks = load_masks(recipe, job)

    def find(index: int, p: Any, size: Size, family: str) -> tuple[Crop, ...] | None:
        if p.mask_source == "job":
            return None  # the job's own mask arrives with the job
        return tuple(m.crop for m in crops_for(index, recipe, job, masks, size, family))

    return find


def cmd_plan(args: argparse.Namespace) -> int:
    from .engine import Job
    from .plan import JobContext, format_plan, plan_as_dicts, plan_recipe

    recipe = load_recipe(args.recipe)
    base = recipe.base or Base()
    ctx = JobContext.from_base(base, args.step_mode or recipe.step_mode)
    if args.size:
        ctx = dataclasses.replace(ctx, width=args.size[0], height=args.size[1])
    if args.steps:
        ctx = dataclasses.replace(ctx, steps=args.steps)
    runs = plan_recipe(
        recipe,
        ctx,
        family_of=_family_reader(args.models),
        find_crops=_crop_finder(recipe, Job(ctx, recipe_dir=args.recipe.parent)),
    )
    if args.json:
        doc = {"recipe": recipe_to_dict(recipe, compact=True), "runs": plan_as_dicts(runs)}
        print(json.dumps(doc, indent=2))
    else:
        print(f"{args.recipe}:")
        print(format_plan(runs, ctx))
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    backend = _backend(args)
    for c in backend.checkpoints():
        family = "pickle, needs --allow-ckpt" if c.pickled else backend.checkpoint_family(c.name)
        print(f"{c.name:30s} {family:8s} {c.path.stat().st_size / 2**20:9.1f} MB  {c.path}")
    return EXIT_OK


def _execute(recipe: Any, job: Any, backend: Any, out_dir: Path) -> int:
    import signal

    from tqdm import tqdm

    from .engine import Control, run_job
    from .runner import write_outputs

    control = Control()
    bar = tqdm(total=1, unit="step", dynamic_ncols=True, leave=True)

    def on_progress(p: Any) -> None:
        bar.total = p.total
        bar.set_description(f"{p.label} [{p.image + 1}/{p.images}]", refresh=False)
        bar.update(1)

    def on_interrupt(signum: int, frame: Any) -> None:
        if control.should_stop():
            raise KeyboardInterrupt
        control.cancel()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = run_job(recipe, job, backend, control=control, progress=on_progress)
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    written = write_outputs(result, recipe, job, out_dir)
    print(f"multipass: {result.account()}")
    order = ", ".join(result.checkpoints_loaded) or "none"
    disk = ", ".join(f"{n} x{k}" for n, k in backend.disk_loads.items()) or "none"
    print(f"checkpoints loaded in turn: {order} (read from disk: {disk})")
    for path in written.finals:
        print(f"  {path}")
    print(f"  {len(written.intermediates)} stage images, contact sheet: {written.contact_sheet}")
    if result.stopped == "error":
        print(f"multipass: error: {result.error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_CANCELLED if result.stopped == "cancelled" else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import make_job

    recipe = load_recipe(args.recipe)
    backend = _backend(args)
    job = make_job(
        recipe,
        default_checkpoint=backend.checkpoints()[0].name,
        images=args.images,
        seed=args.seed,
        size=args.size,
        recipe_dir=args.recipe.parent,
    )
    if any(not c.pickled for c in backend.checkpoints()) and _uses_tiny(recipe, job):
        print(TINY_NOTE)
    out = args.out or Path("outputs") / args.recipe.stem
    return _execute(recipe, job, backend, out)


def _uses_tiny(recipe: Any, job: Any) -> bool:
    from .tiny import TINY_SEEDS

    names = {job.ctx.checkpoint, *(p.checkpoint for p in recipe.passes)}
    return bool(names & set(TINY_SEEDS))


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_RECIPE
    from .recipe import parse_recipe
    from .runner import make_job

    recipe = parse_recipe(DEMO_RECIPE)
    backend = _backend(args)
    job = make_job(recipe, default_checkpoint="tiny-toon")
    print(TINY_NOTE)
    print(format_plan_for(recipe, job, backend))
    return _execute(recipe, job, backend, args.out)


def format_plan_for(recipe: Any, job: Any, backend: Any) -> str:
    """The plan table of a job on a backend (sizes, steps, crops)."""
    from .plan import format_plan, plan_recipe

    runs = plan_recipe(
        recipe,
        job.ctx,
        family_of=backend.checkpoint_family,
        find_crops=_crop_finder(recipe, job),
    )
    return format_plan(runs, job.ctx)


def cmd_schema(args: argparse.Namespace) -> int:
    from .schema import recipe_schema

    print(json.dumps(recipe_schema(), indent=2))
    return EXIT_OK


def cmd_fields(args: argparse.Namespace) -> int:
    from .docs import fields_markdown

    print(fields_markdown())
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        commands = {
            "demo": cmd_demo,
            "run": cmd_run,
            "models": cmd_models,
            "plan": cmd_plan,
            "schema": cmd_schema,
            "fields": cmd_fields,
        }
        return commands[args.command](args)
    except RecipeError as e:
        print(f"multipass: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ImportError as e:
        print(
            f"multipass: {e.name or e} is not installed: this command needs the runner's "
            'packages; install torch==2.13.0 first, then `pip install -e ".[run]"`',
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
