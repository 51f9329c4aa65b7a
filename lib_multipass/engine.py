"""The engine: runs a recipe over a whole job through a Backend.

It owns the order of work (run k for every image before run k+1 of any image, so the number
of checkpoint switches depends only on the recipe), sampling every region's pieces in batches,
progress, cancel and skip between steps, and putting back the checkpoint that was loaded before
the job. Where a run samples (the whole image, crops, detections, tiles) is the region's
business (lib_multipass.regions); what is checked before anything runs is preflight's. On
cancel or an error it returns every image finished so far, with an account of where it
stopped. It imports no torch: backends do the sampling.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .converge import Repeats, change
from .geometry import Size
from .plan import Run, crop_prompts, resolve_prompt
from .preflight import load_masks, prepare
from .protocol import (
    Backend,
    Cancelled,
    Control,
    Job,
    SampleRequest,
    Skipped,
    StepCallback,
)
from .regions import Piece, Regions, Work
from .results import ImageAccount, JobResult, RunOutput, describe_run
from .schedule import img2img_steps

SEED_MODULUS = 2**32

__all__ = [
    "SEED_MODULUS",
    "Backend",
    "Cancelled",
    "Control",
    "ImageAccount",
    "Job",
    "JobResult",
    "Progress",
    "RunOutput",
    "SampleRequest",
    "Skipped",
    "StepCallback",
    "describe_run",
    "load_masks",
    "prepare",
    "run_job",
]


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
    done: int  # sampling steps finished in the whole job (a step of k pieces counts k)
    total: int  # sampling steps the whole job will take, counted the same way
    batch: int = 1  # images sampled together from `image` on


def run_job(
    recipe: Any,
    job: Job,
    backend: Backend,
    *,
    control: Control | None = None,
    progress: Callable[[Progress], None] | None = None,
    rng: random.Random | None = None,
    on_image: Callable[[int, JobResult], None] | None = None,
) -> JobResult:
    """Run the base generation (if `job.images` is None) and every pass over every image.

    `on_image(index, result)` is called as each image is finished (its last run done, or
    settled), so a caller can keep it before the job ends; runs go over every image before the
    next run starts, so images finish during the last run (during the base, with no pass).
    """
    runs, masks = prepare(recipe, job, backend)
    job_run = _JobRun(
        recipe, job, backend, runs, masks, control or Control(), progress, rng or random.Random()
    )
    job_run.on_image = on_image
    return job_run.run()


class _JobRun:
    """One job as it runs: what it has made so far, where it is, and its progress count."""

    def __init__(
        self,
        recipe: Any,
        job: Job,
        backend: Backend,
        runs: list[Run],
        masks: dict[int, Image.Image],
        control: Control,
        progress: Callable[[Progress], None] | None,
        rng: random.Random,
    ) -> None:
        self.recipe, self.job, self.backend, self.runs = recipe, job, backend, runs
        self.control, self.progress, self.rng = control, progress, rng
        self.regions = Regions(
            recipe,
            masks=masks,
            job_mask=job.job_mask,
            boxes_drawn_on=job.ctx.boxes_drawn_on,
            detectors=job.detectors,
        )
        n = job.count
        self.result = JobResult(
            images=list(job.images or []),
            seeds=list(job.seeds),
            outputs=[[] for _ in range(n)],
            runs=runs,
            settled=[[] for _ in range(n)],
        )
        self.repeats = Repeats()
        for i, image in enumerate(job.images or []):
            self.result.outputs[i].append(RunOutput(None, image, self.result.seeds[i]))
        self.batches = [
            list(range(i, min(i + job.batch_size, n))) for i in range(0, n, job.batch_size)
        ]
        self.label, self.current, self.image_index = "base", None, 0
        self.done = 0
        self.on_image: Callable[[int, JobResult], None] | None = None
        self.estimate = {run.number: self._planned_steps(run) for run in runs}
        base = 0 if job.images is not None else job.ctx.steps * n
        self.total = base + sum(self.estimate.values()) * n

    # -- the order of work --------------------------------------------------------------------

    def run(self) -> JobResult:
        backend, result = self.backend, self.result
        original = backend.current_checkpoint()
        original_id = backend.checkpoint_id("")
        try:
            if self.job.images is None:
                self._base()
            for run in self.runs:
                self._run(run)
        except (Cancelled, KeyboardInterrupt):  # KeyboardInterrupt: a second Ctrl-C, mid-step
            self._stopped("cancelled")
        except Exception as e:
            self._stopped("error", e)
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

    def _stopped(self, why: str, error: BaseException | None = None) -> None:
        result = self.result
        result.stopped, result.error = why, error
        result.where = f"{self.label}, image {self.image_index + 1} of {self.job.count}"
        result.stopped_run, result.stopped_image = self.current, self.image_index

    def _check_stop(self) -> None:
        if self.control.should_stop():
            raise Cancelled

    def _load(self, name: str) -> None:
        if name and not _is_loaded(self.backend, name):
            self.backend.load_checkpoint(name)
            self.result.checkpoints_loaded.append(name)

    def _base(self) -> None:
        ctx, result = self.job.ctx, self.result
        self._load(ctx.checkpoint)
        for batch in self.batches:
            self.image_index = batch[0]
            self._check_stop()
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
                    subseed=(ctx.subseed + i) % SEED_MODULUS,
                    subseed_strength=ctx.subseed_strength,
                    rng=ctx.rng,
                    image_rules=ctx.image_rules,
                )
                for i in batch
            ]
            images = self.backend.generate(requests, self._on_step(0, "base", batch))
            for i, image in zip(batch, images, strict=True):
                result.images.append(image)
                result.outputs[i].append(RunOutput(None, image, result.seeds[i]))
            if not self.runs:
                self._finished(batch)

    def _run(self, run: Run) -> None:
        """One run over every image that still takes it, batch by batch."""
        self.label, self.current, self.image_index = run.label, run, 0
        self._check_stop()  # before loading anything more
        batches = [self._wanted(run, batch) for batch in self.batches]
        last = run is self.runs[-1]
        if not any(batches):  # every image has settled: nothing to load or sample
            self.result.runs_done += 1
            for whole in self.batches if last else []:
                self._finished(whole)
            return
        self._load(run.checkpoint)
        family = self.backend.checkpoint_family(run.checkpoint)
        result = self.result
        for whole, batch in zip(self.batches, batches, strict=True):
            if not batch:  # every image of it has settled
                if last:
                    self._finished(whole)
                continue
            self.image_index = batch[0]
            self._check_stop()
            seeds = [_seed(result.seeds[i], run, self.rng) for i in batch]
            runs = [_for_image(run, self.recipe, self.job, i) for i in batch]
            works: list[Work | None] = [None] * len(batch)
            try:
                images, works = self._apply(runs, batch, seeds, family)
                skipped = False
            except Skipped:  # Skip abandons this run for the images being sampled
                self.control.clear_skip()
                images, skipped = [result.images[i] for i in batch], True
            for i, image, seed, work in zip(batch, images, seeds, works, strict=True):
                changed = None if skipped else change(result.images[i], image)
                if changed is not None:
                    self.repeats.record(run, i, changed)
                result.images[i] = image
                found = work.found if work is not None else None
                result.outputs[i].append(RunOutput(run, image, seed, skipped, found, changed))
            if last:
                self._finished(whole)
        result.runs_done += 1

    def _finished(self, batch: Sequence[int]) -> None:
        """Tell the caller the images of `batch` are finished (nothing more runs on them)."""
        if self.on_image is not None:
            for i in batch:
                self.on_image(i, self.result)

    def _wanted(self, run: Run, batch: list[int]) -> list[int]:
        """The images of `batch` that still take `run`; the others have settled, and the
        steps counted for them leave the job's total."""
        wanted = self.repeats.wanted(run, batch)
        for i in batch:
            if i not in wanted:
                self.result.settled[i].append(run)
                self.total -= self.estimate[run.number]
        if len(wanted) < len(batch):
            self._report(run.number, run.label, batch, 0, 0)
        return wanted

    def _apply(
        self, runs: Sequence[Run], batch: Sequence[int], seeds: Sequence[int], family: str
    ) -> tuple[list[Image.Image], list[Work | None]]:
        """One run on a batch of images (each with its own run: its prompts): upscale first if
        asked, then every round of every image's region, each round's pieces sampled in calls
        of up to the job's batch size."""
        run = runs[0]
        images = [self.result.images[i] for i in batch]
        if run.upscaler is not None:
            images = [self.backend.upscale(image, run.size, run.upscaler) for image in images]
        if run.count.run == 0:
            return images, [None] * len(images)
        works = [self._work(run, i, image, family) for i, image in zip(batch, images, strict=True)]
        for round_ in range(max(w.rounds() for w in works)):
            self._sample_round(runs, batch, works, seeds, round_)
        return [w.result() for w in works], list(works)

    def _work(self, run: Run, index: int, image: Image.Image, family: str) -> Work:
        """The region's work on one image; the progress total counted what was planned, and
        is corrected now that this image's pieces are known (a detect pass's finds)."""
        work = self.regions.work(run, index, image, family)
        steps = sum(
            self._steps(run, piece) for r in range(work.rounds()) for piece in work.pieces(r)
        )
        if steps != self.estimate[run.number]:
            self.total += steps - self.estimate[run.number]
            self._report(run.number, run.label, [index], 0, 0)
        return work

    def _sample_round(
        self,
        runs: Sequence[Run],
        batch: Sequence[int],
        works: Sequence[Work],
        seeds: Sequence[int],
        round_: int,
    ) -> None:
        """Round `round_` of every image that has one: pieces grouped by how they are sampled
        (size, strength, mask or not), each group in calls of up to the job's batch size."""
        groups: dict[tuple[Size, bool, bool], list[tuple[int, Piece]]] = {}
        for j, work in enumerate(works):
            if round_ < work.rounds():
                for piece in work.pieces(round_):
                    groups.setdefault((piece.working, piece.seams, piece.masked), []).append(
                        (j, piece)
                    )
        size = self.job.batch_size
        for members in groups.values():
            for start in range(0, len(members), size):
                chunk = members[start : start + size]
                requests = [self._request(runs[j], piece, seeds[j], works[j]) for j, piece in chunk]
                images = sorted({batch[j] for j, _ in chunk})
                on_step = self._on_step(runs[0].number, runs[0].label, images, len(chunk))
                # say what is sampled before it is: a host's text under its bar hears of
                # nothing else until the nested job ends
                self._report(runs[0].number, runs[0].label, images, 0, requests[0].steps)
                made = self.backend.generate(requests, on_step)
                for (j, piece), image in zip(chunk, made, strict=True):
                    works[j].put(piece, image)

    def _request(self, run: Run, piece: Piece, seed: int, work: Work) -> SampleRequest:
        image, mask = work.cut(piece)
        prompt, negative = run.prompts_for(piece.prompt_index)
        strength = self._pass_of(run).seams_fix_strength if piece.seams else run.strength
        return SampleRequest(
            prompt,
            negative,
            run.sampler,
            run.scheduler,
            run.steps,
            run.cfg_scale,
            (seed + piece.seed_offset) % SEED_MODULUS,
            piece.working[0],
            piece.working[1],
            strength=strength,
            step_mode=self.job.ctx.step_mode,
            image=image,
            mask=mask,
            vae=run.vae,
            text_encoders=run.text_encoders,
            clip_skip=run.clip_skip,
            rng=self.job.ctx.rng,
            image_rules=self.job.ctx.image_rules,
            controlnet=run.controlnet,
        )

    # -- progress -----------------------------------------------------------------------------

    def _pass_of(self, run: Run) -> Any:
        return self.recipe.passes[run.pass_index]

    def _steps(self, run: Run, piece: Piece) -> int:
        """Sampling steps one piece of `run` takes (a seams-fix piece at its own strength)."""
        if piece.seams:
            strength = self._pass_of(run).seams_fix_strength
            return img2img_steps(strength, run.steps, self.job.ctx.step_mode, run.sampler).run
        return run.count.run

    def _planned_steps(self, run: Run) -> int:
        """The steps `run` will take per image, as far as they are known before the job (a
        detect pass is counted as one crop until its finds are known)."""
        if run.count.run == 0:
            return 0
        family = self.backend.checkpoint_family(run.checkpoint)
        planned = self.regions.planned(run, family)
        if planned is None:
            return run.count.run
        return sum(self._steps(run, piece) for pieces in planned for piece in pieces)

    def _report(
        self, run_no: int, label: str, images: Sequence[int], step: int, steps: int
    ) -> None:
        if self.progress is not None:
            self.progress(
                Progress(
                    run_no,
                    len(self.runs),
                    label,
                    images[0],
                    self.job.count,
                    step,
                    steps,
                    self.done,
                    self.total,
                    batch=len(images),
                )
            )

    def _on_step(
        self, run_no: int, label: str, images: Sequence[int], pieces: int | None = None
    ) -> StepCallback:
        """Counts a step of `pieces` pieces (default: one per image), reports it, and stops or
        skips between steps when asked."""
        count = len(images) if pieces is None else pieces

        def on_step(step: int, steps: int) -> None:
            self.done += count
            self._report(run_no, label, images, step, steps)
            self._check_stop()
            if self.control.should_skip():
                raise Skipped

        return on_step


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


def _seed(image_seed: int, run: Run, rng: random.Random) -> int:
    if run.seed_delta is None:
        return rng.randrange(SEED_MODULUS)
    return (image_seed + run.seed_delta) % SEED_MODULUS
