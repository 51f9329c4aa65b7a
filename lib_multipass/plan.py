"""Expand a recipe into the concrete runs of a job: what each one loads, asks and really does."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .controlnet import units_of
from .detectors import what_from_name
from .fields import MAX_PIXELS, MAX_SIDE, SEP
from .geometry import FAMILY_SIDE, UNSIZED, Crop, Size, upscaled_size
from .recipe import BASE_INDEX, Problem, RecipeError, where_pass
from .schedule import StepCount, img2img_steps, least_steps, pass_strengths, txt2img_steps

MAX_RUNS = 256


@dataclass(frozen=True)
class JobContext:
    """What a recipe's passes inherit from the base generation."""

    width: int
    height: int
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "Euler a"
    scheduler: str = ""
    checkpoint: str = ""
    vae: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    step_mode: str = "proportional"
    has_job_mask: bool = False
    # the size the recipe's boxes are drawn on, where it differs from the base's (a recipe
    # run at another --size): boxes scale with the image, as masks do
    box_space: tuple[int, int] | None = None
    clip_skip: int = 1  # the WebUI's CLIP_stop_at_last_layers for the base generation
    subseed: int = -1  # the first image's variation seed (image i: + i), resolved
    subseed_strength: float = 0.0
    rng: str = "CPU"  # the WebUI's random number source, for the base and the passes
    image_rules: str = "A1111"  # whose rules headless images follow (fields.IMAGE_RULES)

    @property
    def boxes_drawn_on(self) -> tuple[int, int]:
        """The image size a pass's boxes are given in."""
        return self.box_space or (self.width, self.height)

    @classmethod
    def from_base(cls, base: Any, step_mode: str = "proportional") -> JobContext:
        """The context of a recipe's own base generation (headless runs)."""
        return cls(
            width=base.width,
            height=base.height,
            steps=base.steps,
            cfg_scale=base.cfg_scale,
            sampler=base.sampler,
            scheduler=base.scheduler,
            checkpoint=base.checkpoint,
            vae=base.vae,
            prompt=base.prompt,
            negative_prompt=base.negative_prompt,
            step_mode=step_mode,
            clip_skip=base.clip_skip,
            subseed=base.subseed,
            subseed_strength=base.subseed_strength,
            rng=base.rng,
            image_rules=base.image_rules,
        )


@dataclass(frozen=True)
class Run:
    """One img2img run of the job (a pass expands into one or more runs)."""

    number: int  # 1-based over the whole recipe
    pass_index: int  # 0-based index into recipe.passes
    repeat: int  # 0-based index among the pass's runs
    runs_in_pass: int
    label: str
    checkpoint: str
    vae: str
    text_encoders: tuple[str, ...]
    prompt: str
    negative_prompt: str
    sampler: str
    scheduler: str
    steps: int  # sampling steps asked for
    cfg_scale: float
    strength: float  # asked
    count: StepCount  # what really runs
    size_in: Size
    size: Size  # after the upscale; also the run's output size
    upscaler: str | None  # set on a pass's first run when it upscales first
    seed_delta: int | None  # added to each image's seed; None: a random seed
    region: str
    mask_source: str
    crops: tuple[Crop, ...] | None  # known crops; None where the mask comes at run time
    # a crop pass's prompts, one per crop (detection, box or area), the last repeating ([SEP])
    crop_prompts: tuple[str, ...] = ()
    crop_negatives: tuple[str, ...] = ()
    detector: str = ""
    detect_max: int = 0
    mask_split: bool = False
    clip_skip: int = 1  # resolved: the pass's own, or the base generation's
    tiles: Any = None  # a tile pass's layout (regions.tiles.TileLayout) on its canvas
    seams_count: StepCount | None = None  # a tile pass's seams fix: what its strength runs
    repeats: int = 1  # runs of each strength in a row (a strength's runs: repeat // repeats)
    converge_below: float = 0.0  # a strength's repeats stop for an image changed less than this
    controlnet: tuple[Any, ...] = ()  # the pass's ControlNet units (controlnet.ControlUnit)

    def steps_per_image(self) -> int | None:
        """Sampling steps this run takes on each image, where known before the job (every
        crop and tile counted); None where crops are found at run time."""
        if self.count.run == 0:
            return 0
        if self.tiles is not None:
            seams = len(self.tiles.seam_pieces)
            seam_steps = self.seams_count.run if self.seams_count is not None else 0
            return (self.tiles.tiles) * self.count.run + seams * seam_steps
        if self.region == "crop":
            return None if self.crops is None else len(self.crops) * self.count.run
        return self.count.run

    def prompts_for(self, crop: int) -> tuple[str, str]:
        """The prompt and negative prompt of crop `crop` (0-based) of this run."""
        pos = self.crop_prompts or (self.prompt,)
        neg = self.crop_negatives or (self.negative_prompt,)
        return pos[min(crop, len(pos) - 1)], neg[min(crop, len(neg) - 1)]


def counted(n: int, one: str, many: str | None = None) -> str:
    """'1 run', '2 runs': a count with its noun in the right number."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def split_prompts(text: str) -> list[str]:
    """One prompt per crop from a pass's prompt: parts between [SEP], trimmed."""
    return [part.strip() for part in text.split(SEP)]


def crop_prompts(mode: str, own: str, base: str) -> tuple[str, ...]:
    """Each crop's prompt, each part resolved by the prompt mode ({prompt} in every template)."""
    return tuple(resolve_prompt(mode, part, base) for part in split_prompts(own))


def resolve_prompt(mode: str, own: str, base: str) -> str:
    """A pass's prompt from its mode: keep, replace, append or template ({prompt} = base)."""
    if mode == "keep":
        return base
    if mode == "replace":
        return own
    if mode == "append":
        return f"{base}, {own}" if base and own else base or own
    if mode == "template":
        return own.replace("{prompt}", base)
    raise ValueError(f"prompt mode {mode!r} is not one of keep, replace, append, template")


def _seed_delta(p: Any, repeat: int) -> int | None:
    if p.seed == "same":
        return 0
    if p.seed == "offset":
        return p.seed_offset + repeat
    return None


CropFinder = Callable[[int, Any, Size, str], "tuple[Crop, ...] | None"]


def plan_recipe(
    recipe: Any,
    ctx: JobContext,
    *,
    family_of: Callable[[str], str] = lambda name: "sd1",
    find_crops: CropFinder | None = None,
) -> list[Run]:
    """The runs of a job, in order, with sizes, step counts and crops.

    `family_of` names a checkpoint's family (sd1, sd2, sdxl...) for automatic working sizes.
    `find_crops(pass_index, pass, size, family)` returns the crops it can know before the job
    runs (boxes, mask images), or None. Raises RecipeError for a job that cannot run.
    """
    runs, problems = plan_runs(recipe, ctx, family_of=family_of, find_crops=find_crops)
    if problems:
        raise RecipeError(problems)
    return runs


def base_run(ctx: JobContext) -> Run:
    """The base generation as a run, for the checks every run gets (its checkpoint, sampler...)."""
    return Run(
        number=0,
        pass_index=BASE_INDEX,
        repeat=0,
        runs_in_pass=1,
        label="base",
        checkpoint=ctx.checkpoint,
        vae=ctx.vae,
        text_encoders=(),
        prompt=ctx.prompt,
        negative_prompt=ctx.negative_prompt,
        sampler=ctx.sampler,
        scheduler=ctx.scheduler,
        steps=ctx.steps,
        cfg_scale=ctx.cfg_scale,
        strength=1.0,
        count=txt2img_steps(ctx.steps, ctx.sampler),
        size_in=(ctx.width, ctx.height),
        size=(ctx.width, ctx.height),
        upscaler=None,
        seed_delta=0,
        region="whole",
        mask_source="job",
        crops=None,
        clip_skip=ctx.clip_skip,
    )


def _short_run_problems(
    where: str,
    sampler: str,
    strengths: list[float],
    steps: int,
    mode: str,
    field: str = "denoising_strength",
) -> list[Problem]:
    """A strength at which `sampler` would run fewer steps than it may (least_steps: none for
    DDIM and PLMS at low strengths, under 3 for UniPC) is named before the job, with the least
    strength (to the field's 0.01) that runs enough at these steps."""
    least = least_steps(sampler)

    def enough(d: float) -> bool:
        return img2img_steps(d, steps, mode, sampler).run >= least

    short = [d for d in strengths if d and not enough(d)]
    if not short:
        return []
    need = next((k / 100 for k in range(1, 101) if enough(k / 100)), None)
    what = f"a strength of at least {need:.2f}" if need else f"more than {steps} steps"
    runs = f"fewer than {least} steps" if least > 1 else "no step"
    return [
        Problem(
            where,
            field,
            short[0],
            f"with sampler {sampler} at {steps} steps, {what} (below it {sampler} runs {runs}), "
            "or another sampler",
        )
    ]


def _boxes_outside(p: Any, base: Size) -> list[int]:
    """Numbers (from 1) of a pass's boxes that lie wholly outside the base image."""
    w, h = base
    return [k + 1 for k, (x1, y1, _x2, _y2) in enumerate(p.boxes) if x1 >= w or y1 >= h]


def plan_runs(
    recipe: Any,
    ctx: JobContext,
    *,
    family_of: Callable[[str], str] = lambda name: "sd1",
    find_crops: CropFinder | None = None,
) -> tuple[list[Run], list[Problem]]:
    """plan_recipe's runs and every problem found while planning (none raised)."""
    problems: list[Problem] = []
    runs: list[Run] = []
    size: Size = (ctx.width, ctx.height)
    least = least_steps(ctx.sampler)
    if txt2img_steps(ctx.steps, ctx.sampler).run < least:
        fewest = next(n for n in range(1, 1000) if txt2img_steps(n, ctx.sampler).run >= least)
        problems.append(
            Problem("base", "steps", ctx.steps, f"at least {fewest} with sampler {ctx.sampler}")
        )
    checkpoint, vae, text_encoders = ctx.checkpoint, ctx.vae, ()
    start, stop = chain_span(recipe)
    for i, p in enumerate(recipe.passes):
        if not p.enabled or i >= stop:
            continue
        where = where_pass(i)
        checkpoint = p.checkpoint or checkpoint
        vae = p.vae or vae
        text_encoders = p.text_encoders or text_encoders
        if i < start:  # ran before the job's images were made: only what later passes inherit
            continue
        size_in = size
        size = upscaled_size(size, p.upscale_by)
        if max(size) > MAX_SIDE or size[0] * size[1] > MAX_PIXELS:
            problems.append(
                Problem(
                    where,
                    "upscale_by",
                    p.upscale_by,
                    f"a factor that keeps the image within {MAX_SIDE} px a side and "
                    f"{MAX_PIXELS // 1_000_000} Mpx (it would be {size[0]}x{size[1]})",
                )
            )
            break
        if p.region == "crop" and p.mask_source == "job" and not ctx.has_job_mask:
            problems.append(
                Problem(
                    where,
                    "mask_source",
                    p.mask_source,
                    "'image', 'boxes' or 'detect' here: this job has no inpaint mask of its "
                    "own (img2img's in the WebUI, --mask headless)",
                )
            )
        if p.region == "crop" and p.mask_source == "image" and not p.mask_image:
            problems.append(
                Problem(where, "mask_image", p.mask_image, "a mask image for mask source 'image'")
            )
        drawn = ctx.boxes_drawn_on
        outside = _boxes_outside(p, drawn) if p.region == "crop" else []
        if p.mask_source == "boxes" and outside:
            which = ", ".join(str(k) for k in outside)
            problems.append(
                Problem(
                    where,
                    "boxes",
                    [list(p.boxes[k - 1]) for k in outside],
                    f"boxes that overlap the {drawn[0]}x{drawn[1]} base image (box {which} "
                    "lies wholly outside it: nothing there to inpaint)",
                )
            )
        steps = p.steps or ctx.steps
        strengths = pass_strengths(p)
        sampler = p.sampler or ctx.sampler
        problems += _short_run_problems(where, sampler, strengths, steps, ctx.step_mode)
        if p.region == "tiles" and p.seams_fix != "none":
            seams = [p.seams_fix_strength]
            problems += _short_run_problems(
                where, sampler, seams, steps, ctx.step_mode, "seams_fix_strength"
            )
        family = family_of(checkpoint)
        if p.region == "crop" and not p.working_width and family not in FAMILY_SIDE:
            known = ", ".join(FAMILY_SIDE)
            what = _family_words(family)
            problems.append(
                Problem(
                    where,
                    "working_width",
                    p.working_width,
                    f"a working width and height: checkpoint {checkpoint or '(current)'!r} is "
                    f"{what}, and automatic working sizes are known for {known}",
                )
            )
            family = "sd1"  # plan on, so every other problem is found too
        crops = None
        if p.region == "crop" and find_crops is not None:
            crops = find_crops(i, p, size, family)
        tiles = _tiles(p, i, size, family, checkpoint, problems)
        name = p.name or f"pass {i + 1}"
        for k, strength in enumerate(strengths):
            label = name if len(strengths) == 1 else f"{name} ({k + 1}/{len(strengths)})"
            runs.append(
                Run(
                    number=len(runs) + 1,
                    pass_index=i,
                    repeat=k,
                    runs_in_pass=len(strengths),
                    label=label,
                    checkpoint=checkpoint,
                    vae=vae,
                    text_encoders=text_encoders,
                    prompt=resolve_prompt(p.prompt_mode, p.prompt, ctx.prompt),
                    negative_prompt=resolve_prompt(
                        p.negative_prompt_mode, p.negative_prompt, ctx.negative_prompt
                    ),
                    crop_prompts=crop_prompts(p.prompt_mode, p.prompt, ctx.prompt),
                    crop_negatives=crop_prompts(
                        p.negative_prompt_mode, p.negative_prompt, ctx.negative_prompt
                    ),
                    sampler=sampler,
                    scheduler=p.scheduler or ctx.scheduler,
                    steps=steps,
                    cfg_scale=p.cfg_scale or ctx.cfg_scale,
                    strength=strength,
                    count=img2img_steps(strength, steps, ctx.step_mode, sampler),
                    size_in=size_in if k == 0 else size,
                    size=size,
                    upscaler=p.upscaler if k == 0 and size != size_in else None,
                    seed_delta=_seed_delta(p, k),
                    region=p.region,
                    mask_source=p.mask_source,
                    crops=crops,
                    detector=p.detector if p.mask_source == "detect" else "",
                    detect_max=p.detect_max,
                    mask_split=p.mask_split and p.mask_source in ("job", "image"),
                    tiles=tiles,
                    seams_count=img2img_steps(p.seams_fix_strength, steps, ctx.step_mode, sampler)
                    if tiles is not None and tiles.seam_pieces
                    else None,
                    clip_skip=p.clip_skip or ctx.clip_skip,
                    repeats=p.repeats,
                    converge_below=p.converge_below,
                    controlnet=units_of(p),
                )
            )
    if len(runs) > MAX_RUNS:
        problems.append(
            Problem("recipe", "passes", f"{len(runs)} runs", f"at most {MAX_RUNS} runs in all")
        )
    return runs, problems


def _family_words(family: str) -> str:
    """How a refusal names a checkpoint's family Multipass cannot size, with why."""
    if not family:
        return "of no family Multipass knows"
    why = UNSIZED.get(family)
    return f"a {family} checkpoint" + (f", {why}" if why else "")


def chain_span(recipe: Any) -> tuple[int, int]:
    """The passes a job runs, as a range of pass indexes [start, stop): from its `from_pass`
    to its `stop_after` (or the last pass)."""
    n = len(recipe.passes)
    start = getattr(recipe, "from_pass", 1) - 1
    stop = getattr(recipe, "stop_after", 0) or n
    return start, min(stop, n)


def chain_note(recipe: Any) -> str:
    """What a plan says of a chain started later or stopped early ('' for a whole chain)."""
    n = len(recipe.passes)
    parts = []
    if recipe.from_pass > 1:
        k = recipe.from_pass
        parts.append(
            f"starts at pass {k}: the job's images are pass {k - 1}'s output (--init), and the "
            "passes before it only give what they set (checkpoint, VAE)"
        )
    if recipe.stop_after and recipe.stop_after < n:
        k = recipe.stop_after
        parts.append(
            f"stops after pass {k} of {n}: continue a picked image with --from-pass {k + 1}"
        )
    return "chain: " + "; ".join(parts) if parts else ""


def _tiles(
    p: Any, index: int, size: Size, family: str, checkpoint: str, problems: list[Problem]
) -> Any:
    """A tile pass's layout on its canvas, or None (with the problem said) where it has none."""
    if p.region != "tiles":
        return None
    from .regions.tiles import layout

    where = where_pass(index)
    if not p.tile_width and family not in FAMILY_SIDE:
        known = ", ".join(FAMILY_SIDE)
        what = _family_words(family)
        problems.append(
            Problem(
                where,
                "tile_width",
                p.tile_width,
                f"a tile width and height: checkpoint {checkpoint or '(current)'!r} is {what}, "
                f"and automatic tile sizes are known for {known}",
            )
        )
        return None
    try:
        return layout(p, size, family)
    except ValueError as e:
        problems.append(Problem(where, "tile_overlap", p.tile_overlap, str(e)))
        return None


def _box_text(crops: tuple[Crop, ...] | None, run: Run, batch_size: int = 1) -> str:
    if run.tiles is not None:
        return f"tiles: {run.tiles.describe()}, {_calls(run.tiles, batch_size)}"
    if run.region != "crop":
        return "whole image"
    if run.mask_source == "detect":
        what = what_from_name(run.detector)
        up_to = f"up to {run.detect_max}" if run.detect_max else "every one of the"
        return f"detect: {up_to} {what} (found at run time)"
    if crops is None:
        each = ", one per area" if run.mask_split else ""
        return f"crop from {run.mask_source} mask{each}"

    if not crops:
        return "crop: empty mask, skipped"
    parts = []
    for c in crops:
        x1, y1, x2, y2 = c.box
        parts.append(f"{x2 - x1}x{y2 - y1}@{x1},{y1}->{c.working[0]}x{c.working[1]}")
    return "crop " + " ".join(parts)


def _calls(tiles: Any, batch_size: int) -> str:
    """How many sampling calls one image's tiles take at a batch size: '4 calls of 4'."""
    sizes: list[int] = []
    for round_ in tiles.rounds:
        groups: dict[tuple, int] = {}
        for piece in round_:
            key = (piece.working, piece.seams)
            groups[key] = groups.get(key, 0) + 1
        for n in groups.values():
            sizes += [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    if len(set(sizes)) == 1:
        return f"{counted(len(sizes), 'call')} of {sizes[0]}"
    return f"{counted(len(sizes), 'call')} of up to {max(sizes)}"


def checkpoint_loads(runs: list[Run], start: str) -> int:
    """Checkpoint switches of a job run pass by pass, after the base on `start`."""
    names = [start, *(r.checkpoint for r in runs)]
    return sum(1 for a, b in itertools.pairwise(names) if a != b)


def format_plan(runs: list[Run], ctx: JobContext, batch_size: int = 1) -> str:
    """The plan as a text table: pass, checkpoint, strength asked and real, steps, sizes, crops
    and tiles (with the sampling calls they take at `batch_size`)."""
    header = ("run", "pass", "checkpoint", "asked", "acts as", "steps", "size", "region")
    rows = [header]
    for r in runs:
        size = f"{r.size_in[0]}x{r.size_in[1]}"
        if r.size != r.size_in:
            size += f" -> {r.size[0]}x{r.size[1]} ({r.upscaler})"
        steps = "-" if r.count.run == 0 else f"{r.count.run}/{r.count.schedule}"
        if r.count.run and r.tiles is not None:
            steps += " each"
            if r.seams_count is not None:
                steps += f", seams {r.seams_count.run}/{r.seams_count.schedule}"
        rows.append(
            (
                str(r.number),
                r.label,
                r.checkpoint or "(current)",
                f"{r.strength:.3g}",
                f"{r.count.strength:.3f}",
                steps,
                size,
                _box_text(r.crops, r, batch_size),
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    base = (
        f"base: {ctx.width}x{ctx.height}, {ctx.steps} steps, "
        f"checkpoint {ctx.checkpoint or '(current)'}"
    )
    mode = "steps: " + (
        "proportional (a strength d at N steps runs int(d*N)+1 of N)"
        if ctx.step_mode == "proportional"
        else "fixed (exactly N steps over a longer schedule)"
    )
    known = [r.steps_per_image() for r in runs]
    total = sum(k if k is not None else r.count.run for k, r in zip(known, runs, strict=True))
    at_least = "at least " if None in known else ""
    settles = any(r.converge_below for r in runs)
    if settles:  # repeats may stop early: the counts are the most a job can take
        at_least = "at most " if None not in known else ""
    loads = checkpoint_loads(runs, ctx.checkpoint)
    up_to = "up to " if settles else ""
    foot = [
        f"{up_to}{counted(len(runs), 'run')}, {at_least}{counted(total, 'sampling step')} per "
        f"image; {counted(loads, 'checkpoint switch', 'checkpoint switches')} after the base, "
        "however many images the job has"
    ]
    foot += _converge_notes(runs)
    for r in runs:
        for c in r.crops or ():
            if c.scale < 1:
                foot.append(
                    f"note: {r.label} works at {c.scale:.2f}x the crop's resolution: the crop is "
                    "larger than its working size, so it loses detail"
                )
    return "\n".join([base, mode, "", *lines, "", *foot])


def _converge_notes(runs: list[Run]) -> list[str]:
    """One line per pass whose repeats may stop early: 'pass 1: up to 8 runs; ...'."""
    out = []
    for r in runs:
        if r.converge_below and r.repeat == 0:
            name = r.label.rsplit(" (", 1)[0] if r.runs_in_pass > 1 else r.label
            out.append(
                f"{name}: up to {counted(r.runs_in_pass, 'run')}; each strength's "
                f"{r.repeats} repeats stop early for an image once a run changes it by less "
                f"than {r.converge_below:g} (mean of 0-255 on a 64x64 thumbnail)"
            )
    return out


def plan_as_dicts(runs: list[Run]) -> list[Mapping[str, Any]]:
    """The plan as JSON-ready dicts (for `multipass plan --json` and the API)."""
    out = []
    for r in runs:
        out.append(
            {
                "run": r.number,
                "pass": r.pass_index + 1,
                "label": r.label,
                "checkpoint": r.checkpoint,
                "strength": r.strength,
                "real_strength": r.count.strength,
                "steps_run": r.count.run,
                "schedule_steps": r.count.schedule,
                "size_in": list(r.size_in),
                "size_out": list(r.size),
                "upscaler": r.upscaler,
                "seed_delta": r.seed_delta,
                "region": r.region,
                "crops": None
                if r.crops is None
                else [{"box": list(c.box), "working": list(c.working)} for c in r.crops],
                "steps_per_image": r.steps_per_image(),
                "tiles": None if r.tiles is None else _tiles_dict(r),
                "converge_below": r.converge_below,
            }
        )
    return out


def _tiles_dict(r: Run) -> dict[str, Any]:
    t = r.tiles
    out: dict[str, Any] = {
        "style": t.style,
        "tile": list(t.tile),
        "working": list(t.working),
        "overlap": t.overlap,
        "columns": t.cols,
        "rows": t.rows,
        "tiles": t.tiles,
        "rounds": len(t.rounds),
        "seams_fix": t.seams_fix,
        "seams_pieces": len(t.seam_pieces),
    }
    if r.seams_count is not None:
        out["seams_steps_run"] = r.seams_count.run
    return out
