"""The driver: hands jobs to idle workers and writes what comes back as it comes.

Whatever the engine (this process, Ray actors, WebUI hosts), the driver is the only writer
(through `writer`): each image goes to its job's folder the moment its worker sends it, with a
manifest line, and the job's own line when it ends. A worker that dies has its job given to
another (at most `max_attempts` tries, each one in the manifest), which runs only the images
not yet written; a job that fails on a sound worker says why and the rest go on; `cancel`
(Ctrl-C) stops every worker after its current step and keeps what is done.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .affinity import pick
from .manifest import finished_keys
from .tasks import make_tasks
from .workers import Outcome, Task, Worker, WorkerLost
from .writer import Writer

MAX_ATTEMPTS = 3  # a job whose workers die this often is failed, not tried forever

__all__ = ["MAX_ATTEMPTS", "ListRun", "Summary", "make_tasks", "may_take"]


@dataclass
class Summary:
    """How a list went."""

    done: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0  # finished by an earlier run of the list
    not_started: int = 0
    retries: int = 0
    resumed: int = 0  # jobs that went on from the images an earlier run wrote
    loads: dict[str, Counter[str]] = field(default_factory=dict)  # worker -> disk loads
    ran: Counter[str] = field(default_factory=Counter)  # worker -> jobs that ended there
    images: int = 0  # image files written
    seconds: float = 0.0

    def text(self) -> str:
        parts = [f"{self.done} done"]
        for name in ("failed", "cancelled", "not_started", "skipped", "resumed", "retries"):
            if getattr(self, name):
                parts.append(f"{getattr(self, name)} {name.replace('_', ' ')}")
        return ", ".join(parts) + f" in {self.seconds:.1f} s"


class ListRun:
    """One run of a job list over a set of workers."""

    def __init__(
        self,
        tasks: Sequence[Task],
        workers: Sequence[Worker],
        out_dir: Path,
        *,
        stages: bool = False,
        max_attempts: int = MAX_ATTEMPTS,
        display: Any = None,
        observer: Callable[[ListRun], None] | None = None,
        fresh: bool = False,
        animation: Any = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.workers = list(workers)
        self.max_attempts = max_attempts
        self.display, self.observer = display, observer
        self.summary = Summary(loads={w.name: Counter() for w in self.workers})
        self.writer = Writer(self.out_dir, stages=stages, animation=animation)
        finished = set() if fresh else finished_keys(self.out_dir)
        self.waiting = [t for t in tasks if t.spec.key not in finished]
        self.summary.skipped = len(tasks) - len(self.waiting)
        for task in [] if fresh else list(self.waiting):
            self.writer.resume(task)
            self.summary.resumed += bool(task.written)
            if task.first >= task.job.count:  # every image was written, the job's end was not
                self.waiting.remove(task)
                why = "its images were all written by an earlier run of the list"
                self._record(task, None, "done", why, files=task.written_files)
        self.busy: dict[str, Task] = {}
        self.stopping = False
        self.results: queue.Queue[tuple[str, Worker, Task, Any]] = queue.Queue()
        self.steps_done = 0
        self.total_steps = sum(t.steps_left for t in self.waiting)

    def cancel(self) -> None:
        """Stop after every worker's current step; finished images are kept (Ctrl-C)."""
        self.stopping = True
        for w in self.workers:
            if w.name in self.busy:
                # a worker that is gone cannot be asked; its job is lost
                with contextlib.suppress(Exception):
                    w.cancel()

    def run(self) -> Summary:
        started = time.monotonic()
        try:
            while self.busy or (self.waiting and not self.stopping and self._live()):
                self._hand_out()
                try:
                    kind, worker, task, payload = self.results.get(timeout=0.25)
                except queue.Empty:
                    self._tick()
                    continue
                if kind == "picture":
                    self.writer.picture(task, worker.name, payload)
                elif kind == "outcome":
                    del self.busy[worker.name]
                    self._finished(worker, task, payload)
                else:
                    del self.busy[worker.name]
                    self._lost(worker, task, payload)
                self.summary.images = self.writer.images
                self._tick()
            if not self.stopping:
                for task in self.waiting:  # no worker left to run them
                    why = "no worker left to run it"
                    self._record(task, None, "failed", why, files=task.written_files)
                self.waiting = []
            self.summary.not_started = len(self.waiting)
        finally:
            self.summary.seconds = time.monotonic() - started
            if self.display is not None:
                self.display.close()
        return self.summary

    # -- handing out ----------------------------------------------------------------------------

    def _live(self) -> list[Worker]:
        return [w for w in self.workers if w.alive]

    def _hand_out(self) -> None:
        live = self._live()
        for task in list(self.waiting) if live and not self.stopping else []:
            if not any(_can_run(w, task) for w in live):  # no live worker has its checkpoints
                self.waiting.remove(task)
                names = ", ".join(task.need.checkpoints)
                why = f"no live worker has its checkpoints ({names})"
                self._record(task, None, "failed", why, files=task.written_files)
        for worker in live:
            if self.stopping or not self.waiting:
                return
            if worker.name in self.busy:
                continue
            choices = [
                t
                for t in self.waiting
                if _can_run(worker, t)
                and may_take(t.retries_on, worker.name, [w.name for w in live if _can_run(w, t)])
            ]
            if not choices:
                continue
            held, loaded = worker.held()
            others = [c for n, t in self.busy.items() for c in t.need.checkpoints[:1]]
            task = choices[pick([t.need for t in choices], held, loaded, others)]
            self.waiting.remove(task)
            self.busy[worker.name] = task
            self.writer.starting(task)
            task.partials = []
            threading.Thread(target=self._work, args=(worker, task), daemon=True).start()

    def _work(self, worker: Worker, task: Task) -> None:
        def sent(picture: Any) -> None:
            self.results.put(("picture", worker, task, picture))

        try:
            self.results.put(("outcome", worker, task, worker.run(task, sent)))
        except WorkerLost as e:
            self.results.put(("lost", worker, task, str(e)))
        except Exception as e:  # anything else from the worker's machinery: a lost worker too
            self.results.put(("lost", worker, task, f"{type(e).__name__}: {e}"))

    def _lost(self, worker: Worker, task: Task, why: str) -> None:
        self.summary.retries += 1
        count = task.job.count
        kept = f"; {len(task.written)} of {count} images were written" if task.written else ""
        task.retries.append(f"attempt {task.attempt} on {worker.name}: {why}{kept}")
        task.retries_on.add(worker.name)
        task.start_after_written()
        if task.first >= task.job.count:  # it sent every image before it was lost
            why = "its worker was lost after its last image; every image is written"
            self._record(task, worker, "done", why, files=task.written_files)
            return
        if task.attempt >= self.max_attempts:
            why = f"its worker was lost {task.attempt} times"
            self._record(task, None, "failed", why, files=task.written_files)
            return
        task.attempt += 1
        self.waiting.insert(0, task)

    # -- ending ------------------------------------------------------------------------------

    def _finished(self, worker: Worker, task: Task, outcome: Outcome) -> None:
        self.steps_done += task.steps_left
        files = self.writer.ended(task, worker.name, outcome)
        self.summary.loads.setdefault(worker.name, Counter()).update(outcome.loads)
        self._record(task, worker, outcome.status, outcome.reason, outcome, files)

    def _record(
        self,
        task: Task,
        worker: Worker | None,
        status: str,
        reason: str,
        outcome: Outcome | None = None,
        files: Sequence[str] = (),
    ) -> None:
        setattr(self.summary, status, getattr(self.summary, status) + 1)
        if worker is not None:
            self.summary.ran[worker.name] += 1
        self.writer.record(task, worker.name if worker else None, status, reason, outcome, files)

    def _tick(self) -> None:
        if self.observer is not None:
            self.observer(self)
        if self.display is not None:
            self.display.update(self)


def _can_run(worker: Worker, task: Task) -> bool:
    can_run = getattr(worker, "can_run", None)  # WebUI hosts: those with the job's models
    return can_run is None or can_run(task)


def may_take(lost_on: set[str], worker: str, live: Sequence[str]) -> bool:
    """Whether `worker` may take a job that was lost on the workers `lost_on`: a lost job goes
    elsewhere when there is an elsewhere (a live worker it was not lost on), else anywhere
    live, so a job is never left waiting while its attempts last."""
    if worker not in lost_on:
        return True
    return not any(w not in lost_on for w in live)
