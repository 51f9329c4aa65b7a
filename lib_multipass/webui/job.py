"""The WebUI job flow: validate before anything runs, run the passes over the whole job after
the base generation, put the finished images in the gallery and save them, each with an
infotext that says what really ran on it.

Per-job state lives in a dict keyed by the processing object's id, never on the Script
instance: XYZ plot copies `p` for every cell and each copy is its own job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..engine import Job, JobResult, Progress, run_job
from ..infotext import KEY_CHANGES_ALL, KEY_RESULT, params_to_text, result_params
from ..plan import JobContext
from ..recipe import Problem, RecipeError, check_recipe, parse_json_text
from ..regions import Regions
from . import compat, settings
from .backend import WebUIBackend, WebUIControl

log = logging.getLogger("multipass")
PREFIX = "Multipass"


@dataclass
class JobState:
    """What `process` learns that `postprocess` needs."""

    recipe: Any
    save_samples: bool
    save_grid: bool
    job_mask: Image.Image | None = None
    runs: list[Any] = dataclasses.field(default_factory=list)  # plan.Run, as validated
    masks: dict[int, Any] = dataclasses.field(default_factory=dict)  # the passes' mask images
    work: tuple[int, int] = (0, 0)  # the passes' nested jobs and steps, foreseen at `process`
    ahead: tuple[int, int] = (0, 0)  # what of them the host's bar counts from the first batch


_jobs: dict[int, JobState] = {}


def check_args(enabled: Any, recipe: Any) -> tuple[Any | None, list[Problem]]:
    """The recipe in the script's args (None when Multipass is off) and every problem with it.

    The args are the UI's (enable switch, recipe dict) or an API request's, in the same shape;
    a recipe given as JSON text is read as recipe files are (duplicate keys, huge numbers).
    """
    if not isinstance(enabled, bool):
        return None, [Problem("script args", "enabled", enabled, "true or false")]
    if not enabled:
        return None, []
    if recipe is None:
        recipe = {}
    if isinstance(recipe, str):
        try:
            recipe = parse_json_text(recipe, "recipe")
        except RecipeError as e:
            return None, e.problems
    return check_recipe(recipe, allow_base=False)


def parse_args(enabled: Any, recipe: Any) -> Any | None:
    """The recipe in the script's args, or None when Multipass is off; RecipeError if bad."""
    parsed, problems = check_args(enabled, recipe)
    if problems:
        raise RecipeError(problems)
    return parsed


def step_mode() -> str:
    """The host's img2img step arithmetic: 'fixed' when its fix-steps option is on."""
    opts = compat.host_module("modules.shared").opts
    return "fixed" if getattr(opts, "img2img_fix_steps", False) else "proportional"


def context(p: Any, width: int, height: int, has_mask: bool) -> JobContext:
    """What the passes inherit from the job's own generation."""
    backend = WebUIBackend()
    return JobContext(
        width=width,
        height=height,
        steps=int(p.steps),
        cfg_scale=float(p.cfg_scale),
        sampler=p.sampler_name or "",
        scheduler=getattr(p, "scheduler", None) or "",
        checkpoint=backend.current_checkpoint(),
        prompt=getattr(p, "main_prompt", None) or p.prompt,
        negative_prompt=getattr(p, "main_negative_prompt", None) or p.negative_prompt,
        step_mode=step_mode(),
        has_job_mask=has_mask,
        clip_skip=compat.clip_skip(),
    )


def final_size(p: Any) -> tuple[int, int]:
    """The size of the job's images before Multipass (after hires fix, if it is on)."""
    if getattr(p, "enable_hr", False):
        scale = float(getattr(p, "hr_scale", 1) or 1)
        w = int(getattr(p, "hr_resize_x", 0) or 0) or int(p.width * scale)
        h = int(getattr(p, "hr_resize_y", 0) or 0) or int(p.height * scale)
        return w // 8 * 8, h // 8 * 8
    return int(p.width), int(p.height)


def validate(
    enabled: Any,
    recipe_arg: Any,
    size: tuple[int, int],
    has_mask: bool,
    p: Any,
    mask_of: Callable[[], Image.Image | None] = lambda: None,
) -> tuple[Any, list[Any], dict[int, Any]]:
    """The recipe, its runs and its passes' mask images, checked against the host's lists and
    the job's inpaint mask (`mask_of`, read only when a recipe with enabled passes has one);
    raises RecipeError naming every problem. A recipe with no enabled pass is (None, [], {}):
    Multipass is off."""
    from ..preflight import prepare

    recipe, problems = check_args(enabled, recipe_arg)
    if recipe is None or not any(p.enabled for p in recipe.passes):
        if problems:
            raise RecipeError(problems)
        return None, [], {}
    drawn = size
    if recipe.from_pass > 1:  # a chain continued from the image sent to img2img: its size
        size = sent_size(p) or size
    ctx = drawn_on(context(p, *size, has_mask=has_mask), drawn)
    mask = mask_of() if has_mask else None
    job = Job(ctx, images=[], seeds=[], job_mask=mask, detectors=compat.detectors())
    runs, masks = prepare(recipe, job, WebUIBackend(), problems)
    return recipe, list(runs), dict(masks or {})


def drawn_on(ctx: JobContext, drawn: tuple[int, int]) -> JobContext:
    """A continued chain's context: its boxes are drawn on the chain's base image (the job's
    own size, pasted from the picked image's infotext), and scale to the image sent, as they
    scale with the image in the whole chain."""
    if drawn == (ctx.width, ctx.height):
        return ctx
    return dataclasses.replace(ctx, box_space=drawn)


def sent_size(p: Any) -> tuple[int, int] | None:
    """The size of the first image sent to img2img (a PIL image, or an API request's base64
    data), or None where there is none (txt2img) or it cannot be read (the host says so)."""
    images = getattr(p, "init_images", None)
    if not isinstance(images, (list, tuple)) or not images:
        return None
    first = images[0]
    if isinstance(first, Image.Image):
        return first.size
    if isinstance(first, str):
        from ..imaging import open_mask_image

        try:
            return open_mask_image(first).size
        except ValueError:
            return None
    return None


def continued_images(p: Any, count: int) -> list[Image.Image] | None:
    """The images a continued chain starts from in img2img: the ones sent there, as they
    are (the host's own img2img of them is not a pass of the chain), one per job image."""
    sent = getattr(p, "init_images", None)
    if not isinstance(sent, (list, tuple)) or not sent:
        return None
    return [sent[i % len(sent)].convert("RGB") for i in range(count)]


@dataclass
class RequestView:
    """The fields of an API request body that a recipe's check needs, shaped like `p`."""

    body: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        defaults = {
            "steps": 20,
            "cfg_scale": 7.0,
            "sampler_name": "Euler a",
            "prompt": "",
            "negative_prompt": "",
            "width": 512,
            "height": 512,
        }
        if name in defaults:
            return self.body.get(name, defaults[name]) or defaults[name]
        return self.body.get(name)


def validate_request(enabled: Any, recipe_arg: Any, body: dict[str, Any]) -> None:
    """The API's check of a request body (see api.RecipeCheck)."""
    view = RequestView(body)
    has_mask = bool(body.get("mask"))
    validate(enabled, recipe_arg, final_size(view), has_mask, view, lambda: _request_mask(body))


def _request_mask(body: dict[str, Any]) -> Image.Image | None:
    """An API request's inpaint mask (base64, with or without a data: prefix), as the job
    will see it; None when it cannot be read (the host answers that itself)."""
    from PIL import ImageOps

    from ..imaging import open_mask_image

    try:
        mask = open_mask_image(str(body["mask"])).convert("L")
    except ValueError:
        return None
    mask = ImageOps.invert(mask) if body.get("inpainting_mask_invert") else mask
    return mask if mask.getbbox() is not None else None


def job_mask(p: Any) -> Image.Image | None:
    """The job's own inpaint mask, as the user meant it (inverted for "inpaint not masked")."""
    mask = getattr(p, "image_mask", None)
    if mask is None:
        return None
    from PIL import ImageOps

    mask = mask.convert("L")
    mask = ImageOps.invert(mask) if getattr(p, "inpainting_mask_invert", 0) else mask
    return mask if mask.getbbox() is not None else None  # all black: nothing to inpaint


def process(p: Any, enabled: Any, recipe_arg: Any) -> None:
    """Check the recipe and keep the host from saving base images.

    Runs in the `process` hook: after the job's args are final (XYZ plot sets them per cell),
    before the first image is sampled. A bad recipe stops the job before anything is
    generated, with the reason in the generation info; it never half-runs.
    """
    _jobs.pop(id(p), None)
    mask = job_mask(p)
    try:
        recipe, runs, masks = validate(
            enabled, recipe_arg, final_size(p), mask is not None, p, lambda: mask
        )
        if recipe is None:
            return
    except RecipeError as e:
        message = f"{PREFIX}: nothing was generated: {e}"
        log.error(message)
        if hasattr(p, "comment"):
            p.comment(message)
        compat.host_module("modules.shared").state.interrupted = True
        return
    _jobs[id(p)] = state = JobState(
        recipe,
        save_samples=not p.do_not_save_samples,
        save_grid=not p.do_not_save_grid,
        job_mask=mask,
        runs=runs,
        masks=masks,
    )
    with contextlib.suppress(Exception):  # a count the bar cannot know is counted at the passes
        state.work = foreseen_work(p, state)
    # the recipe goes into each image's infotext after the passes, saying what really ran
    p.do_not_save_samples = True  # the finished images are saved after the passes
    p.do_not_save_grid = True


def foreseen_work(p: Any, state: JobState) -> tuple[int, int]:
    """The passes' nested jobs and sampling steps over the job's images, as `postprocess` will
    count them, foreseen before the first image (for the host's bar)."""
    size = final_size(p)
    if state.recipe.from_pass > 1:
        size = sent_size(p) or size
    ctx = drawn_on(context(p, *size, has_mask=state.job_mask is not None), final_size(p))
    regions = Regions(
        state.recipe, masks=state.masks, job_mask=state.job_mask, boxes_drawn_on=ctx.boxes_drawn_on
    )
    backend = WebUIBackend()
    batch = max(1, int(getattr(p, "batch_size", 1) or 1))
    images = batch * max(1, int(getattr(p, "n_iter", 1) or 1))
    return nested_work(
        state.runs,
        lambda run: regions.planned(run, backend.checkpoint_family(run.checkpoint)),
        images,
        batch,
    )


def process_batch(p: Any, batch_number: int) -> None:
    """The job's first batch: the host's bar counts the passes from here on, so it never runs
    back when they start (the host has set its own count by now)."""
    state = _jobs.get(id(p))
    if batch_number != 0:
        return
    if state is None:  # no passes here: a count made for them at an earlier job is let go
        compat.count_ahead(0, 0, compat.job_sampling_steps(p), compat.job_own_jobs(p))
        return
    if state.ahead != (0, 0):
        return
    state.ahead = compat.count_ahead(
        *state.work, compat.job_sampling_steps(p), compat.job_own_jobs(p)
    )


def nested_work(
    runs: list[Any], planned: Callable[[Any], Any], images: int, batch: int
) -> tuple[int, int]:
    """How many nested jobs the passes will run over `images` images in batches of `batch`,
    and how many sampling steps those jobs take, as the engine and backend run them: each
    round's pieces (`planned(run)`, the engine's own plan) grouped by how they are sampled, in
    jobs of the batch size; a run with ControlNet units one job a piece. A detect pass counts
    one crop an image until its finds are known (the count then grows as jobs come)."""
    jobs = steps = 0
    batches = [min(batch, images - k) for k in range(0, images, max(1, batch))]
    for run in runs:
        if run.count.run == 0:
            continue
        rounds = planned(run)
        alone = bool(run.controlnet) or rounds is None  # detections: a mask each
        for k in batches:
            for pieces in rounds or [[None]]:
                groups: dict[Any, int] = {}
                for piece in pieces:
                    key = (piece.working, piece.seams) if piece is not None else None
                    groups[key] = groups.get(key, 0) + 1
                for key, n in groups.items():
                    seams = key is not None and key[1]
                    count = run.seams_count if seams and run.seams_count else run.count
                    made = n * k if alone else math.ceil(n * k / batch)
                    jobs, steps = jobs + made, steps + made * count.run
    return jobs, steps


_last_images: dict[str, Image.Image] = {}  # per tab: the last image a job made, for previews


def tab_of(p: Any) -> str:
    return "img2img" if hasattr(p, "init_images") else "txt2img"


def postprocess(p: Any, processed: Any) -> JobResult | None:
    """Run the passes over every image of the job, then save and show the finished ones."""
    state = _jobs.pop(id(p), None)
    first_image = getattr(processed, "index_of_first_image", 0)
    if len(processed.images) > first_image:
        _last_images[tab_of(p)] = processed.images[first_image]
    if state is None:
        return None
    shared = compat.host_module("modules.shared")
    first = getattr(processed, "index_of_first_image", 0)
    seeds = list(getattr(processed, "all_seeds", None) or [processed.seed])
    images = processed.images[first : first + len(seeds)]
    if not images:
        return None
    seeds = seeds[: len(images)]
    drawn = images[0].size
    if state.recipe.from_pass > 1:
        images = continued_images(p, len(images)) or images
    ctx = drawn_on(context(p, *images[0].size, has_mask=state.job_mask is not None), drawn)
    prompts = list(getattr(processed, "all_prompts", None) or [])[: len(images)]
    negatives = list(getattr(processed, "all_negative_prompts", None) or [])[: len(images)]
    job = Job(
        ctx,
        images=images,
        seeds=seeds,
        job_mask=state.job_mask,
        prompts=prompts if len(prompts) == len(images) else None,
        negative_prompts=negatives if len(negatives) == len(images) else None,
        batch_size=max(1, int(getattr(p, "batch_size", 1) or 1)),  # as the job's own batches
        detectors=compat.detectors(),
    )
    scripts = compat.job_scripts(p, settings.pass_scripts())
    backend = WebUIBackend(p.outpath_samples, p.outpath_grids, compat.inherited(p), scripts)
    regions = Regions(
        state.recipe,
        masks=state.masks,
        job_mask=state.job_mask,
        boxes_drawn_on=ctx.boxes_drawn_on,
    )

    def planned(run: Any) -> Any:
        return regions.planned(run, backend.checkpoint_family(run.checkpoint))

    work = nested_work(state.runs, planned, len(images), job.batch_size)
    bar = compat.HostProgress(*work, ahead=state.ahead)

    def progress(pr: Progress) -> None:
        which = f"image {pr.image + 1}"
        if pr.batch > 1:  # sampled together: the job's batch
            which = f"images {pr.image + 1}-{pr.image + pr.batch}"
        shared.state.textinfo = f"{PREFIX}: {pr.label}, {which} of {pr.images}"

    held = getattr(p, "sd_model", None)
    try:
        # the job keeps the model it made its images with, and its sampler does too; let go
        # of both, so a switch never holds two models (Forge frees the old one before loading
        # the next); the host closes the job's sampler after the passes anyway
        _set_model(p, None)
        with contextlib.suppress(AttributeError):
            p.sampler = None
        del held
        result = run_job(state.recipe, job, backend, control=WebUIControl(), progress=progress)
    except Exception as e:  # the passes could not start: the images are kept and say so
        log.exception("%s: the passes could not start", PREFIX)
        result = JobResult.not_started(images, seeds, e)
    finally:
        backend.close()
        bar.finish()
        _set_model(p, getattr(shared, "sd_model", None))

    if not result.complete:
        message = f"{PREFIX}: {result.account()}"
        log.warning(message)
        if hasattr(p, "comment"):
            p.comment(message)
        comments = getattr(processed, "comments", None)
        if isinstance(comments, str):
            processed.comments = (comments + "\n" + message).strip()
    for i, image in enumerate(result.images):
        processed.images[first + i] = image
    if result.images:
        _last_images[tab_of(p)] = result.images[0]
    base_infos = list(getattr(processed, "infotexts", None) or [])  # as the base images had
    _tell(processed, state, result, first)
    _save(p, processed, state, result, first, base_infos)
    return result


def preview_detections(
    values: dict[str, Any], image: Image.Image | None, tab: str = "txt2img"
) -> tuple[Image.Image | None, str]:
    """What a pass's detector finds on `image` (else the tab's last image), drawn: the ones it
    would inpaint green and numbered in its order, the others red; with a one-line summary."""
    from PIL import ImageDraw

    from ..detectors import how_many
    from ..detectors.select import confident_count, select_for
    from ..recipe import parse_pass

    image = image if image is not None else _last_images.get(tab)
    if image is None:
        return None, "No image yet: make one, or drop one above."
    try:
        p = parse_pass(values)
        detector = compat.detectors().get(p.detector)
    except (RecipeError, LookupError) as e:
        return None, str(e)
    except Exception as e:  # a model file or library that does not load: said, as a job says it
        log.exception("%s: detector %s does not load", PREFIX, values.get("detector"))
        return None, f"{values.get('detector')} does not load: {e}"

    image = image.convert("RGB")
    try:
        found = detector.detect(image)
    except Exception as e:  # a broken model file or library: said here, as a job would say it
        log.exception("%s: detector %s failed", PREFIX, p.detector)
        return None, f"{p.detector} failed: {e}"
    confident = confident_count(p, found)
    chosen = select_for(p, found, image.size)
    drawn = image.copy()
    pen = ImageDraw.Draw(drawn)
    width = max(2, image.width // 256)
    for d in found:
        if d not in chosen:
            pen.rectangle([d.box[0], d.box[1], d.box[2] - 1, d.box[3] - 1], outline="red", width=1)
            label(drawn, (d.box[0] + 2, d.box[1] + 2), f"{d.score:.2f}", (255, 70, 70))
    for k, d in enumerate(chosen):
        box = [d.box[0], d.box[1], d.box[2] - 1, d.box[3] - 1]
        pen.rectangle(box, outline=(40, 220, 90), width=width)
        label(drawn, (d.box[0] + 3, d.box[1] + 3), f"{k + 1}: {d.score:.2f}", (40, 220, 90))
    unsure = len(found) - confident
    text = (
        f"{p.detector}: {how_many(confident, detector.what)} found"
        + (f" ({unsure} less sure than {p.detect_threshold:g}, in red)" if unsure else "")
        + f", {len(chosen)} would be inpainted (green, in order)"
    )
    compat.ensure_image_folder()
    return drawn, text


def label_size(image: Image.Image) -> int:
    """The text height of a preview's labels: readable on the preview as the UI shows it
    (a 1024 px image shrunk to half a column still shows 16 px text as 8)."""
    return max(16, image.height // 32)


def label(image: Image.Image, xy: tuple[int, int], text: str, colour: tuple[int, ...]) -> None:
    """Draw `text` at `xy` in `colour` on a dark box, label_size() pixels tall (Pillow 10.1+
    sizes its own font; older Pillow, as A1111 pins 9.5, gets its bitmap font scaled up)."""
    from PIL import ImageDraw, ImageFont

    size = label_size(image)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: an 11 px bitmap font only
        font = None
    if font is None:
        small = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text)
        tile = Image.new("RGB", (small[2] + 2, small[3] + 2), (0, 0, 0))
        ImageDraw.Draw(tile).text((1, 0), text, fill=colour)
        scale = size / tile.height
        tile = tile.resize((round(tile.width * scale), size), Image.NEAREST)
        image.paste(tile, xy)
        return
    pen = ImageDraw.Draw(image)
    left, top, right, bottom = pen.textbbox(xy, text, font=font)
    pen.rectangle([left - 2, top - 2, right + 2, bottom + 2], fill=(0, 0, 0))
    pen.text(xy, text, fill=colour, font=font)


def _set_model(p: Any, model: Any) -> None:
    """p.sd_model where it is the job's own attribute (Forge); A1111's is a read-only view."""
    with contextlib.suppress(AttributeError):
        p.sd_model = model


def with_params(infotext: str, params: dict[str, str]) -> str:
    """An infotext with items added to its parameters line (its last line), quoted as the
    WebUI quotes them."""
    if not infotext:
        return infotext
    return f"{infotext}, {params_to_text(params)}" if infotext.strip() else infotext


def _tell(processed: Any, state: JobState, result: JobResult, first: int) -> None:
    """Each image's infotext gets the passes that ran on it and its result; the job's result
    goes where API clients read it (`info.extra_generation_params`, from Processed.js())."""
    infotexts = list(getattr(processed, "infotexts", None) or [])
    for i in range(len(result.images)):
        account = result.image_account(i)
        params = result_params(
            state.recipe,
            account.passes_ran,
            account.text(),
            dict(account.found),
            dict(account.changes),
        )
        if first + i < len(infotexts):
            infotexts[first + i] = with_params(infotexts[first + i], params)
    if infotexts:
        if first > 0:
            infotexts[0] = infotexts[first]  # the grid's, as the host writes it
        processed.infotexts = infotexts
        processed.info = infotexts[0]
    # a new dict: p's is shared with every XYZ cell's copy of p
    extra = dict(getattr(processed, "extra_generation_params", None) or {})
    extra[KEY_RESULT] = result.summary()
    if any(o.change is not None for outs in result.outputs for o in outs):
        # each image's change per run, 0-255 (infotext has them too, per pass of several runs)
        extra[KEY_CHANGES_ALL] = [
            [None if o.change is None else round(o.change, 3) for o in outs if o.run is not None]
            for outs in result.outputs
        ]
    processed.extra_generation_params = extra


def _save(
    p: Any,
    processed: Any,
    state: JobState,
    result: JobResult,
    first: int,
    base_infos: list[str] | None = None,
) -> None:
    """Save each finished image; with "save intermediates" on, first the base and each pass's
    image before it, in the order they were made (so their file numbers are in that order),
    each with the infotext of what had run on it by then."""
    images = compat.host_module("modules.images")
    opts = compat.host_module("modules.shared").opts
    infotexts = list(getattr(processed, "infotexts", None) or [])
    fmt = getattr(opts, "samples_format", "png")
    saved: list[str | None] = [None] * len(result.images)
    for i, image in enumerate(result.images):
        info = infotexts[first + i] if first + i < len(infotexts) else processed.info
        seed = result.seeds[i]
        prompt = processed.all_prompts[i] if getattr(processed, "all_prompts", None) else p.prompt
        if state.save_samples and getattr(opts, "multipass_save_intermediates", False):
            base_info = (
                (base_infos or infotexts)[first + i]
                if first + i < len(base_infos or infotexts)
                else info
            )
            for k, out in enumerate(result.outputs[i][:-1]):
                suffix = "-multipass-base" if out.run is None else f"-multipass-{k}"
                images.save_image(
                    out.image,
                    p.outpath_samples,
                    "",
                    seed,
                    prompt,
                    fmt,
                    info=_intermediate_info(state.recipe, base_info, result.outputs[i][: k + 1]),
                    p=p,
                    suffix=suffix,
                )
        if state.save_samples:
            done = images.save_image(
                image, p.outpath_samples, "", seed, prompt, fmt, info=info, p=p
            )
            saved[i] = done[0] if isinstance(done, tuple) and done else None
    _grid(p, processed, state, result, first, infotexts)
    _extras(processed, state, result, first, saved)


def _intermediate_info(recipe: Any, base_info: str, outputs: list[Any]) -> str:
    """The infotext of an intermediate image: the base's own, with the passes that had run on
    it by then and a result saying it is one (never the finished image's 'complete')."""
    runs = [o.run for o in outputs if o.run is not None and not o.skipped]
    if not runs:
        return base_info
    ran = sorted({r.pass_index for r in runs})
    text = f"intermediate, after pass {runs[-1].pass_index + 1} ({runs[-1].label})"
    return with_params(base_info, result_params(recipe, ran, text))


def _grid(
    p: Any, processed: Any, state: JobState, result: JobResult, first: int, infotexts: list[str]
) -> None:
    images = compat.host_module("modules.images")
    opts = compat.host_module("modules.shared").opts
    # the host made no grid (process() turned it off); make it from the finished images
    if state.save_grid and len(result.images) > 1:
        grid = images.image_grid(result.images, p.batch_size)
        if first > 0:
            processed.images[0] = grid
        elif getattr(opts, "return_grid", True):
            processed.images.insert(0, grid)
            processed.index_of_first_image = 1
            if infotexts:
                processed.infotexts = [processed.info, *infotexts]
        if getattr(opts, "grid_save", True):
            images.save_image(
                grid,
                p.outpath_grids,
                "grid",
                processed.seed,
                p.prompt,
                getattr(opts, "grid_format", "png"),
                info=processed.info,
                p=p,
                grid=True,
            )


def _extras(
    processed: Any, state: JobState, result: JobResult, first: int, saved: list[str | None]
) -> None:
    """What the settings ask for besides the images, after them in the gallery: each image's
    change plot, and its chain as an animation saved beside it (the gallery shows the saved
    file, so it moves)."""
    from . import settings

    plot, animation = settings.change_plot(), settings.animation()
    if not plot and animation.fmt == "none":
        return
    from ..animation import frames, save, stages_of
    from ..runner import image_plot, plots_wanted

    infotexts = list(getattr(processed, "infotexts", None) or [])
    start = getattr(processed, "index_of_first_image", 0)
    extra: list[tuple[Image.Image, str]] = []
    for i in range(len(result.images)):
        info = infotexts[start + i] if start + i < len(infotexts) else processed.info
        if plot and plots_wanted(result):
            extra.append((image_plot(result, i), info))
        if animation.fmt != "none" and saved[i]:
            made = frames(stages_of(result.outputs[i]))
            stem = saved[i].rsplit(".", 1)[0]
            path = Path(f"{stem}-chain.{animation.fmt}")
            save(made, path, animation.fmt, animation.frame_ms, animation.loop)
            shown = made[-1]
            shown.already_saved_as = str(path)  # the gallery serves this file: the animation
            extra.append((shown, info))
    for image, info in extra:
        processed.images.append(image)
        if infotexts:
            infotexts.append(info)
    if infotexts:
        processed.infotexts = infotexts
