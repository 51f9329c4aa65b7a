"""mediapipe's face and hand detectors, where `mediapipe` is importable and ships their models
(the 0.10 wheels carry the .tflite files and the `solutions` API; newer ones do not).

Faces come as boxes. Hands come as 21 landmarks each (mediapipe's hand model runs after its
palm detector); the box is the landmarks' extent grown by a margin, since fingertip and wrist
points sit on the hand's edge, not around it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..geometry import Box
from . import Detection, Entry

# name: (model files under mediapipe/modules, what it finds)
MODELS = {
    "mediapipe-face": (("face_detection/face_detection_full_range_sparse.tflite",), "faces"),
    "mediapipe-hands": (
        ("palm_detection/palm_detection_full.tflite", "hand_landmark/hand_landmark_full.tflite"),
        "hands",
    ),
}
HAND_MARGIN = 0.15  # of the landmarks' larger side, on every side
MAX_HANDS = 20


def _modules_dir() -> Path | None:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "modules"


def entries() -> list[Entry]:
    """mediapipe's detectors, each available or named with what its mediapipe lacks."""
    folder = _modules_dir()
    if folder is None:
        return []  # not installed: nothing to offer, nothing to explain
    makers = {"mediapipe-face": MediapipeFaces, "mediapipe-hands": MediapipeHands}
    out = []
    for name, (files, what) in MODELS.items():
        missing = [f for f in files if not (folder / f).is_file()]
        problem = None
        if missing:
            problem = (
                f"needs mediapipe's {Path(missing[0]).name}, which this mediapipe does not "
                "ship (0.10 does)"
            )
        source = "mediapipe, " + " + ".join(Path(f).name for f in files)
        out.append(Entry(name, what, source, problem, lambda n=name, m=makers[name]: m(n)))
    return out


def landmark_box(points: Iterable[tuple[float, float]], size: tuple[int, int]) -> Box | None:
    """The box around relative landmark points (0..1, may fall outside), grown by HAND_MARGIN of
    its larger side and clipped to the image; None when nothing of it is inside."""
    pts = list(points)
    if not pts:
        return None
    w, h = size
    xs, ys = [x * w for x, _ in pts], [y * h for _, y in pts]
    grow = HAND_MARGIN * max(max(xs) - min(xs), max(ys) - min(ys))
    x1, y1 = max(0, int(min(xs) - grow)), max(0, int(min(ys) - grow))
    x2, y2 = min(w, int(max(xs) + grow + 1)), min(h, int(max(ys) + grow + 1))
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


class MediapipeFaces:
    """mediapipe's full-range face detector (model 1), every face above 1% confidence."""

    what = "faces"

    def __init__(self, name: str) -> None:
        from mediapipe.python.solutions import face_detection

        self.name = name
        self._detector = face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=0.01
        )

    def detect(self, image: Any) -> list[Detection]:
        import numpy as np

        found = self._detector.process(np.asarray(image.convert("RGB")))
        w, h = image.size
        out = []
        for d in found.detections or []:
            b = d.location_data.relative_bounding_box
            x1, y1 = max(0, int(b.xmin * w)), max(0, int(b.ymin * h))
            x2, y2 = min(w, int((b.xmin + b.width) * w)), min(h, int((b.ymin + b.height) * h))
            if x2 > x1 and y2 > y1:
                out.append(Detection((x1, y1, x2, y2), float(d.score[0]), self.what))
        return out


class MediapipeHands:
    """mediapipe's hand landmarker on still images (up to MAX_HANDS hands), boxed. mediapipe
    drops palms below its own default 0.5; the legacy API reports no detection score, so a
    hand's confidence is its handedness score (0.5 to 1), which the pass's threshold filters."""

    what = "hands"

    def __init__(self, name: str) -> None:
        from mediapipe.python.solutions import hands

        self.name = name
        self._detector = hands.Hands(
            static_image_mode=True,
            max_num_hands=MAX_HANDS,
            model_complexity=1,
            min_detection_confidence=0.5,
        )

    def detect(self, image: Any) -> list[Detection]:
        import numpy as np

        found = self._detector.process(np.asarray(image.convert("RGB")))
        out = []

        for marks, side in zip(
            found.multi_hand_landmarks or [], found.multi_handedness or [], strict=False
        ):
            box = landmark_box(((p.x, p.y) for p in marks.landmark), image.size)
            if box is not None:
                out.append(Detection(box, float(side.classification[0].score), self.what))
        return out
