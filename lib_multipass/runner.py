"""Headless jobs: a recipe's base and passes on a backend, written out as WebUI-readable PNGs.

Outputs: every image's final state, every run's intermediate image, a contact sheet (a row per
image, a column per run), the recipe as JSON, and WebUI infotext in every PNG so that the
WebUI's PNG Info tab reads the generation and the Multipass recipe back.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from .engine import Job, JobResult
from .infotext import params_to_text, protect, result_params
from .inputs import Input
from .plan import JobContext
from .recipe import Base, recipe_to_dict

THUMB_HEIGHT = 160


def make_job(
    recipe: Any,
    *,
    default_checkpoint: str,
    images: int | None = None,
    seed: int | None = None,
    size: tuple[int, int] | None = None,
    recipe_dir: Path | None = None,
    batch_size: int = 1,
    detectors: Any = None,
    inputs: Sequence[Input] | None = None,
    job_mask: Image.Image | None = None,
    rng: str | None = None,
    image_rules: str | None = None,
) -> Job:
    """The job a recipe describes, with command-line overrides; seeds go +1 per image (with a
    variation strength the variation seeds do, as in the WebUI).

    With `inputs` (`--init`), the passes start from those images instead of a generated base,
    at their size; `job_mask` is the mask of passes whose mask source is the job's.
    """
    base = recipe.base or Base()
    if not base.checkpoint:
        base = dataclasses.replace(base, checkpoint=default_checkpoint)
    drawn = (base.width, base.height)
    if inputs:
        size = inputs[0].image.size
    if size is not None:
        base = dataclasses.replace(base, width=size[0], height=size[1])
    first = base.seed if seed is None else seed
    if first == -1:
        first = random.randrange(2**32)
    count = len(inputs) if inputs else images or base.images
    # as the WebUI's processing.py: seed + i, or the seed for all with a variation strength
    seeds = [(first + (i if base.subseed_strength == 0 else 0)) % 2**32 for i in range(count)]
    if base.subseed_strength != 0 and base.subseed == -1:
        base = dataclasses.replace(base, subseed=random.randrange(2**32))
    if rng is not None:
        base = dataclasses.replace(base, rng=rng)
    if image_rules is not None:
        base = dataclasses.replace(base, image_rules=image_rules)
    if inputs and seed is None and recipe.from_pass > 1:
        # a chain continued from its own images goes on with the seeds that made them
        seeds = [s if i.seed is None else i.seed for s, i in zip(seeds, inputs, strict=True)]
    ctx = JobContext.from_base(base, recipe.step_mode)
    if drawn != (ctx.width, ctx.height):
        ctx = dataclasses.replace(ctx, box_space=drawn)  # the recipe's boxes scale with --size
    if job_mask is not None:
        ctx = dataclasses.replace(ctx, has_job_mask=True)
    return Job(
        ctx=ctx,
        images=[i.image for i in inputs] if inputs else None,
        seeds=seeds,
        job_mask=job_mask,
        recipe_dir=recipe_dir,
        batch_size=batch_size,
        detectors=detectors,
        names=[i.name for i in inputs] if inputs else None,
    )


def other_chain(recipe: Any, text: str | None) -> bool:
    """Whether an image continued at `recipe.from_pass` was made by another chain than the
    recipe's passes before it, as its infotext tells (False where it tells nothing)."""
    from .infotext import recipe_from_infotext
    from .recipe import RecipeError

    try:
        made = recipe_from_infotext(text) if text else None
    except RecipeError:
        return False
    if made is None:
        return False
    before = [p for p in recipe.passes[: recipe.from_pass - 1] if p.enabled]
    made_by = made.passes[: made.stop_after or len(made.passes)]  # every pass that ran on it

    def same(p: Any) -> Any:
        return dataclasses.replace(p, mask_image="")  # mask images are not in infotext

    return [same(p) for p in before] != [same(p) for p in made_by]


def base_params(ctx: JobContext, seed: int, index: int = 0) -> dict[str, str]:
    """The WebUI's own infotext items for the base generation (of image `index`)."""
    params = {"Steps": str(ctx.steps), "Sampler": ctx.sampler}
    if ctx.scheduler:
        params["Schedule type"] = ctx.scheduler
    params |= {
        "CFG scale": f"{ctx.cfg_scale:g}",
        "Seed": str(seed),
        "Size": f"{ctx.width}x{ctx.height}",
        "Model": protect(ctx.checkpoint),
    }
    if ctx.subseed_strength != 0:  # as the WebUI writes them: only with a strength
        params["Variation seed"] = str((ctx.subseed + index) % 2**32)
        params["Variation seed strength"] = f"{ctx.subseed_strength:g}"
    if ctx.clip_skip > 1:  # as the WebUI writes it: only when it skips a layer
        params["Clip skip"] = str(ctx.clip_skip)
    if ctx.rng != "GPU":  # the WebUI's default source goes unsaid
        params["RNG"] = ctx.rng
    return params


def infotext(
    recipe: Any,
    ctx: JobContext,
    seed: int,
    passes_ran: Sequence[int],
    result: str | None,
    stage: str | None = None,
    found: dict[int, str] | None = None,
    given: str | None = None,
    changes: dict[int, Any] | None = None,
    index: int = 0,
) -> str:
    """A full WebUI infotext: prompt, negative prompt, and the params line with the passes that
    ran on this image and its result. An image the job was given (`given`: its file name) has
    no base generation to describe: its seed (the passes' first) and size, and where it came
    from."""
    if given is None:
        params = base_params(ctx, seed, index)
    else:
        params = {
            "Seed": str(seed),
            "Size": f"{ctx.width}x{ctx.height}",
            "Multipass input": protect(given),
        }
    if ctx.image_rules != "A1111":  # whose rules the passes' encodes followed
        params["Multipass image rules"] = ctx.image_rules
    params |= result_params(recipe, passes_ran, result, found, changes)
    if stage:
        params["Multipass stage"] = protect(stage)
    text = ctx.prompt
    if ctx.negative_prompt:
        text += f"\nNegative prompt: {ctx.negative_prompt}"
    return f"{text}\n{params_to_text(params)}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "pass"


FINAL_COMPRESSION = 4  # zlib level: finals are kept, stages are working files
STAGE_COMPRESSION = 1


def _save(image: Image.Image, path: Path, text: str, level: int = FINAL_COMPRESSION) -> Path:
    info = PngInfo()
    info.add_text("parameters", text)
    image.save(path, pnginfo=info, compress_level=level)
    return path


@dataclass
class Written:
    """The files a job wrote."""

    finals: list[Path]
    intermediates: list[Path]
    contact_sheet: Path | None
    recipe: Path
    summary: Path | None = None  # result.json: what ran on each image, each run's change
    animations: list[Path] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class Animation:
    """The chain animation a job writes per image: format ('none', 'webp', 'gif'), each
    frame's duration and how many times it loops (0: forever)."""

    fmt: str = "none"
    frame_ms: int = 500
    loop: int = 0


MANIFEST = "multipass-files.txt"


def _clear_previous(out_dir: Path) -> None:
    """Remove the files an earlier run wrote into this folder (listed in its manifest), so a
    reused folder never mixes old finals with new ones; nothing else is touched."""
    manifest = out_dir / MANIFEST
    try:
        names = manifest.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return
    for name in names:
        if name and "/" not in name and "\\" not in name and name not in (".", ".."):
            (out_dir / name).unlink(missing_ok=True)
    manifest.unlink(missing_ok=True)


def write_outputs(
    result: JobResult,
    recipe: Any,
    job: Job,
    out_dir: Path,
    *,
    stages: bool = True,
    animation: Animation = Animation(),
    first: int = 0,
    kept: Collection[int] = (),
) -> Written:
    """Save finals, the contact sheet, the recipe and (with `stages`) every stage's image but
    the last, which is the final; whatever the job finished.

    Finals are written first, so an impatient second interrupt loses the least. A job list
    writes each final as it comes: `kept` are those (indexes into `result`), not written again,
    and the files of the folder's earlier run are not cleared; `first` is the number of images
    before this job's first in the job it continues (files are numbered in that job).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier: list[str] = []
    if first or kept:
        earlier = _listed(out_dir)
    else:
        _clear_previous(out_dir)
    written = _write(result, recipe, job, out_dir, stages, first, set(kept))
    written.animations = _animations(result, job, written.finals, animation)
    written.summary = _summary(result, written.finals, out_dir)
    files = [
        *written.finals,
        *written.animations,
        *written.intermediates,
        written.contact_sheet,
        written.recipe,
        written.summary,
    ]
    names = dict.fromkeys([*earlier, *(p.name for p in files if p is not None)])
    (out_dir / MANIFEST).write_text("\n".join(names) + "\n", encoding="utf-8")
    return written


def _listed(out_dir: Path) -> list[str]:
    try:
        return [n for n in (out_dir / MANIFEST).read_text(encoding="utf-8").splitlines() if n]
    except (OSError, UnicodeDecodeError):
        return []


def final_of(result: JobResult, recipe: Any, job: Job, i: int) -> tuple[str, str, str]:
    """Image `i`'s final as it is saved: its file stem (the given image's name, or its seed),
    'final' or 'partial' (the job stopped before it was finished), and its infotext."""
    names = list(job.names or [])
    given = names[i] if i < len(names) else None
    seed, account = result.seeds[i], result.image_account(i)
    text = infotext(
        recipe,
        job.ctx,
        seed,
        account.passes_ran,
        account.text(),
        found=dict(account.found),
        given=given,
        changes=dict(account.changes),
        index=i,
    )
    stem = _slug(Path(given).stem) if given else str(seed)
    return stem, "final" if account.complete else "partial", text


def _write(
    result: JobResult,
    recipe: Any,
    job: Job,
    out_dir: Path,
    stages: bool,
    first: int = 0,
    kept: Collection[int] = (),
) -> Written:
    finals, steps = [], []
    names = list(job.names or [])

    def given(i: int) -> str | None:
        return names[i] if i < len(names) else None

    def stem(i: int) -> str:
        # a given image's outputs carry its name; a generated one's its seed
        name = given(i)
        return _slug(Path(name).stem) if name else str(result.seeds[i])

    for i, outputs in enumerate(result.outputs):
        if outputs:
            name, state, text = final_of(result, recipe, job, i)
            path = out_dir / f"{first + i + 1:02d}-{name}-{state}.png"
            finals.append(path if i in kept else _save(outputs[-1].image, path, text))
    for i, outputs in enumerate(result.outputs if stages else []):
        seed = result.seeds[i]
        ran: list[int] = []
        for k, out in enumerate(outputs[:-1]):  # the last stage is the final
            label = ("input" if given(i) else "base") if out.run is None else out.run.label
            if out.run is not None and not out.skipped and out.run.pass_index not in ran:
                ran.append(out.run.pass_index)
            name = f"{first + i + 1:02d}-{stem(i)}-{k:02d}-{_slug(label)}.png"
            stage = f"{label}{' (skipped)' if out.skipped else ''}"
            text = infotext(recipe, job.ctx, seed, ran, None, stage, given=given(i), index=i)
            steps.append(_save(out.image, out_dir / name, text, STAGE_COMPRESSION))
    sheet = contact_sheet(result, first="input" if names else "base")
    sheet_path = None
    if sheet is not None:
        sheet_path = out_dir / "contact-sheet.png"
        sheet.save(sheet_path, compress_level=STAGE_COMPRESSION)
    recipe_path = out_dir / "recipe.json"
    recipe_path.write_text(json.dumps(recipe_to_dict(recipe), indent=2) + "\n", encoding="utf-8")
    return Written(finals, steps, sheet_path, recipe_path)


def _animations(
    result: JobResult, job: Job, finals: list[Path], animation: Animation
) -> list[Path]:
    """Each image's chain as an animation beside its final: 01-SEED-final.png has
    01-SEED-chain.webp (or .gif)."""
    from .animation import frames, save, stages_of

    if animation.fmt == "none":
        return []
    first = "input" if job.names else "base"
    out = []
    for outputs, final in zip((o for o in result.outputs if o), finals, strict=True):
        stem = final.name.rsplit("-", 1)[0]
        path = final.with_name(f"{stem}-chain.{animation.fmt}")
        out.append(
            save(
                frames(stages_of(outputs, first)),
                path,
                animation.fmt,
                animation.frame_ms,
                animation.loop,
            )
        )
    return out


def image_summary(result: JobResult, index: int) -> dict[str, Any]:
    """What ran on image `index` as JSON: its seed, result, and each run with its change."""
    account = result.image_account(index)
    runs = []
    for o in result.outputs[index][1:]:
        if o.run is None:
            continue
        runs.append(
            {
                "run": o.run.number,
                "pass": o.run.pass_index + 1,
                "label": o.run.label,
                "strength": o.run.strength,
                "skipped": o.skipped,
                "change": None if o.change is None else round(o.change, 4),
            }
        )
    return {
        "seed": result.seeds[index],
        "result": account.text(),
        "runs": runs,
        "settled": [r.number for r in account.settled],
    }


def _summary(result: JobResult, finals: list[Path], out_dir: Path) -> Path:
    """result.json: how the job ended and, per image, its file and what ran on it."""
    images = []
    for i, final in zip((i for i, o in enumerate(result.outputs) if o), finals, strict=True):
        images.append({"file": final.name, **image_summary(result, i)})
    path = out_dir / "result.json"
    doc = {"result": result.summary(), "images": images}
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


def plots_wanted(result: JobResult) -> bool:
    """Whether a job's images get a change plot: some pass of it runs several times."""
    return any(r.runs_in_pass > 1 or r.converge_below for r in result.runs)


def _repeated(out: Any) -> bool:
    """Whether a stage is a run of a pass of several runs, whose changes are plotted."""
    run = out.run
    return (
        run is not None
        and out.change is not None
        and (run.runs_in_pass > 1 or bool(run.converge_below))
    )


def image_plot(result: JobResult, index: int) -> Image.Image:
    """The change plot of image `index`: the change of each run of its passes of several
    runs, in order, with the threshold of its converging passes (where they share one)."""
    from .converge import change_plot

    outs = [o for o in result.outputs[index] if _repeated(o)]
    limits = {o.run.converge_below for o in outs} - {0.0}
    threshold = limits.pop() if len(limits) == 1 else 0.0
    names = dict.fromkeys(o.run.label.rsplit(" (", 1)[0] for o in outs)
    title = f"{', '.join(names)}: change per run" if len(names) == 1 else "change per run"
    return change_plot([o.change for o in outs], threshold, title=title)


def contact_sheet(
    result: JobResult, thumb_height: int = THUMB_HEIGHT, first: str = "base"
) -> Image.Image | None:
    """A row per image, a column per stage (`first`: the base or the given input, then each
    run; a run an image did not need, its repeats settled, left empty), labelled; and a last
    column plotting each run's change, where a pass runs several times."""
    rows = [r for r in result.outputs if r]
    if not rows:
        return None
    font = ImageFont.load_default()
    keys = sorted({_column(o) for row in rows for o in row})  # 0: the base, then run numbers
    where = {k: c for c, k in enumerate(keys)}
    columns = len(keys)
    plots = (
        [image_plot(result, i) for i, r in enumerate(result.outputs) if r]
        if plots_wanted(result)
        else []
    )

    def thumb(image: Image.Image) -> Image.Image:
        width = max(1, round(image.width * thumb_height / image.height))
        return image.resize((width, thumb_height))

    cells = [{where[_column(o)]: (o, thumb(o.image)) for o in row} for row in rows]
    col_w = [max(cell[c][1].width for cell in cells if c in cell) for c in range(columns)]
    pad, head, side = 6, 34, 90
    plot_w = plots[0].width + pad if plots else 0
    row_h = max(thumb_height, plots[0].height if plots else 0)
    width = side + sum(col_w) + pad * (columns + 1) + plot_w
    height = head + len(rows) * (row_h + pad) + pad
    sheet = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    x = side + pad
    for c in range(columns):
        out = next(cell[c][0] for cell in cells if c in cell)
        title, sub = (
            (first, "")
            if out.run is None
            else (out.run.label, f"{out.run.checkpoint} @ {out.run.strength:.2f}")
        )
        draw.text((x, 4), title, fill=(235, 235, 235), font=font)
        draw.text((x, 18), sub, fill=(160, 160, 170), font=font)
        x += col_w[c] + pad
    for r, cell in enumerate(cells):
        y = head + r * (row_h + pad)
        draw.text((pad, y + 4), f"image {r + 1}", fill=(235, 235, 235), font=font)
        draw.text((pad, y + 18), f"seed {result.seeds[r]}", fill=(160, 160, 170), font=font)
        x = side + pad
        for c in range(columns):
            if c in cell:
                out, small = cell[c]
                sheet.paste(small, (x, y))
                if out.skipped:
                    draw.text((x + 4, y + 4), "skipped", fill=(255, 80, 80), font=font)
            x += col_w[c] + pad
        if plots:
            sheet.paste(plots[r], (width - plot_w, y))
    return sheet


def _column(out: Any) -> int:
    return 0 if out.run is None else out.run.number
