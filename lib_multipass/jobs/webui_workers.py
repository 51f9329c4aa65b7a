"""WebUI hosts as workers: a running WebUI (A1111, reForge, Forge) with Multipass installed,
driven through its API. A job goes as POST /sdapi/v1/txt2img requests of up to
`images_per_request` images each (the seeds of the whole job, in order): the base from the
job's base (its checkpoint as `override_settings`, restored afterwards), the passes as
`alwayson_scripts.multipass`; the host's own models, LoRAs and ControlNet run it, and each
request's images come back with the infotexts the host wrote and are written at once. A
request runs its passes over all its images (checkpoints switch per request), so smaller
requests lose less when a host stops and switch more. A host that refuses the connection,
drops it or answers 5xx is lost: its job goes to another host, from its first image not
written. A 422 (a recipe the host cannot run, e.g. a checkpoint it does not have) fails that
job, named, and the rest go on.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..protocol import Job
from .host_progress import Poller
from .images import Picture, stem_of
from .webui_requests import detail, ended, pictures_of, request_for
from .workers import OnPicture, Outcome, Task, WorkerLost

TIMEOUT = 3600.0  # seconds a host may take over one request before it counts as lost
IMAGES_PER_REQUEST = 4
URL_ALLOWED = "a WebUI's address, http:// or https:// with a host (e.g. http://192.168.1.20:7860)"


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a host's address, or None."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return URL_ALLOWED
    try:
        parts.port  # noqa: B018 - raises for a port that is not one
    except ValueError:
        return URL_ALLOWED + " (this port is not a number from 0 to 65535)"
    return None


def checkpoint_names(models: Any) -> set[str]:
    """Every name a host answers to for its checkpoints, from GET /sdapi/v1/sd-models (A1111
    api.py get_sd_models: title, model_name, filename): titles with and without the hash, model
    names, and file names with and without their suffix."""
    names: set[str] = set()
    for m in models if isinstance(models, list) else []:
        if not isinstance(m, dict):
            continue
        title, filename = str(m.get("title") or ""), str(m.get("filename") or "")
        base = filename.replace("\\", "/").rsplit("/", 1)[-1]
        names |= {title, title.split(" [")[0], str(m.get("model_name") or ""), base}
        names.add(base.rsplit(".", 1)[0])
    return names - {""}


def knows(names: set[str], name: str) -> bool:
    """Whether a host with checkpoint `names` takes `name` (as its dropdown or an API gives it)."""
    plain = name.split(" [")[0]
    return bool({name, plain, plain.rsplit(".", 1)[0]} & names)


class WebUIWorker:
    """One host. It runs one job at a time, as a WebUI does."""

    def __init__(
        self,
        url: str,
        name: str | None = None,
        timeout: float = TIMEOUT,
        images_per_request: int = IMAGES_PER_REQUEST,
    ) -> None:
        self.url = url.rstrip("/")
        self.name = name or urllib.parse.urlsplit(url).netloc
        self.timeout = timeout
        self.images_per_request = max(1, images_per_request)
        self.alive = True
        self.task: Task | None = None
        self._held: set[str] = set()
        self._loaded = ""
        self.cancelled = False  # the current job was asked to stop (its answer may not say)
        self.poller = Poller(self.url)  # the host's progress while a job runs
        self._made, self._making, self._count = 0, 0, 0  # images: before this request, in it, all
        self.checkpoints: set[str] | None = None  # its names, once asked (None: not known)

    def ask_checkpoints(self) -> str | None:
        """Read the host's checkpoint names; why it cannot be a worker, or None."""
        request = urllib.request.Request(self.url + "/sdapi/v1/sd-models")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                models = json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            hint = " (start it with --api)" if e.code == 404 else ""
            return f"a running WebUI with its API on; it answered {e.code}{hint}"
        except (OSError, ValueError) as e:
            return f"a running WebUI with its API on; it did not answer ({getattr(e, 'reason', e)})"
        self.checkpoints = checkpoint_names(models)
        return None

    def can_run_name(self, name: str) -> bool:
        return self.checkpoints is None or knows(self.checkpoints, name)

    def can_run(self, task: Task) -> bool:
        """Whether this host has every checkpoint the job names (unknown: it may)."""
        names = self.checkpoints
        return names is None or all(knows(names, n) for n in task.need.checkpoints)

    def _post(self, path: str, body: dict[str, Any], timeout: float) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read() or b"null")
            except ValueError:
                detail = None
            return e.code, detail

    def run(self, task: Task, on_picture: OnPicture) -> Outcome:
        """The task's images from `task.first` on, a request at a time, each request's images
        sent as it returns; the first request that does not finish ends the job."""
        import time

        self.task = task
        self.cancelled = False
        started = time.monotonic()
        job = task.to_run
        self._made, self._making, self._count = 0, 0, job.count
        self.poller.start()
        try:
            for start in range(0, job.count, self.images_per_request):
                count = min(self.images_per_request, job.count - start)
                self._made, self._making = start, count
                self.poller.latest = None  # the last request's reading is not this one's
                status, reason = self._request(task, job, start, count, on_picture)
                if status != "done":
                    return Outcome(status=status, reason=reason, seconds=time.monotonic() - started)
                if self.cancelled:  # asked between requests: the rest are not started
                    reason = f"cancelled after {start + count} of {job.count} images"
                    return Outcome(
                        status="cancelled", reason=reason, seconds=time.monotonic() - started
                    )
        finally:
            self.poller.stop()
            self.task = None
        self._held |= set(task.need.checkpoints)
        self._loaded = task.need.first
        return Outcome(status="done", seconds=time.monotonic() - started)

    def _request(
        self, task: Task, job: Job, start: int, count: int, on_picture: OnPicture
    ) -> tuple[str, str]:
        """One request (txt2img, or img2img with the job's images) of `count` images from
        `start`; its images are sent as pictures (final when it finished, else partial); how
        it ended and why."""
        path, body = request_for(task, job, start, count)
        try:
            status, answer = self._post(path, body, self.timeout)
        except (OSError, ValueError) as e:  # refused, reset, timed out, not JSON
            self.alive = False
            why = getattr(e, "reason", None) or e
            raise WorkerLost(f"host {self.url} stopped answering ({why})") from None
        if status >= 500:
            raise WorkerLost(f"host {self.url} answered {status}: {detail(answer)}")
        if status != 200 or not isinstance(answer, dict):
            return "failed", f"the host refused the job ({status}): {detail(answer)}"
        pictures, result = pictures_of(answer)
        ended_as, reason = ended(result, len(pictures), count, self.cancelled)
        state = "final" if ended_as == "done" else "partial"
        for k, (image, text) in enumerate(pictures[:count]):
            on_picture(Picture(start + k, image, text, stem_of(job, start + k), state))
        return ended_as, reason

    def status(self) -> str:
        """What the host is doing: the job, its images in this request, and the host's own
        progress (GET /sdapi/v1/progress) where it answers."""
        task = self.task
        if task is None:
            return "idle"
        first = self._made + 1
        images = (
            f"image {first}" if self._making == 1 else f"images {first}-{self._made + self._making}"
        )
        line = f"job {task.spec.number}: at {self.url}, {images} of {self._count}"
        reading, error = self.poller.latest, self.poller.error
        if reading is not None:
            return f"{line}: {reading.describe()}"
        return f"{line} (no progress from the host: {error})" if error else line

    def progress(self) -> tuple[int, int]:
        """The job's share done, in thousandths: the requests before this one, and this one's
        as the host says it."""
        reading = self.poller.latest
        if not self._count:
            return 0, 0
        now = self._making * reading.fraction if reading is not None else 0.0
        return round(1000 * (self._made + now) / self._count), 1000

    def cancel(self) -> None:
        self.cancelled = True
        with contextlib.suppress(OSError):
            self._post("/sdapi/v1/interrupt", {}, 10)

    def held(self) -> tuple[set[str], str]:
        return set(self._held), self._loaded
