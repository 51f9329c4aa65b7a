"""mediapipe's face detector, where `mediapipe` is importable and ships its model (the
0.10 wheels carry face_detection_*.tflite and the `solutions` API; newer ones do not)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from . import Detection, Entry

MODELS = {"mediapipe-face": ("face_detection_full_range_sparse.tflite", 1, "faces")}


def _model_dir() -> Path | None:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "modules" / "face_detection"


def entries() -> list[Entry]:
    folder = _model_dir()
    if folder is None:
        return []  # not installed: nothing to offer, nothing to explain
    out = []
    for name, (file, selection, what) in MODELS.items():
        problem = None
        if not (folder / file).is_file():
            problem = f"needs mediapipe's {file}, which this mediapipe does not ship (0.10 does)"
        out.append(
            Entry(
                name,
                what,
                f"mediapipe, {file}",
                problem,
                lambda n=name, s=selection, w=what: MediapipeFaces(n, s, w),
            )
        )
    return out


class MediapipeFaces:
    def __init__(self, name: str, selection: int, what: str) -> None:
        from mediapipe.python.solutions import face_detection

        self.name, self.what = name, what
        self._detector = face_detection.FaceDetection(
            model_selection=selection, min_detection_confidence=0.01
        )

    def detect(self, image: Any) -> list[Detection]:
        import numpy as np

        rgb = np.asarray(image.convert("RGB"))
        found = self._detector.process(rgb)
        w, h = image.size
        out = []
        for d in found.detections or []:
            b = d.location_data.relative_bounding_box
            x1, y1 = max(0, int(b.xmin * w)), max(0, int(b.ymin * h))
            x2, y2 = min(w, int((b.xmin + b.width) * w)), min(h, int((b.ymin + b.height) * h))
            if x2 > x1 and y2 > y1:
                out.append(Detection((x1, y1, x2, y2), float(d.score[0]), self.what))
        return out
