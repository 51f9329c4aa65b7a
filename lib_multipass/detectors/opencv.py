"""OpenCV's Haar cascades: a face (and body) detector in every opencv-python 4.x wheel.

A cascade gives no probability; its strength is how many neighbouring windows agree on a box.
Multipass reports n / (n + 10) as its confidence: 3 neighbours 0.23, 10 are 0.5, 40 are 0.8.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from . import Detection, Entry

CASCADES = {
    "opencv-face": ("haarcascade_frontalface_default.xml", "faces"),
    "opencv-face-profile": ("haarcascade_profileface.xml", "faces"),
    "opencv-upper-body": ("haarcascade_upperbody.xml", "people"),
    "opencv-full-body": ("haarcascade_fullbody.xml", "people"),
}
NEIGHBOURS_AT_HALF = 10


class CascadeDetector:
    def __init__(self, name: str, path: str, what: str) -> None:
        import cv2

        self.name, self.what = name, what
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV could not read the cascade {path}")

    def detect(self, image: Any) -> list[Detection]:
        import numpy as np

        gray = np.asarray(image.convert("L"))
        side = min(gray.shape)
        smallest = max(16, side // 40)
        boxes, neighbours = self._cascade.detectMultiScale2(
            gray, scaleFactor=1.1, minNeighbors=1, minSize=(smallest, smallest)
        )
        out = []
        for (x, y, w, h), n in zip(boxes, neighbours, strict=False):
            n = int(n)
            score = n / (n + NEIGHBOURS_AT_HALF)
            out.append(Detection((int(x), int(y), int(x + w), int(y + h)), score, self.what))
        return out


def entries() -> list[Entry]:
    """OpenCV's cascades, available where cv2 imports and ships them (4.x does, 5.x not)."""
    if importlib.util.find_spec("cv2") is None:
        why = "needs OpenCV (opencv-python 4.x), which is not installed"
        return [Entry(n, w, "OpenCV", why) for n, (_, w) in CASCADES.items()]
    try:
        import cv2
    except Exception as e:  # installed but broken, e.g. opencv-python without libGL
        why = f"needs OpenCV, which is installed but does not import here ({e})"
        return [Entry(n, w, "OpenCV", why) for n, (_, w) in CASCADES.items()]

    folder = getattr(getattr(cv2, "data", None), "haarcascades", "") or ""
    out = []
    for name, (file, what) in CASCADES.items():
        path = os.path.join(folder, file)
        source = f"OpenCV {cv2.__version__}, {file}"
        if not os.path.isfile(path):
            why = f"needs OpenCV's {file}, which OpenCV {cv2.__version__} does not ship (4.x does)"
            out.append(Entry(name, what, source, why))
        else:
            out.append(
                Entry(
                    name,
                    what,
                    source,
                    None,
                    lambda n=name, p=path, w=what: CascadeDetector(n, p, w),
                )
            )
    return out
