"""Detectors for detail passes: find faces, hands or people in each image of a job.

A detector is whatever the host already has: OpenCV's Haar cascades ship inside every
opencv-python 4.x wheel (and every WebUI has OpenCV), YOLO detection and segmentation models
run where `ultralytics` is importable, mediapipe's face and hand detectors where `mediapipe` is
and ships their models.
 Nothing is installed into a WebUI and nothing is downloaded: a detector that is not
there is named as such, with the reason, before a job starts.

`Registry` lists what is available (for the UI's dropdown, the API schema and `multipass
detectors`) and makes detectors by name; `select` (pure) filters and orders detections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..geometry import Box


@dataclass(frozen=True)
class Detection:
    """One thing a detector found: its box in the image, a confidence from 0 to 1, and where
    the model gives one, its outline (an L mask the size of the box, white inside)."""

    box: Box
    score: float
    label: str = ""
    mask: Any = None  # PIL L image of the box's size, or None

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


class Detector(Protocol):
    """Finds things in an image."""

    name: str
    what: str  # "faces", "hands", "people", "objects": what plans and hints call them

    def detect(self, image: Any) -> list[Detection]:
        """Every detection in a PIL image, in any order, with confidences from 0 to 1."""
        ...


@dataclass(frozen=True)
class Entry:
    """A detector the registry knows of, available or not (and why not)."""

    name: str
    what: str
    source: str  # where it comes from: "OpenCV 4.10 (bundled cascade)", a model file...
    problem: str | None = None  # None: available
    make: Any = field(default=None, compare=False)  # () -> Detector


SINGULAR = {"faces": "face", "hands": "hand", "people": "person", "objects": "object"}


def how_many(n: int, what: str) -> str:
    """'1 face', '3 faces', '0 people'."""
    return f"{n} {SINGULAR.get(what, what) if n == 1 else what}"


def what_from_name(name: str) -> str:
    """What a model file's name says it finds (adetailer's names: face_, hand_, person_)."""
    low = name.lower()
    for word, what in (("face", "faces"), ("hand", "hands"), ("person", "people")):
        if word in low:
            return what
    return "objects"


class Registry:
    """The detectors of this host: OpenCV's cascades, YOLO files in `folders`, mediapipe.

    `allow_pickles`: YOLO `.pt` files are pickles, which run code when loaded; like `.ckpt`
    checkpoints they load only on the user's opt-in (`.safetensors` models always can).
    """

    def __init__(self, folders: Sequence[Path] = (), *, allow_pickles: bool = False) -> None:
        self.folders = [Path(f) for f in folders]
        self.allow_pickles = allow_pickles
        self._made: dict[str, Detector] = {}
        self._entries: dict[str, Entry] | None = None

    def entries(self) -> dict[str, Entry]:
        """Every detector known here, by name, available or not."""
        if self._entries is None:
            from . import mediapipe_detector, opencv, yolo

            found: dict[str, Entry] = {}
            for e in [
                *opencv.entries(),
                *yolo.entries(self.folders, self.allow_pickles),
                *mediapipe_detector.entries(),
            ]:
                found.setdefault(e.name, e)
            self._entries = found
        return self._entries

    def names(self) -> list[str]:
        """The detectors that can run here, as the UI's dropdown and the schema list them."""
        return [n for n, e in self.entries().items() if e.problem is None]

    def problem(self, name: str) -> str | None:
        """Why `name` cannot be used here (None if it can), saying what can."""
        entry = self.entries().get(name)
        if entry is not None and entry.problem is None:
            return None
        available = ", ".join(repr(n) for n in self.names()) or "none on this machine"
        if entry is None:
            return f"one of {available}"
        return f"one of {available} ({name} {entry.problem})"

    def get(self, name: str) -> Detector:
        """The detector called `name`, made once."""
        if name not in self._made:
            problem = self.problem(name)
            if problem is not None:
                raise LookupError(f"detector {name!r}: allowed: {problem}")
            self._made[name] = self.entries()[name].make()
        return self._made[name]
