"""The `multipass` command: plan a recipe, print the recipe schema.

Exit codes: 0 done, 2 bad input (usage, a recipe that does not validate), 1 anything else.
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
from .checkpoints import find_checkpoint, sniff_family
from .geometry import Crop, Size
from .recipe import Base, RecipeError, load_recipe, recipe_to_dict, where_pass

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2


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

    sub.add_parser("schema", help="print the recipe JSON schema")
    sub.add_parser("fields", help="print every recipe field as a Markdown table")
    return parser


def _family_reader(models: Path | None):
    def family_of(name: str) -> str:
        if models is None or not name:
            return "sd1"
        try:
            return sniff_family(find_checkpoint(models, name).path) or "sd1"
        except (LookupError, ValueError, OSError):
            return "sd1"

    return family_of


def _crop_finder(recipe_dir: Path, base_size: Size):
    from .imaging import box_crops, open_mask_image, plan_masked_crop, to_mask

    def find(index: int, p: Any, size: Size, family: str) -> tuple[Crop, ...] | None:
        if p.mask_source == "boxes":
            return tuple(m.crop for m in box_crops(size, base_size, p.boxes, p, family))
        if p.mask_source == "image":
            try:
                mask = to_mask(open_mask_image(p.mask_image, recipe_dir), size)
            except ValueError as e:
                raise RecipeError.single(
                    where_pass(index), "mask_image", p.mask_image, str(e)
                ) from e
            planned = plan_masked_crop(mask, p, family)
            return () if planned is None else (planned.crop,)
        return None

    return find


def cmd_plan(args: argparse.Namespace) -> int:
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
        find_crops=_crop_finder(args.recipe.parent, (ctx.width, ctx.height)),
    )
    if args.json:
        doc = {"recipe": recipe_to_dict(recipe, compact=True), "runs": plan_as_dicts(runs)}
        print(json.dumps(doc, indent=2))
    else:
        print(f"{args.recipe}:")
        print(format_plan(runs, ctx))
    return EXIT_OK


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
        return {"plan": cmd_plan, "schema": cmd_schema, "fields": cmd_fields}[args.command](args)
    except RecipeError as e:
        print(f"multipass: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
