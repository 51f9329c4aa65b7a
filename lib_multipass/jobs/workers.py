"""What the driver asks of a worker, whatever it is: this process, a Ray actor, a WebUI host.

A worker runs one task at a time (`run`, which blocks, in a driver thread), sends each image
as it is finished (`on_picture`, for the driver to write at once), says how far it is
(`status`), stops after its current step when asked (`cancel`), and says which checkpoints it
holds (for affinity). A worker that dies or stops answering raises `WorkerLost`: the driver
gives its job to another worker (a bounded number of times). A job that fails on a worker that
is fine comes back as an `Outcome` saying why, and is not retried: it would fail again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..engine import Control, JobResult, Progress, run_job
from ..protocol import Job
from .affinity import Need
from .images import Picture, picture_of, rest_of
from .listfile import JobSpec


@dataclass
class Task:
    """A job as the driver hands it out: its spec, its inputs (seeds drawn, images read), what
    it loads, its estimated steps, its attempts so far, and the images already on disk."""

    spec: JobSpec
    job: Job  # detectors are the worker's own: None here
    need: Need
    steps: int
    attempt: int = 1
    retries: list[str] = field(default_factory=list)
    retries_on: set[str] = field(default_factory=set)  # workers it was lost on
    written: dict[int, str] = field(default_factory=dict)  # image index -> its final's file
    first: int = 0  # the first image the next attempt runs (those before it are written)
    partials: list[str] = field(default_factory=list)  # files of images a stop left unfinished

    def start_after_written(self) -> None:
        """The next attempt starts at the first image not yet written."""
        self.first = next(i for i in range(self.job.count + 1) if i not in self.written)

    @property
    def written_files(self) -> list[str]:
        """The files of the images written so far, in the images' order."""
        return [self.written[i] for i in sorted(self.written)]

    @property
    def to_run(self) -> Job:
        """The job the next attempt runs: the images from `first` on."""
        return rest_of(self.job, self.first)

    @property
    def steps_left(self) -> int:
        """The estimated steps of the images from `first` on."""
        count = max(1, self.job.count)
        return max(1, round(self.steps * (count - self.first) / count))


@dataclass
class Outcome:
    """What a worker sends back for a task."""

    result: JobResult | None = None  # from a diffusers worker: every image and its account
    status: str = "done"  # done, failed or cancelled
    reason: str = ""
    loads: dict[str, int] = field(default_factory=dict)  # checkpoints read from disk, this job
    switches: list[str] = field(default_factory=list)  # checkpoints made current in turn
    held: tuple[str, ...] = ()  # checkpoints the worker holds afterwards
    loaded: str = ""  # and the current one
    seconds: float = 0.0


OnPicture = Callable[[Picture], None]  # a finished image, its index in the job that ran


class WorkerLost(Exception):
    """The worker died or stopped answering during a task; the task did not finish."""


class Worker(Protocol):
    """One worker as the driver sees it."""

    name: str
    alive: bool

    def run(self, task: Task, on_picture: OnPicture) -> Outcome:
        """Run the task's images from `task.first` on to its end (blocking), sending each
        image as it is finished; raises WorkerLost if the worker is gone."""
        ...

    def status(self) -> str:
        """One short line: what it is doing."""
        ...

    def cancel(self) -> None:
        """Stop the current task after its current step (its finished images come back)."""
        ...

    def held(self) -> tuple[set[str], str]:
        """The checkpoints it holds, and the current one."""
        ...


def ended(result: JobResult) -> tuple[str, str]:
    """A job result's status and reason, as the manifest says them."""
    if result.stopped is None:
        return "done", ""
    if result.stopped == "cancelled":
        return "cancelled", result.summary()
    return "failed", result.summary()


class DiffusersRunner:
    """Runs tasks on a diffusers backend of its own: the embedded engine's worker, and the body
    of each Ray actor. Progress and cancel are safe to call from another thread."""

    def __init__(self, backend: Any, detectors: Any) -> None:
        self.backend, self.detectors = backend, detectors
        self.control = Control()
        self.lock = threading.Lock()
        self.where = "idle"
        self.done, self.total = 0, 0

    def run(self, recipe: Any, job: Job, on_picture: OnPicture | None = None) -> Outcome:
        """Run one job, sending each image as it is finished; never raises for a job's own
        failure (the Outcome says it)."""
        import dataclasses

        def on_image(index: int, result: JobResult) -> None:
            if on_picture is not None:
                on_picture(picture_of(result, recipe, job, index))

        with self.lock:
            self.control = Control()
            self.where, self.done, self.total = "starting", 0, 0
        before = Counter(self.backend.disk_loads)
        started = time.monotonic()
        job = dataclasses.replace(job, detectors=self.detectors)
        try:
            result = run_job(
                recipe,
                job,
                self.backend,
                control=self.control,
                progress=self._on,
                on_image=on_image,
            )
        except Exception as e:  # a check that fails only here (a file gone meanwhile)
            images = list(job.images or [])
            result = JobResult.not_started(images, list(job.seeds)[: len(images)], e)
        if result.error is not None:  # plain text travels anywhere (Ray pickles the result)
            result.error = RuntimeError(" ".join(str(result.error).split()) or "error")
        status, reason = ended(result)
        loads = Counter(self.backend.disk_loads)
        loads.subtract(before)
        with self.lock:
            self.where = "idle"
        return Outcome(
            result=result,
            status=status,
            reason=reason,
            loads={k: v for k, v in loads.items() if v > 0},
            switches=list(result.checkpoints_loaded),
            held=tuple(self.backend.cached()) or (self.backend.current_checkpoint(),),
            loaded=self.backend.current_checkpoint(),
            seconds=time.monotonic() - started,
        )

    def _on(self, p: Progress) -> None:
        with self.lock:
            self.where = f"{p.label} [{p.image + 1}/{p.images}] step {p.step}/{p.steps}"
            self.done, self.total = p.done, p.total

    def progress(self) -> tuple[str, int, int]:
        """What it is doing, steps done and total of its current job."""
        with self.lock:
            return self.where, self.done, self.total

    def cancel(self) -> None:
        self.control.cancel()

    def disk_loads(self) -> dict[str, int]:
        return dict(self.backend.disk_loads)


class LocalWorker:
    """The embedded engine's one worker: a diffusers backend in this process."""

    def __init__(self, backend: Any, detectors: Any, name: str = "local") -> None:
        self.name = name
        self.alive = True
        self.runner = DiffusersRunner(backend, detectors)
        self.task: Task | None = None

    def run(self, task: Task, on_picture: OnPicture) -> Outcome:
        self.task = task
        try:
            return self.runner.run(task.spec.recipe, task.to_run, on_picture)
        finally:
            self.task = None

    def status(self) -> str:
        where, _done, _total = self.runner.progress()
        task = self.task
        return f"job {task.spec.number}: {where}" if task else "idle"

    def progress(self) -> tuple[int, int]:
        _where, done, total = self.runner.progress()
        return done, total

    def cancel(self) -> None:
        self.runner.cancel()

    def held(self) -> tuple[set[str], str]:
        backend = self.runner.backend
        return set(backend.cached()) | {backend.current_checkpoint()}, backend.current_checkpoint()
