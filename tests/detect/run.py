"""The detectors that need packages a WebUI may have (run in .venv-detect by test_detectors.py):

    .venv-detect/bin/python tests/detect/run.py FOLDER

Builds YOLO detection and segmentation models from ultralytics' own configs with random
weights (nothing is downloaded), writes them as a user would find them (.safetensors carrying
their architecture, and a pickled .pt), and runs them and mediapipe's face and hand detectors
through Multipass's detector registry on scikit-image's astronaut. Prints what happened as JSON.
"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from skimage import data  # noqa: E402

from lib_multipass.detectors import Registry  # noqa: E402
from lib_multipass.detectors.select import select  # noqa: E402
from lib_multipass.detectors.yolo import YAML_KEY  # noqa: E402
from lib_multipass.imaging import placed_mask  # noqa: E402


def build(folder: Path) -> None:
    from ultralytics import YOLO

    torch.manual_seed(0)
    for cfg, name in (("yolov8n.yaml", "face_yolov8n"), ("yolov8n-seg.yaml", "person_yolov8n-seg")):
        model = YOLO(cfg)  # ultralytics' bundled architecture, random weights
        # ultralytics starts a head's class logits near -10 (no detections at all); a model
        # that finds things everywhere gives the filters many to choose from
        for branch in model.model.model[-1].cv3:
            branch[-1].bias.data.fill_(4.0)

        state = {k: v.contiguous() for k, v in model.model.state_dict().items()}
        meta = {YAML_KEY: json.dumps(model.model.yaml)}
        save_file(state, str(folder / f"{name}.safetensors"), metadata=meta)
    torch.save({"model": model.model, "train_args": {}}, str(folder / "hand_yolov8n.pt"))


def main() -> None:
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    build(folder)
    photo = Image.fromarray(data.astronaut())
    out: dict = {}
    locked = Registry([folder], allow_pickles=False)
    out["names_without_opt_in"] = locked.names()
    out["pt_problem"] = locked.problem("hand_yolov8n.pt")
    registry = Registry([folder], allow_pickles=True)
    out["names"] = registry.names()
    out["what"] = {n: e.what for n, e in registry.entries().items()}
    for name in ("face_yolov8n.safetensors", "person_yolov8n-seg.safetensors", "hand_yolov8n.pt"):
        found = registry.get(name).detect(photo)
        counts = {}
        for label, kw in (
            ("zero", {"threshold": 1.01, "max_count": 0}),
            ("one", {"threshold": 0.0, "max_count": 1}),
            ("many", {"threshold": 0.0, "max_count": 0}),
        ):
            chosen = select(found, photo.size, order="confidence", min_area=0.0, max_area=1.0, **kw)
            counts[label] = len(chosen)
        outlines = [d for d in found if d.mask is not None]
        placed = None
        if outlines:
            mask, at = placed_mask(outlines[0].box, photo.size, outlines[0].mask, 2)
            placed = {"box": list(at), "size": list(mask.size), "lit": mask.getbbox() is not None}
        out[name] = {
            "found": len(found),
            "counts": counts,
            "scores_in_range": all(0 <= d.score <= 1 for d in found),
            "boxes_inside": all(
                0 <= d.box[0] < d.box[2] <= 512 and 0 <= d.box[1] < d.box[3] <= 512 for d in found
            ),
            "outlines": len(outlines),
            "placed": placed,
        }
    if "mediapipe-face" in registry.names():
        faces = registry.get("mediapipe-face").detect(photo)
        best = max(faces, key=lambda d: d.score) if faces else None
        out["mediapipe"] = {
            "found": len(faces),
            "best": list(best.box) if best else None,
            "score": best.score if best else None,
        }
    else:
        out["mediapipe"] = {"problem": registry.problem("mediapipe-face")}
    if "mediapipe-hands" in registry.names():
        hands = registry.get("mediapipe-hands").detect(photo)
        out["mediapipe_hands"] = {
            "what": registry.entries()["mediapipe-hands"].what,
            "found": [[*d.box, d.score] for d in hands],
        }
    else:
        out["mediapipe_hands"] = {"problem": registry.problem("mediapipe-hands")}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
