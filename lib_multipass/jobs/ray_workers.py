"""Ray workers: one actor per GPU (or CPU slot), each with its own diffusers backend and RAM
cache, on a local Ray started on demand or an existing cluster (`--ray-address`).

Ray does what it is for: placing the actors on nodes with the resources they ask for, restarting
an actor whose process dies (`max_restarts`), and carrying recipes, images and results between
processes. An actor's `run` is a Ray generator: each image comes back the moment it is
finished (Ray streams a generator method's values), so the driver writes it then. The driver
only chooses which waiting job an idle actor takes (checkpoint affinity); a job whose actor
died goes back to the waiting jobs, to run from its first image not written, and its manifest
line says so.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..protocol import Job
from ..recipe import RecipeError
from .images import Picture
from .workers import DiffusersRunner, OnPicture, Outcome, Task, WorkerLost

ROOT = Path(__file__).resolve().parent.parent.parent  # where lib_multipass is importable from


class JobActor:
    """The body of a Ray actor: a diffusers backend of its own, one job at a time; progress
    and cancel answer while a job runs (the actor is threaded)."""

    def __init__(self, backend: dict[str, Any], detectors: dict[str, Any]) -> None:
        from ..backends.diffusers_backend import DiffusersBackend
        from ..detectors import Registry

        self.runner = DiffusersRunner(DiffusersBackend(**backend), Registry(**detectors))
        self.warmed = _warm()  # before any call is served: imports never race a job's

    def run(self, recipe: Any, job: Job) -> Iterator[Picture | Outcome]:
        """Each image as it is finished, then the job's Outcome (the job runs in a thread of
        the actor's; a generator method is streamed by Ray)."""
        made: queue.Queue[Picture | Outcome | BaseException] = queue.Queue()

        def work() -> None:
            try:
                made.put(self.runner.run(recipe, job, made.put))
            except BaseException as e:  # reaches the driver as the call's error
                made.put(e)

        threading.Thread(target=work, daemon=True).start()
        while True:
            item = made.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, Outcome):
                return

    def progress(self) -> tuple[str, int, int]:
        return self.runner.progress()

    def cancel(self) -> None:
        self.runner.cancel()

    def pid(self) -> int:
        return os.getpid()


def _warm() -> float:
    """Import what a first job would (diffusers' pipelines, the text encoders): the seconds of
    a new process's first job that no job should wait for. Returns its seconds."""
    import time

    import diffusers
    import transformers

    started = time.perf_counter()
    for name in (
        "StableDiffusionPipeline",
        "StableDiffusionImg2ImgPipeline",
        "StableDiffusionInpaintPipeline",
        "StableDiffusionXLPipeline",
        "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline",
    ):
        getattr(diffusers, name)
    transformers.CLIPTextModel, transformers.CLIPTextModelWithProjection  # noqa: B018
    return time.perf_counter() - started


ADDRESS_ALLOWED = (
    "a running Ray cluster's address: HOST:PORT of its head (as `ray start --head` prints it), "
    "ray://HOST:PORT for Ray Client, or auto"
)


def address_problem(address: str) -> str | None:
    """Why `address` cannot be a Ray cluster's address, or None (the form only)."""
    if address == "auto":
        return None
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    if not host or "/" in rest or not port.isdigit() or not 0 < int(port) < 65536:
        return ADDRESS_ALLOWED
    return None


def address_unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why nothing answers at a HOST:PORT address (refused, no route, timed out), or None;
    checked before Ray is asked, which would keep retrying for a long while."""
    import socket

    if address == "auto":
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except OSError as e:
        return f"{ADDRESS_ALLOWED} (nothing answered at {host}:{port}: {e.strerror or e})"


def start_ray(address: str | None, cpus: int) -> bool:
    """Connect to the cluster at `address`, or start a local Ray with `cpus` CPU slots, on
    loopback only; nothing when Ray is already up in this process. True if started here.
    A cluster that is not there is bad input naming --ray-address."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        why = address_problem(address) or address_unreachable(address)
        if why is None:
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                why = f"{ADDRESS_ALLOWED} (Ray: {_first_line(e)})"
        if why is not None:
            raise RecipeError.single("command line", "--ray-address", address, why)
    else:
        ray.init(
            num_cpus=cpus,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
        )
    return True


def runtime_env() -> dict[str, Any]:
    """What each actor's process needs from ours: this Multipass on its path, the same model
    home, and no model hub."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {"PYTHONPATH": os.pathsep.join(paths), "HF_HUB_OFFLINE": "1"}
    for name in ("MULTIPASS_HOME", "HF_HOME"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return {"env_vars": env}


def ray_workers(
    count: int | None,
    backend: dict[str, Any],
    detectors: dict[str, Any],
    *,
    max_restarts: int = 3,
) -> list[RayWorker]:
    """`count` actors (default: one per GPU of the cluster, else one per CPU), each asking
    for one GPU, or one CPU where the cluster has no GPU."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    slots = gpus or max(1, int(resources.get("CPU", 1)))
    if count is not None and count > slots:  # Ray would wait for the missing slots forever
        what = f"{gpus} GPUs" if gpus else f"{slots} CPUs"
        allowed = f"at most one worker per GPU, or per CPU where there is none (Ray has {what})"
        raise RecipeError.single("command line", "--workers", count, allowed)
    count = count or slots
    actor = ray.remote(JobActor).options(
        num_cpus=0 if gpus else 1,
        num_gpus=1 if gpus else 0,
        max_restarts=max_restarts,
        max_task_retries=0,  # a lost job is the driver's to give to another actor
        max_concurrency=3,  # a job, its progress, its cancel
        runtime_env=runtime_env(),
    )
    return [RayWorker(f"ray-{i + 1}", actor.remote(backend, detectors)) for i in range(count)]


class RayWorker:
    """The driver's side of one actor."""

    def __init__(self, name: str, actor: Any) -> None:
        self.name, self.actor = name, actor
        self.alive = True
        self._held: set[str] = set()
        self._loaded = ""
        self._asked: Any = None  # a progress call in flight
        self._where, self._done, self._total = "starting", 0, 0
        self.task: Task | None = None

    def run(self, task: Task, on_picture: OnPicture) -> Outcome:
        import ray
        from ray.exceptions import RayActorError, RayError

        self.task = task
        self._where, self._done, self._total = "sent", 0, 0
        self._asked = None  # an answer still on its way is the last job's
        outcome = None
        try:
            for ref in self.actor.run.remote(task.spec.recipe, task.to_run):
                item = ray.get(ref)
                if isinstance(item, Outcome):
                    outcome = item
                else:
                    on_picture(item)
        except RayActorError as e:
            self._held, self._loaded = set(), ""
            self._still_there()
            raise WorkerLost(f"actor died ({_first_line(e)})") from None
        except RayError as e:
            raise WorkerLost(_first_line(e)) from None
        finally:
            self.task = None
        if outcome is None:
            raise WorkerLost("the actor's answer ended before the job's end")
        self._held, self._loaded = set(outcome.held) | {outcome.loaded}, outcome.loaded
        return outcome

    def _still_there(self) -> None:
        """After a death: whether Ray brings the actor back (restarts left) or not."""
        import ray

        try:
            ray.get(self.actor.pid.remote(), timeout=300)
        except Exception:
            self.alive = False

    def _poll(self) -> None:
        import ray

        if self._asked is None:
            self._asked = self.actor.progress.remote()
            return
        ready, _ = ray.wait([self._asked], timeout=0)
        if ready:
            with contextlib.suppress(Exception):
                self._where, self._done, self._total = ray.get(ready[0])
            self._asked = None

    def status(self) -> str:
        task = self.task
        if task is None:
            return "idle"
        self._poll()
        return f"job {task.spec.number}: {self._where}"

    def progress(self) -> tuple[int, int]:
        return self._done, self._total

    def cancel(self) -> None:
        self.actor.cancel.remote()

    def held(self) -> tuple[set[str], str]:
        return set(self._held), self._loaded


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
