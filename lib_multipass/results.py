"""What a job produced and what really happened to each image: the accounts behind every
infotext, API answer and exit code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from .detectors import how_many, what_from_name
from .plan import Run, counted
from .recipe import where_pass


@dataclass
class RunOutput:
    """One image after one run, with the seed it used."""

    run: Run | None  # None for the base generation
    image: Image.Image
    seed: int
    skipped: bool = False
    detected: tuple[int, int] | None = None  # a detect pass: (found, inpainted) in this image
    change: float | None = None  # how much the run changed the image (converge.change)


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
    # each pass's change per run on this image, in order: (pass index, changes)
    changes: tuple[tuple[int, tuple[float, ...]], ...] = ()
    settled: tuple[Run, ...] = ()  # runs this image did not need: its repeats had settled

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
    # per image: the runs it left out because a strength's repeats had settled
    settled: list[list[Run]] = field(default_factory=list)

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
        settled = self.settled[index] if index < len(self.settled) else []
        taken = {o.run.number for o in done} | {r.number for r in settled}
        next_run = next((r for r in self.runs if r.number not in taken), None)
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
        changes: dict[int, list[float]] = {}
        for o in done:
            if o.change is not None:
                changes.setdefault(o.run.pass_index, []).append(o.change)
        return ImageAccount(
            found=tuple(found.items()),
            changes=tuple((k, tuple(v)) for k, v in changes.items()),
            settled=tuple(settled),
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
