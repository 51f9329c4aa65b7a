"""The engine: runs a recipe over a whole job through a Backend.

It owns the order of work (run k for every image before run k+1 of any image, so the number
of checkpoint switches depends only on the recipe), detailed-inpaint cropping, progress,
cancel and skip between steps, and putting back the checkpoint that was loaded before the job.
On cancel or an error it returns every image finished so far, with an account of where it
stopped. It imports no torch: backends do the sampling.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from .detectors import how_many, what_from_name
from .fields import MAX_LIST
from .geometry import Size
from .imaging import (
    MASK_ALL_BLACK,
    MaskedCrop,
    MaskTooFragmented,
    box_crops,
    cut_crop,
    mask_areas,
    open_mask_image,
    paste_back,
    placed_mask,
    plan_masked_crop,
    plan_placed,
    to_mask,
)
from .plan import JobContext, Run, base_run, counted, crop_prompts, plan_runs, resolve_prompt
from .recipe import Problem, RecipeError, where_pass

SEED_MODULUS = 2**32


class Cancelled(Exception):
    """The job was asked to stop; raised between sampling steps."""


class Skipped(Exception):
    """The current image's current run was asked to be skipped."""


@dataclass(frozen=True)
class SampleRequest:
    """One sampling call: txt2img when `image` is None, img2img with it, inpaint with `mask`."""

    prompt: str
    negative_prompt: str
    sampler: str
    scheduler: str
    steps: int
    cfg_scale: float
    seed: int
    width: int
    height: int
    strength: float = 1.0
    step_mode: str = "proportional"
    image: Image.Image | None = None
    mask: Image.Image | None = None  # L, white is regenerated
    vae: str = ""
    text_encoders: tuple[str, ...] = ()
    clip_skip: int = 1  # the WebUI's CLIP_stop_at_last_layers


StepCallback = Callable[[int, int], None]


class Backend(Protocol):
    """What the engine needs from a host: checkpoints, sampling, upscaling."""

    def current_checkpoint(self) -> str:
        """The name of the loaded checkpoint ('' if none)."""
        ...

    def checkpoint_id(self, name: str) -> str:
        """Who `name` really is ('' names the loaded checkpoint): the same id for every name of
        one checkpoint (file name, title, title with a hash), '' for a name it does not know."""
        ...

    def load_checkpoint(self, name: str) -> None:
        """Make `name` the loaded checkpoint."""
        ...

    def checkpoint_family(self, name: str) -> str:
        """'sd1', 'sd2' or 'sdxl', for automatic working sizes ('' names the current one)."""
        ...

    def check_run(self, run: Run) -> list[Problem]:
        """What in `run` this backend cannot do (unknown checkpoint, sampler, upscaler...)."""
        ...

    def generate(
        self, requests: Sequence[SampleRequest], on_step: StepCallback
    ) -> list[Image.Image]:
        """Sample a batch of images in one call (same settings and size; each with its own
        seed, prompts and init image); call on_step(step, total) after every step."""
        ...

    def upscale(self, image: Image.Image, size: Size, upscaler: str) -> Image.Image:
        """`image` resized to `size` with the named upscaler."""
        ...


class Control:
    """Cancel and skip requests, settable from another thread (a UI, a signal handler)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._skip = threading.Event()

    def cancel(self) -> None:
        self._stop.set()

    def skip(self) -> None:
        self._skip.set()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def should_skip(self) -> bool:
        return self._skip.is_set()

    def clear_skip(self) -> None:
        self._skip.clear()


@dataclass(frozen=True)
class Progress:
    """Where the job is: run i of n (0 is the base), image j of m, step s of the run's steps."""

    run: int
    runs: int
    label: str
    image: int
    images: int
    step: int
    steps: int
    done: int  # sampling steps finished in the whole job, counted per image
    total: int  # sampling steps the whole job will take, counted per image
    batch: int = 1  # images sampled together from `image` on


@dataclass
class RunOutput:
    """One image after one run, with the seed it used."""

    run: Run | None  # None for the base generation
    image: Image.Image
    seed: int
    skipped: bool = False
    detected: tuple[int, int] | None = None  # a detect pass: (found, inpainted) in this image


def describe_run(run: Run) -> str:
    """How accounts name a run: 'pass 2', or 'pass 2, run 3 of 4' in a pass of several."""
    where = where_pass(run.pass_index)
    return (
        where if run.runs_in_pass == 1 else f"{where}, run {run.repeat + 1} of {run.runs_in_pass}"
    )


@dataclass(frozen=True)
class ImageAccount:
    """What really happened to one image of a job: the runs that ran on it, the runs that were
    skipped for it, and, when the job stopped before this image was finished, where and why."""

    ran: tuple[Run, ...]
    skipped: tuple[Run, ...]
    stopped_at: Run | None  # the first run this image did not get; None: it got every run
    stopped: str | None  # None, "cancelled" or "error"
    reason: str = ""
    found: tuple[tuple[int, str], ...] = ()  # detect passes: (pass index, "3 faces, 2 inpainted")

    @property
    def complete(self) -> bool:
        return self.stopped is None

    @property
    def passes_ran(self) -> tuple[int, ...]:
        """Indexes (into recipe.passes) of the passes with at least one run that ran."""
        return tuple(sorted({r.pass_index for r in self.ran}))

    def text(self) -> str:
        """One line for infotext and messages, e.g. 'stopped at pass 2, run 1 of 4: cancelled'."""
        why = "cancelled" if self.stopped == "cancelled" else f"failed: {self.reason}"
        if self.stopped is None:
            out = "complete"
        elif self.stopped_at is None:
            out = f"not run: {why}"  # the passes could not start
        else:
            out = f"stopped at {describe_run(self.stopped_at)}: {why}"
        if self.skipped:
            out += "; skipped " + ", ".join(describe_run(r) for r in self.skipped)
        return out


def _short(error: BaseException | None, limit: int = 200) -> str:
    text = " ".join(str(error or "unknown error").split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class JobResult:
    """What a job produced. `images` holds each image's latest finished state."""

    images: list[Image.Image]
    seeds: list[int]
    outputs: list[list[RunOutput]]  # per image: the base (given or generated), then each run
    runs: list[Run]
    runs_done: int = 0  # runs finished for every image
    stopped: str | None = None  # None: finished; "cancelled"; "error"
    error: BaseException | None = None
    where: str = ""
    stopped_run: Run | None = None  # the run during or before which the job stopped
    stopped_image: int = 0
    checkpoints_loaded: list[str] = field(default_factory=list)

    @classmethod
    def not_started(
        cls, images: Sequence[Image.Image], seeds: Sequence[int], error: BaseException
    ) -> JobResult:
        """A job whose passes could not start (a check that fails only once its images exist,
        such as a checkpoint deleted meanwhile): its images as they are, and why."""
        outputs = [
            [RunOutput(None, image, seed)] for image, seed in zip(images, seeds, strict=True)
        ]
        return cls(list(images), list(seeds), outputs, [], stopped="error", error=error)

    @property
    def complete(self) -> bool:
        return self.stopped is None

    def image_account(self, index: int) -> ImageAccount:
        """What happened to image `index` (0-based)."""
        outs = self.outputs[index][1:] if self.outputs[index] else []
        done = [o for o in outs if o.run is not None]
        next_run = self.runs[len(done)] if len(done) < len(self.runs) else None
        if self.stopped is None:
            next_run = None
        not_started = self.stopped is not None and not self.runs
        found: dict[int, str] = {}
        for o in done:
            if o.detected is not None and o.run.pass_index not in found:
                what = what_from_name(o.run.detector)
                found[o.run.pass_index] = (
                    f"{how_many(o.detected[0], what)}, {o.detected[1]} inpainted"
                )
        return ImageAccount(
            found=tuple(found.items()),
            ran=tuple(o.run for o in done if not o.skipped),
            skipped=tuple(o.run for o in done if o.skipped),
            stopped_at=next_run,
            stopped=self.stopped if next_run is not None or not_started else None,
            reason=_short(self.error) if self.stopped == "error" else "",
        )

    def summary(self) -> str:
        """How the job ended, for machines and infotext: 'complete', or e.g. 'stopped at pass 2,
        run 1 of 4, image 3 of 8: cancelled' / '...: failed: <reason>'."""
        if self.stopped is None:
            return "complete"
        why = "cancelled" if self.stopped == "cancelled" else f"failed: {_short(self.error)}"
        if not self.runs:
            return f"not run: {why}"
        if self.stopped_run is None:
            return f"stopped at {self.where}: {why}"
        n = len(self.outputs)
        at = f"{describe_run(self.stopped_run)}, image {self.stopped_image + 1} of {n}"
        return f"stopped at {at}: {why}"

    def account(self) -> str:
        """One honest sentence on how the job ended."""
        n = len(self.runs)
        if self.stopped is None:
            return f"finished {counted(n, 'run')} over {counted(len(self.images), 'image')}"
        what = "cancelled" if self.stopped == "cancelled" else f"failed ({self.error})"
        if not self.runs:
            return f"{what} before the passes: no pass ran, and every image is kept as it was"
        return (
            f"{what} at {self.where}; {self.runs_done} of {counted(n, 'run')} finished for "
            "every image, and every image keeps its last finished state"
        )


@dataclass(frozen=True)
class Job:
    """The inputs of a job besides the recipe."""

    ctx: JobContext
    images: Sequence[Image.Image] | None = None  # None: generate the base with txt2img
    seeds: Sequence[int] = (0,)
    job_mask: Image.Image | None = None  # the job's own inpaint mask, base image size
    recipe_dir: Path | None = None  # where a recipe file's mask image paths start; None: API
    # each image's own base prompts (wildcards, prompt matrix); None: ctx's for all
    prompts: Sequence[str] | None = None
    negative_prompts: Sequence[str] | None = None
    batch_size: int = 1  # images sampled together in one call (the WebUI's batch size)
    detectors: Any = None  # a detectors.Registry, for detect passes
    names: Sequence[str] | None = None  # given images' file names (headless --init), for outputs

    @property
    def count(self) -> int:
        """How many images the job holds."""
        return len(self.images) if self.images is not None else len(self.seeds)


def _masks_for(recipe: Any, job: Job) -> tuple[dict[int, Image.Image], list[Problem]]:
    """Load every pass's mask image before anything runs, so a bad one never half-runs a job."""
    masks: dict[int, Image.Image] = {}
    problems: list[Problem] = []
    for i, p in enumerate(recipe.passes):
        if p.enabled and p.region == "crop" and p.mask_source == "image" and p.mask_image:
            try:
                masks[i] = open_mask_image(p.mask_image, job.recipe_dir)
            except ValueError as e:
                problems.append(Problem(where_pass(i), "mask_image", p.mask_image, str(e)))
                continue
            if masks[i].getbbox() is None:
                problems.append(Problem(where_pass(i), "mask_image", p.mask_image, MASK_ALL_BLACK))
    return masks, problems + _split_problems(recipe, job, masks)


def prepare(
    recipe: Any, job: Job, backend: Backend, problems: Sequence[Problem] = ()
) -> tuple[list[Run], dict[int, Image.Image]]:
    """Plan and check the whole job; raises RecipeError before any work if anything is wrong.

    Every problem is reported at once: `problems` found earlier (bad fields, flags), the plan's,
    mask images, and what the backend cannot do for each pass and for the base generation
    (names not in its lists, unusable checkpoint files).
    """
    found = list(problems)
    ctx = job.ctx
    if job.job_mask is not None and not ctx.has_job_mask:
        ctx = dataclasses.replace(ctx, has_job_mask=True)
    runs, planned = plan_runs(recipe, ctx, family_of=backend.checkpoint_family)
    found += planned
    masks, mask_problems = _masks_for(recipe, job)
    found += mask_problems
    if job.images is None:
        found += backend.check_run(base_run(ctx))
    found += _detector_problems(recipe, job)

    seen = set()
    for run in runs:
        if run.pass_index not in seen:
            seen.add(run.pass_index)
            found += _own(backend.check_run(run), recipe.passes[run.pass_index])
    if job.images is not None and len(job.images) != len(job.seeds):
        found.append(
            Problem("job", "seeds", len(job.seeds), f"one seed per image ({len(job.images)})")
        )
    if found:
        raise RecipeError(_unique(found))
    return runs, masks


def _detector_problems(recipe: Any, job: Job) -> list[Problem]:
    """A detect pass's detector must be there (and loadable) before anything runs."""
    out = []
    for i, p in enumerate(recipe.passes):
        if not (p.enabled and p.region == "crop" and p.mask_source == "detect" and p.detector):
            continue
        if job.detectors is None:
            out.append(Problem(where_pass(i), "detector", p.detector, "no detectors here"))
            continue
        problem = job.detectors.problem(p.detector)
        if problem is None:
            try:
                job.detectors.get(p.detector)
            except Exception as e:  # a model file that does not load: named before the job
                problem = f"a detector that loads ({p.detector}: {' '.join(str(e).split())[:200]})"
        if problem is not None:
            out.append(Problem(where_pass(i), "detector", p.detector, problem))
    return out


def _split_problems(recipe: Any, job: Job, masks: dict[int, Image.Image]) -> list[Problem]:
    """A mask split into areas must have few enough of them, on the base image."""
    out = []
    for i, p in enumerate(recipe.passes):
        if not (p.enabled and p.region == "crop" and p.mask_split):
            continue
        source = {"image": masks.get(i), "job": job.job_mask}.get(p.mask_source)
        if source is None:
            continue
        try:
            mask_areas(to_mask(source, job.ctx.boxes_drawn_on), most=MAX_LIST)
        except MaskTooFragmented as e:
            allowed = f"a mask of at most {MAX_LIST} separate areas to split (this one: {e})"
            out.append(Problem(where_pass(i), "mask_split", True, allowed))
    return out


# fields a pass inherits when it leaves them empty (from the pass before, or the base)

INHERITED = ("checkpoint", "vae", "text_encoders", "sampler", "scheduler", "prompt")


def _own(problems: list[Problem], p: Any) -> list[Problem]:
    """A pass's problems with the values it sets itself: an inherited bad value is reported
    where it is given (the base, an earlier pass), once."""

    def own(q: Problem) -> bool:
        about = q.about or ((q.field, "sampler") if q.field == "scheduler" else (q.field,))
        return any(f not in INHERITED or bool(getattr(p, f)) for f in about)

    return [q for q in problems if own(q)]


def _unique(problems: list[Problem]) -> list[Problem]:
    """Problems in order, each once (a base and a pass can inherit the same bad name)."""
    out: list[Problem] = []
    for p in problems:
        if not any(
            q.where == p.where and q.field == p.field and q.allowed == p.allowed for q in out
        ):
            out.append(p)
    return out


def load_masks(recipe: Any, job: Job) -> dict[int, Image.Image]:
    """Every pass's mask image, by pass index; raises RecipeError naming an unreadable one."""
    masks, problems = _masks_for(recipe, job)
    if problems:
        raise RecipeError(problems)
    return masks


def detect_crops(
    p: Any, detector: Any, image: Image.Image, family: str
) -> tuple[list[MaskedCrop], int]:
    """A detect pass's crops in one image, and how many confident detections it found: the
    detector's finds, filtered and ordered as the pass says, each (or all together) masked by
    its box or outline, grown or shrunk, then cropped as any mask is."""
    from .detectors.select import confident_count, select_for

    found = detector.detect(image)
    confident = confident_count(p, found)
    chosen = select_for(p, found, image.size)
    placed = [
        placed_mask(
            d.box, image.size, d.mask if p.detect_mask == "segment" else None, p.detect_dilate
        )
        for d in chosen
    ]
    return plan_placed(placed, image.size, p, family, p.detect_merge), confident


def crops_for(
    index: int, recipe: Any, job: Job, masks: dict[int, Image.Image], size: Size, family: str
) -> list[MaskedCrop]:
    """The crops of pass `index` on an image of `size`; masks are in base-image pixels.
    (A detect pass's crops differ per image: detect_crops.)"""
    p = recipe.passes[index]
    if p.mask_source == "detect":
        return []
    base_size = job.ctx.boxes_drawn_on
    if p.mask_source == "boxes":
        return box_crops(size, base_size, p.boxes, p, family)
    source = masks.get(index) if p.mask_source == "image" else job.job_mask
    if source is None:
        return []
    if p.mask_split:
        areas = mask_areas(to_mask(source, size), most=MAX_LIST)
        return plan_placed(areas, size, p, family, merge=False)
    planned = plan_masked_crop(to_mask(source, size), p, family)

    return [] if planned is None else [planned]


def run_job(
    recipe: Any,
    job: Job,
    backend: Backend,
    *,
    control: Control | None = None,
    progress: Callable[[Progress], None] | None = None,
    rng: random.Random | None = None,
) -> JobResult:
    """Run the base generation (if `job.images` is None) and every pass over every image."""
    runs, masks = prepare(recipe, job, backend)
    control = control or Control()
    rng = rng or random.Random()
    ctx = job.ctx
    n_images = job.count
    result = JobResult(
        images=list(job.images or []),
        seeds=list(job.seeds),
        outputs=[[] for _ in range(n_images)],
        runs=runs,
    )
    for i, image in enumerate(job.images or []):
        result.outputs[i].append(RunOutput(None, image, result.seeds[i]))
    original = backend.current_checkpoint()
    original_id = backend.checkpoint_id("")
    crop_cache: dict[tuple[int, Size, str], list[MaskedCrop]] = {}

    detected: dict[tuple[int, int], tuple[list[MaskedCrop], int]] = {}

    def crops(run: Run, family: str, size: Size) -> list[MaskedCrop]:
        # a pass's crops depend only on its mask, the image size and the checkpoint family:
        # found once, for the progress total and then for every image
        key = (run.pass_index, size, family)
        if key not in crop_cache:
            crop_cache[key] = crops_for(run.pass_index, recipe, job, masks, size, family)
        return crop_cache[key]

    def image_crops(run: Run, family: str, index: int, image: Image.Image) -> list[MaskedCrop]:
        """Crops of image `index` in this run: a detect pass detects once per image, on the
        image as the pass's first run finds it; other passes share the job's crops."""
        p = recipe.passes[run.pass_index]
        if p.mask_source != "detect":
            return crops(run, family, image.size)
        key = (run.pass_index, index)
        if key not in detected:
            nonlocal counts
            detector = job.detectors.get(p.detector)
            detected[key] = detect_crops(p, detector, image, family)
            # progress counted one crop per image for this pass; now the image's count is known
            pass_steps = sum(r.count.run for r in runs if r.pass_index == run.pass_index)
            counts += (len(detected[key][0]) - 1) * pass_steps
        return detected[key][0]

    counts = _step_totals(job, runs, backend, crops)
    done = 0
    label = "base"
    image_index = 0
    current: Run | None = None

    def load(name: str) -> None:
        if name and not _is_loaded(backend, name):
            backend.load_checkpoint(name)
            result.checkpoints_loaded.append(name)

    def on_step_for(run_no: int, label: str, batch: Sequence[int]) -> StepCallback:
        def on_step(step: int, steps: int) -> None:
            nonlocal done
            done += len(batch)  # sampling steps are counted per image
            if progress is not None:
                progress(
                    Progress(
                        run_no,
                        len(runs),
                        label,
                        batch[0],
                        n_images,
                        step,
                        steps,
                        done,
                        counts,
                        batch=len(batch),
                    )
                )
            if control.should_stop():
                raise Cancelled
            if control.should_skip():
                raise Skipped

        return on_step

    batches = [
        list(range(i, min(i + job.batch_size, n_images)))
        for i in range(0, n_images, job.batch_size)
    ]
    try:
        if job.images is None:
            load(ctx.checkpoint)
            for batch in batches:
                image_index = batch[0]
                if control.should_stop():
                    raise Cancelled
                requests = [
                    SampleRequest(
                        ctx.prompt,
                        ctx.negative_prompt,
                        ctx.sampler,
                        ctx.scheduler,
                        ctx.steps,
                        ctx.cfg_scale,
                        result.seeds[i] % SEED_MODULUS,
                        ctx.width,
                        ctx.height,
                        vae=ctx.vae,
                        clip_skip=ctx.clip_skip,
                    )
                    for i in batch
                ]
                images = backend.generate(requests, on_step_for(0, label, batch))
                for i, image in zip(batch, images, strict=True):
                    result.images.append(image)
                    result.outputs[i].append(RunOutput(None, image, result.seeds[i]))
        for run in runs:
            label, current, image_index = run.label, run, 0
            if control.should_stop():
                raise Cancelled  # before loading anything more
            load(run.checkpoint)
            family = backend.checkpoint_family(run.checkpoint)
            for batch in batches:
                image_index = batch[0]
                if control.should_stop():
                    raise Cancelled
                seeds = [_seed(result.seeds[i], run, rng) for i in batch]
                try:
                    images = _apply(
                        [_for_image(run, recipe, job, i) for i in batch],
                        backend,
                        [result.images[i] for i in batch],
                        seeds,
                        ctx.step_mode,
                        lambda j, image, run=run, family=family, batch=batch: image_crops(
                            run, family, batch[j], image
                        ),
                        on_step_for(run.number, label, batch),
                    )
                    skipped = False
                except Skipped:  # Skip abandons this run for the images being sampled
                    control.clear_skip()
                    images, skipped = [result.images[i] for i in batch], True
                for i, image, seed in zip(batch, images, seeds, strict=True):
                    result.images[i] = image
                    found = detected.get((run.pass_index, i))
                    counts_here = (found[1], len(found[0])) if found is not None else None
                    result.outputs[i].append(RunOutput(run, image, seed, skipped, counts_here))
            result.runs_done += 1
    except (Cancelled, KeyboardInterrupt):  # KeyboardInterrupt: a second Ctrl-C, mid-step
        result.stopped = "cancelled"
        result.where = _where(label, image_index, n_images)
        result.stopped_run, result.stopped_image = current, image_index
    except Exception as e:
        result.stopped, result.error = "error", e
        result.where = _where(label, image_index, n_images)
        result.stopped_run, result.stopped_image = current, image_index
    finally:
        try:
            if original and backend.checkpoint_id("") != original_id:
                backend.load_checkpoint(original)
                result.checkpoints_loaded.append(original)
        except Exception as e:
            if result.error is None:
                result.stopped, result.error = "error", e
                result.where = f"putting back checkpoint {original!r}"
    return result


def _is_loaded(backend: Backend, name: str) -> bool:
    wanted = backend.checkpoint_id(name)
    return bool(wanted) and wanted == backend.checkpoint_id("")


def _for_image(run: Run, recipe: Any, job: Job, index: int) -> Run:
    """The run with this image's own base prompts resolved into it, where the job has them."""
    if job.prompts is None and job.negative_prompts is None:
        return run
    p = recipe.passes[run.pass_index]
    changes: dict[str, Any] = {}
    if job.prompts is not None:
        base = job.prompts[index]
        changes["prompt"] = resolve_prompt(p.prompt_mode, p.prompt, base)
        changes["crop_prompts"] = crop_prompts(p.prompt_mode, p.prompt, base)
    if job.negative_prompts is not None:
        neg = job.negative_prompts[index]
        changes["negative_prompt"] = resolve_prompt(p.negative_prompt_mode, p.negative_prompt, neg)
        changes["crop_negatives"] = crop_prompts(p.negative_prompt_mode, p.negative_prompt, neg)
    return dataclasses.replace(run, **changes)


def _where(label: str, image_index: int, n_images: int) -> str:
    return f"{label}, image {image_index + 1} of {n_images}"


def _seed(image_seed: int, run: Run, rng: random.Random) -> int:
    if run.seed_delta is None:
        return rng.randrange(SEED_MODULUS)
    return (image_seed + run.seed_delta) % SEED_MODULUS


def _request(run: Run, size: Size, seed: int, step_mode: str, **kw: Any) -> SampleRequest:
    return SampleRequest(
        run.prompt,
        run.negative_prompt,
        run.sampler,
        run.scheduler,
        run.steps,
        run.cfg_scale,
        seed,
        size[0],
        size[1],
        strength=run.strength,
        step_mode=step_mode,
        vae=run.vae,
        text_encoders=run.text_encoders,
        clip_skip=run.clip_skip,
        **kw,
    )


def _apply(
    runs: Sequence[Run],
    backend: Backend,
    images: Sequence[Image.Image],
    seeds: Sequence[int],
    mode: str,
    find_crops: Callable[[int, Image.Image], list[MaskedCrop]],
    on_step: StepCallback,
) -> list[Image.Image]:
    """One run on a batch of images (each with its own run: its prompts): upscale first if
    asked, then sample the whole images in one call, or crop by crop: crop k of every image
    that has one, batched by working size, each with its own prompt ([SEP]) and seed + k."""
    run = runs[0]
    out = list(images)
    if run.upscaler is not None:
        out = [backend.upscale(image, run.size, run.upscaler) for image in out]
    if run.count.run == 0:
        return out
    if run.region == "whole":
        requests = [
            _request(r, r.size, seed, mode, image=image)
            for r, seed, image in zip(runs, seeds, out, strict=True)
        ]
        return backend.generate(requests, on_step)
    lists = [find_crops(j, image) for j, image in enumerate(out)]
    for k in range(max((len(c) for c in lists), default=0)):
        groups: dict[Size, list[int]] = {}
        for j, planned in enumerate(lists):
            if k < len(planned):
                groups.setdefault(planned[k].crop.working, []).append(j)
        for working, members in groups.items():
            cut = {j: cut_crop(out[j], lists[j][k]) for j in members}
            requests = []
            for j in members:
                prompt, negative = runs[j].prompts_for(k)
                region, mask = cut[j]
                seed = (seeds[j] + k) % SEED_MODULUS  # each crop its own seed
                requests.append(
                    dataclasses.replace(
                        _request(runs[j], working, seed, mode, image=region, mask=mask),
                        prompt=prompt,
                        negative_prompt=negative,
                    )
                )
            made = backend.generate(requests, on_step)
            for j, new in zip(members, made, strict=True):
                out[j] = paste_back(out[j], new, lists[j][k])
    return out


def _step_totals(
    job: Job,
    runs: list[Run],
    backend: Backend,
    crops: Callable[[Run, str, Size], list[MaskedCrop]],
) -> int:
    """Sampling steps of the whole job (per image), for progress; crops counted per crop."""
    total = 0 if job.images is not None else job.ctx.steps * job.count
    for run in runs:
        per = run.count.run
        if run.region == "crop" and per:
            family = backend.checkpoint_family(run.checkpoint)
            per *= max(1, len(crops(run, family, run.size)))
        total += per * job.count
    return total
