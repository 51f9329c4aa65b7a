"""YOLO detection and segmentation models (adetailer's), where `ultralytics` is importable.

Models are files in the detector folders (a WebUI's models/adetailer and models/multipass;
headless, ~/.cache/multipass/detectors and --detectors). `.pt` files are pickles, which run
code when loaded, so they load only on the user's opt-in, like `.ckpt` checkpoints; a
`.safetensors` model carries its ultralytics architecture (YAML) in its metadata under
`ultralytics.yaml` and always loads.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import Detection, Entry, what_from_name

EXTENSIONS = (".pt", ".safetensors")
YAML_KEY = "ultralytics.yaml"


def model_files(folders: Sequence[Path]) -> list[Path]:
    """YOLO model files in the folders, first folder first, each name once."""
    seen: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix in EXTENSIONS and path.is_file():
                    seen.setdefault(path.name, path)
    return list(seen.values())


def entries(folders: Sequence[Path], allow_pickles: bool) -> list[Entry]:
    files = model_files(folders)
    if not files:
        return []
    have = importlib.util.find_spec("ultralytics") is not None
    out = []
    for path in files:
        what = what_from_name(path.name)
        problem = None
        if not have:
            problem = "needs the ultralytics package, which is not installed here"
        elif path.suffix == ".pt" and not allow_pickles:
            problem = (
                "is a pickle (.pt), which can run code when loaded: allow it as .ckpt files are "
                "(--allow-ckpt headless, --multipass-allow-ckpt in the WebUI)"
            )
        out.append(
            Entry(path.name, what, str(path), problem, lambda p=path, w=what: YoloDetector(p, w))
        )
    return out


def _load(path: Path) -> Any:
    from ultralytics import YOLO

    if path.suffix == ".pt":
        return YOLO(str(path))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
        state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open API
    if YAML_KEY not in meta:
        raise ValueError(f"{path.name} has no {YAML_KEY!r} in its metadata: not a YOLO model")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / f"{path.stem}.yaml"
        cfg.write_text(json.dumps(json.loads(meta[YAML_KEY])), encoding="utf-8")  # JSON is YAML
        model = YOLO(str(cfg))
    model.model.load_state_dict(state)
    return model


class YoloDetector:
    def __init__(self, path: Path, what: str) -> None:
        self.name, self.what, self.path = path.name, what, path
        self._model = _load(path)

    def detect(self, image: Any) -> list[Detection]:
        from PIL import Image, ImageDraw

        results = self._model.predict(image.convert("RGB"), conf=0.01, verbose=False)
        out: list[Detection] = []
        for r in results:
            boxes = r.boxes
            polygons = r.masks.xy if getattr(r, "masks", None) is not None else None
            for k in range(len(boxes)):
                x1, y1, x2, y2 = (round(float(v)) for v in boxes.xyxy[k].tolist())
                x1, y1 = max(0, x1), max(0, y1)
                x2, y2 = min(image.width, max(x2, x1 + 1)), min(image.height, max(y2, y1 + 1))
                if x2 <= x1 or y2 <= y1:
                    continue
                mask = None
                if polygons is not None and len(polygons[k]) >= 3:
                    mask = Image.new("L", (x2 - x1, y2 - y1), 0)
                    points = [(float(px) - x1, float(py) - y1) for px, py in polygons[k]]
                    ImageDraw.Draw(mask).polygon(points, fill=255)
                label = r.names.get(int(boxes.cls[k]), self.what) if r.names else self.what
                out.append(Detection((x1, y1, x2, y2), float(boxes.conf[k]), str(label), mask))
        return out
