"""A WebUI host's progress while it runs a job's request: GET /sdapi/v1/progress, polled in a
thread of its own, for the worker's status line and the list's step count.

The answer's shape is A1111 1.10.1's `ProgressResponse` (modules/api/models.py:189-194):
`progress` (0 to 1, of the request), `eta_relative` (seconds), `state` (`shared.state.dict()`:
`job`, `job_no`, `job_count`, `sampling_step`, `sampling_steps`, ...), `current_image` and
`textinfo`; api.py:602-628 computes it, without the queue lock, so it answers while a request
runs. reForge and Forge keep the route. A host that answers it with an error, or not at all,
only goes without a status line: the request and the job go on.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any

POLL_SECONDS = 1.0
TIMEOUT = 5.0


@dataclass(frozen=True)
class HostProgress:
    """One reading of a host's progress."""

    fraction: float  # of the current request, 0 to 1
    eta: float | None  # seconds left in the request, as the host guesses them
    job_no: int  # the host's job (a batch or one of Multipass's nested jobs) and their count
    job_count: int
    step: int  # the current job's sampling step and steps
    steps: int
    text: str  # the host's textinfo, e.g. Multipass's "Multipass: pass 2, image 1 of 4"

    def describe(self) -> str:
        parts = []
        if self.text:
            parts.append(self.text)
        if self.job_count > 0:
            parts.append(f"job {min(self.job_no + 1, self.job_count)}/{self.job_count}")
        if self.steps > 0:
            parts.append(f"step {self.step}/{self.steps}")
        parts.append(f"{self.fraction:.0%}")
        if self.eta is not None and self.eta >= 0:
            parts.append(f"ETA {self.eta:.0f} s")
        return ", ".join(parts)


def read_progress(answer: Any) -> HostProgress | None:
    """A progress answer, read defensively (None when it is not one)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("progress"), (int, float)):
        return None
    state = answer.get("state") if isinstance(answer.get("state"), dict) else {}

    def number(value: Any) -> int:
        return int(value) if isinstance(value, (int, float)) else 0

    eta = answer.get("eta_relative")
    text = answer.get("textinfo")
    return HostProgress(
        fraction=min(1.0, max(0.0, float(answer["progress"]))),
        eta=float(eta) if isinstance(eta, (int, float)) else None,
        job_no=number(state.get("job_no")),
        job_count=number(state.get("job_count")),
        step=number(state.get("sampling_step")),
        steps=number(state.get("sampling_steps")),
        text=" ".join(text.split())[:120] if isinstance(text, str) else "",
    )


class Poller:
    """Asks a host for its progress every `interval` seconds until stopped; `latest` is the
    last reading, `error` why the last ask got none."""

    def __init__(self, url: str, interval: float = POLL_SECONDS, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/") + "/sdapi/v1/progress?skip_current_image=true"
        self.interval, self.timeout = interval, timeout
        self.latest: HostProgress | None = None
        self.error: str | None = None
        self.asked = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self.latest, self.error = None, None
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()  # a poll in flight ends by its timeout; nobody waits for it

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def poll(self) -> None:
        self.asked += 1
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                reading = read_progress(json.loads(response.read() or b"null"))
        except Exception as e:  # an error page, no answer, not JSON: no status, no harm
            self.error = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"[:120]
            return
        if self._stop.is_set():
            return  # an answer from after the request: not this request's
        if reading is None:
            self.error = "not a progress answer"
        else:
            self.latest, self.error = reading, None
