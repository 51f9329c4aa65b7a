"""The driver: checks every job, hands jobs to idle workers, writes what comes back.

Whatever the engine (this process, Ray actors, WebUI hosts), the driver is the only writer:
each job's images go to its own folder the moment its worker sends them, then its manifest
line. A worker that dies has its job given to another (at most `max_attempts` tries, each one
in the manifest); a job that fails on a sound worker says why and the rest go on; `cancel`
(Ctrl-C) stops every worker after its current step and keeps what is done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..recipe import Problem, RecipeError
from .affinity import Need, pick
from .listfile import JobSpec
from .manifest import Manifest, finished_keys
from .workers import Outcome, Task, Worker, WorkerLost

MAX_ATTEMPTS = 3  # a job whose workers die this often is failed, not tried forever


def make_tasks(
    specs: Sequence[JobSpec],
    backend: Any | None,
    *,
    default_checkpoint: str,
) -> list[Task]:
    """Every job's task, each checked as `multipass run` checks its job (when `backend` is
    given: names, files, masks); RecipeError naming every problem of every job at once."""
    from ..inputs import InputError, read_inputs
    from ..preflight import prepare
    from ..runner import make_job

    tasks, problems = [], []
    inputs_of: dict[Path, Any] = {}
    for spec in specs:
        inputs = None
        if spec.init is not None:
            if spec.init not in inputs_of:
                try:
                    inputs_of[spec.init] = read_inputs(spec.init)
                except InputError as e:
                    inputs_of[spec.init] = e
            inputs = inputs_of[spec.init]
            if isinstance(inputs, InputError):
                problems.append(Problem(spec.where, "init", inputs.value, inputs.allowed))
                continue
        job = make_job(
            spec.recipe,
            default_checkpoint=default_checkpoint,
            size=spec.size,
            recipe_dir=spec.recipe_dir,
            inputs=inputs,
        )
        steps = job.count * job.ctx.steps * (1 + len(spec.recipe.passes))
        if backend is not None:
            try:
                runs, _masks = prepare(spec.recipe, job, backend)
            except RecipeError as e:
                problems += [
                    dataclasses.replace(p, where=f"{spec.where}, {p.where}") for p in e.problems
                ]
                continue
            base = 0 if job.images is not None else job.ctx.steps
            steps = job.count * (base + sum(r.count.run for r in runs))
        tasks.append(Task(spec, job, _need(spec, job, backend), max(1, steps)))
    if problems:
        raise RecipeError(problems)
    return tasks


def _need(spec: JobSpec, job: Any, backend: Any | None) -> Need:
    names = [job.ctx.checkpoint] + [
        p.checkpoint for p in spec.recipe.passes if p.enabled and p.checkpoint
    ]
    if backend is not None:
        names = [backend.checkpoint_id(n) or n for n in names]
    out: list[str] = []
    for n in names:
        if n and n not in out:
            out.append(n)
    return Need(tuple(out))


@dataclass
class Summary:
    """How a list went."""

    done: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0  # finished by an earlier run of the list
    not_started: int = 0
    retries: int = 0
    loads: dict[str, Counter[str]] = field(default_factory=dict)  # worker -> disk loads
    ran: Counter[str] = field(default_factory=Counter)  # worker -> jobs that ended there
    images: int = 0  # images written
    seconds: float = 0.0

    def text(self) -> str:
        parts = [f"{self.done} done"]
        for name in ("failed", "cancelled", "not_started", "skipped", "retries"):
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
    ) -> None:
        self.out_dir = Path(out_dir)
        self.workers = list(workers)
        self.stages, self.max_attempts = stages, max_attempts
        self.display, self.observer = display, observer
        self.summary = Summary(loads={w.name: Counter() for w in self.workers})
        finished = set() if fresh else finished_keys(self.out_dir)
        self.waiting = [t for t in tasks if t.spec.key not in finished]
        self.summary.skipped = len(tasks) - len(self.waiting)
        self.busy: dict[str, Task] = {}
        self.stopping = False
        self.results: queue.Queue[tuple[str, Worker, Task, Any]] = queue.Queue()
        self.manifest = Manifest(self.out_dir)
        self.steps_done = 0
        self.total_steps = sum(t.steps for t in self.waiting)

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
                del self.busy[worker.name]
                if kind == "outcome":
                    self._finished(worker, task, payload)
                else:
                    self._lost(worker, task, payload)
                self._tick()
            if not self.stopping:
                for task in self.waiting:  # no worker left to run them
                    self._record(task, None, "failed", "no worker left to run it")
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
                self._record(task, None, "failed", f"no live worker has its checkpoints ({names})")
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
            threading.Thread(target=self._work, args=(worker, task), daemon=True).start()

    def _work(self, worker: Worker, task: Task) -> None:
        try:
            self.results.put(("outcome", worker, task, worker.run(task)))
        except WorkerLost as e:
            self.results.put(("lost", worker, task, str(e)))
        except Exception as e:  # anything else from the worker's machinery: a lost worker too
            self.results.put(("lost", worker, task, f"{type(e).__name__}: {e}"))

    def _lost(self, worker: Worker, task: Task, why: str) -> None:
        self.summary.retries += 1
        task.retries.append(f"attempt {task.attempt} on {worker.name}: {why}")
        task.retries_on.add(worker.name)
        if task.attempt >= self.max_attempts:
            self._record(task, None, "failed", f"its worker was lost {task.attempt} times")
            return
        task.attempt += 1
        self.waiting.insert(0, task)

    # -- writing -----------------------------------------------------------------------------

    def _finished(self, worker: Worker, task: Task, outcome: Outcome) -> None:
        files = self._write(task, outcome)
        self.summary.loads.setdefault(worker.name, Counter()).update(outcome.loads)
        self.steps_done += task.steps
        self._record(task, worker, outcome.status, outcome.reason, outcome, files)

    def _write(self, task: Task, outcome: Outcome) -> list[str]:
        folder = self.out_dir / task.spec.folder
        if outcome.result is not None:
            from ..runner import write_outputs

            written = write_outputs(
                outcome.result, task.spec.recipe, task.job, folder, stages=self.stages
            )
            return [p.name for p in written.finals]
        return write_pictures(outcome.pictures or [], task, folder)

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
        self.summary.images += len(files)
        entry = {
            "job": task.spec.number,
            "line": task.spec.line,
            "key": task.spec.key,
            "name": task.spec.name,
            "folder": task.spec.folder,
            "status": status,
            "reason": reason,
            "seeds": list(task.job.seeds),
            "worker": worker.name if worker else None,
            "attempts": task.attempt,
            "retries": task.retries,
            "loads": outcome.loads if outcome else {},
            "switches": outcome.switches if outcome else [],
            "seconds": round(outcome.seconds, 3) if outcome else 0,
            "files": list(files),
        }
        self.manifest.add(entry)

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


def write_pictures(
    pictures: Sequence[tuple[Image.Image, str]], task: Task, folder: Path
) -> list[str]:
    """A WebUI host's images, each with the infotext the host wrote for it."""
    from ..runner import _save

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, (image, text) in enumerate(pictures):
        seed = task.job.seeds[i] if i < len(task.job.seeds) else i
        path = folder / f"{i + 1:02d}-{seed}-final.png"
        _save(image, path, text)
        names.append(path.name)
    return names
