"""YOLO (ultralytics) and mediapipe detectors, run where they are installed: .venv-detect
(made by tests/setup.sh from tests/detect/requirements.txt), as a WebUI with adetailer has
them. The models are built from ultralytics' own configs with random weights: nothing is
downloaded."""

import json
import os
import subprocess

import pytest
from conftest import ROOT

PYTHON = ROOT / ".venv-detect" / "bin" / "python"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if not PYTHON.exists():
        pytest.skip("needs .venv-detect: run `bash tests/setup.sh`")
    folder = tmp_path_factory.mktemp("detectors")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "YOLO_OFFLINE": "1",
        "YOLO_CONFIG_DIR": str(folder / "ultralytics-settings"),
    }
    done = subprocess.run(
        [str(PYTHON), str(ROOT / "tests" / "detect" / "run.py"), str(folder / "models")],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_yolo_pickles_need_the_opt_in_and_safetensors_do_not(report):
    assert "face_yolov8n.safetensors" in report["names_without_opt_in"]
    assert "hand_yolov8n.pt" not in report["names_without_opt_in"]
    assert "is a pickle (.pt)" in report["pt_problem"] and "--allow-ckpt" in report["pt_problem"]
    assert "hand_yolov8n.pt" in report["names"]
    assert report["what"]["face_yolov8n.safetensors"] == "faces"
    assert report["what"]["person_yolov8n-seg.safetensors"] == "people"


@pytest.mark.parametrize(
    "name", ["face_yolov8n.safetensors", "person_yolov8n-seg.safetensors", "hand_yolov8n.pt"]
)
def test_yolo_models_run_and_handle_zero_one_and_many(report, name):
    r = report[name]
    assert r["scores_in_range"] and r["boxes_inside"]
    assert r["counts"]["zero"] == 0
    assert r["counts"]["one"] == min(1, r["found"])
    assert r["counts"]["many"] == r["found"] and r["found"] > 1  # random weights: many boxes


def test_a_segmentation_model_gives_outlines(report):
    r = report["person_yolov8n-seg.safetensors"]
    assert r["outlines"] > 0 and r["placed"]["lit"]


def test_mediapipe_finds_the_astronauts_face(report):
    mp = report["mediapipe"]
    assert "problem" not in mp, mp
    x1, y1, x2, y2 = mp["best"]
    face = (177, 66, 272, 161)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    assert face[0] < cx < face[2] and face[1] < cy < face[3] and mp["score"] > 0.5


def test_mediapipe_hands_run_and_find_none_on_the_astronaut(report):
    # her hands are out of the frame; no photo a package ships shows a hand mediapipe finds,
    # so the landmarks-to-box step is covered by a property test in test_detect.py
    hands = report["mediapipe_hands"]
    assert "problem" not in hands, hands
    assert hands["what"] == "hands" and hands["found"] == []
