"""Detection-driven detail passes on a real photo that a package ships (scikit-image's
astronaut): OpenCV's bundled face cascade finds the face where it is, a detect pass inpaints
exactly there, filters and per-detection prompts pick and word the crops."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import ROOT
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

cv2 = pytest.importorskip("cv2")

skimage_data = pytest.importorskip("skimage.data")

from lib_multipass.detectors import Detection, Registry  # noqa: E402
from lib_multipass.detectors.mediapipe_detector import landmark_box  # noqa: E402
from lib_multipass.detectors.select import select  # noqa: E402
from lib_multipass.imaging import placed_mask, plan_placed  # noqa: E402
from lib_multipass.recipe import RecipeError, parse_pass, parse_recipe  # noqa: E402

FACE = (177, 66, 272, 161)  # where the astronaut's face is (512 x 512)


def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


def two_astronauts() -> Image.Image:
    pair = Image.new("RGB", (1024, 512))
    pair.paste(astronaut(), (0, 0))
    pair.paste(astronaut(), (512, 0))
    return pair


def near(a, b, tolerance=6):
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def test_opencv_finds_the_astronauts_face_where_it_is():
    faces = Registry().get("opencv-face").detect(astronaut())
    confident = [d for d in faces if d.score >= 0.3]
    assert len(confident) == 1 and near(confident[0].box, FACE)
    assert confident[0].score > 0.75


def det(box, score=0.9):
    return Detection(box, score, "faces")


@given(
    st.lists(
        st.tuples(
            st.integers(0, 400),
            st.integers(0, 400),
            st.integers(1, 100),
            st.integers(1, 100),
            st.floats(0, 1),
        ),
        max_size=12,
    ),
    st.floats(0, 1),
    st.integers(0, 5),
    st.sampled_from(["largest", "left-to-right", "top-to-bottom", "confidence"]),
    st.floats(0, 0.05),
    st.floats(0.001, 1),
)
def test_select_keeps_what_the_filters_say_in_order(found, threshold, top, order, lo, hi):
    detections = [det((x, y, x + w, y + h), s) for x, y, w, h, s in found]
    chosen = select(
        detections,
        (512, 512),
        threshold=threshold,
        max_count=top,
        order=order,
        min_area=lo,
        max_area=hi,
    )
    assert all(d.score >= threshold and lo <= d.area / 512**2 <= hi for d in chosen)
    if top:
        assert len(chosen) <= top
    eligible = [d for d in detections if d.score >= threshold and lo <= d.area / 512**2 <= hi]
    assert len(chosen) == (min(top, len(eligible)) if top else len(eligible))
    keys = {
        "largest": lambda d: -d.area,
        "left-to-right": lambda d: d.box[0],
        "top-to-bottom": lambda d: d.box[1],
        "confidence": lambda d: -d.score,
    }
    values = [keys[order](d) for d in chosen]
    assert values == sorted(values)


def test_filters_pick_the_expected_detections():
    ds = [det((0, 0, 10, 10), 0.95), det((100, 0, 150, 50), 0.5), det((300, 300, 400, 400), 0.2)]
    size = (512, 512)
    kw = {"threshold": 0.3, "max_count": 0, "min_area": 0.0, "max_area": 1.0}
    assert [d.box for d in select(ds, size, order="largest", **kw)] == [
        (100, 0, 150, 50),
        (0, 0, 10, 10),
    ]
    assert [d.score for d in select(ds, size, order="confidence", **kw)] == [0.95, 0.5]
    assert len(select(ds, size, order="largest", **{**kw, "threshold": 0.0})) == 3
    assert [d.box for d in select(ds, size, order="largest", **{**kw, "max_count": 1})] == [
        (100, 0, 150, 50)
    ]
    small_only = {**kw, "max_area": 0.005}
    assert [d.box for d in select(ds, size, order="largest", **small_only)] == [(0, 0, 10, 10)]


@given(
    st.lists(st.tuples(st.floats(-0.5, 1.5), st.floats(-0.5, 1.5)), min_size=1, max_size=21),
    st.integers(1, 2048),
    st.integers(1, 2048),
)
def test_a_hands_box_holds_its_landmarks_inside_the_image(points, w, h):
    box = landmark_box(points, (w, h))
    inside = [(x * w, y * h) for x, y in points if 0 <= x * w < w and 0 <= y * h < h]
    if box is None:
        assert not inside
        return
    x1, y1, x2, y2 = box
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    for x, y in inside:
        assert x1 <= x < x2 and y1 <= y < y2


def test_a_hands_box_has_a_margin_around_its_landmarks():
    # a hand spanning 100 px: 15 px on every side, as fingertips and wrist sit on its edge
    assert landmark_box([(0.2, 0.2), (0.4, 0.3)], (500, 500)) == (85, 85, 216, 166)
    assert landmark_box([(-0.1, -0.1), (0.1, 0.05)], (100, 100)) == (0, 0, 14, 9)
    assert landmark_box([], (100, 100)) is None


def test_masks_grow_shrink_follow_outlines_and_merge():

    size = (200, 200)
    grown, at = placed_mask((50, 50, 70, 70), size, grow=5)
    assert at == (45, 45, 75, 75) and grown.getbbox() == (0, 0, 30, 30)
    _shrunk, at = placed_mask((50, 50, 70, 70), size, grow=-5)
    assert at == (55, 55, 65, 65)
    ring = Image.new("L", (20, 20), 0)
    ring.paste(255, (5, 5, 15, 15))
    outline, at = placed_mask((50, 50, 70, 70), size, outline=ring, grow=2)
    assert at == (48, 48, 72, 72) and outline.getbbox() == (5, 5, 19, 19)
    p = parse_pass({"region": "crop", "mask_source": "detect", "mask_blur": 0, "padding": 0})
    both = [placed_mask((10, 10, 30, 30), size), placed_mask((150, 150, 170, 170), size)]
    assert len(plan_placed(both, size, p, "sd1", merge=False)) == 2
    (merged,) = plan_placed(both, size, p, "sd1", merge=True)
    assert merged.mask_box == (10, 10, 170, 170)


def test_detect_fields_are_checked():
    with pytest.raises(RecipeError, match="detect_max_area"):
        parse_pass(
            {
                "region": "crop",
                "mask_source": "detect",
                "detect_min_area": 0.5,
                "detect_max_area": 0.1,
            }
        )
    with pytest.raises(RecipeError, match=r"\[SEP\] separates the prompts of a crop pass"):
        parse_pass({"prompt": "a [SEP] b"})


# -- on the tiny models ---------------------------------------------------------------------------

torch = pytest.importorskip("torch")

from lib_multipass.engine import Job, run_job  # noqa: E402
from lib_multipass.plan import JobContext  # noqa: E402

CTX = JobContext(
    width=512, height=512, steps=4, sampler="Euler a", checkpoint="tiny-toon", prompt="an astronaut"
)
DETECT = {
    "region": "crop",
    "mask_source": "detect",
    "detector": "opencv-face",
    "working_width": 128,
    "working_height": 128,
    "mask_blur": 4,
    "detect_dilate": 4,
    "denoising_strength": 0.6,
}


def test_a_detect_pass_inpaints_the_face_and_nothing_outside_its_blurred_mask(backend):
    recipe = parse_recipe({"passes": [DETECT]})
    image = astronaut()
    result = run_job(recipe, Job(CTX, images=[image], seeds=[3], detectors=Registry()), backend)
    assert result.complete, result.account()
    before, after = np.asarray(image), np.asarray(result.images[0])
    changed = np.argwhere((before != after).any(axis=2))
    y1, x1 = changed.min(axis=0)
    y2, x2 = changed.max(axis=0) + 1
    # the face box grown by 4 px, softened by a blur of 4: nothing changed beyond that
    reach = 4 + 3 * 4 + 4
    assert FACE[0] - reach <= x1 and x2 <= FACE[2] + reach
    assert FACE[1] - reach <= y1 and y2 <= FACE[3] + reach
    assert (
        before[FACE[1] + 20 : FACE[3] - 20, FACE[0] + 20 : FACE[2] - 20]
        != after[FACE[1] + 20 : FACE[3] - 20, FACE[0] + 20 : FACE[2] - 20]
    ).any()
    account = result.image_account(0)
    assert dict(account.found) == {0: "1 face, 1 inpainted"}


def test_each_detection_gets_its_prompt_and_seed(backend):
    recipe = parse_recipe(
        {
            "passes": [
                {
                    **DETECT,
                    "detect_order": "left-to-right",
                    "prompt": "a smiling face [SEP] a frowning face, {prompt}",
                    "prompt_mode": "template",
                }
            ]
        }
    )
    sent = []
    real = backend.generate

    def spy(requests, on_step):
        sent.extend((r.prompt, r.seed) for r in requests)
        return real(requests, on_step)

    backend.generate = spy
    ctx = dataclasses.replace(CTX, width=1024)
    seen = []
    result = run_job(
        recipe,
        Job(ctx, images=[two_astronauts()], seeds=[40], detectors=Registry()),
        backend,
        progress=seen.append,
    )
    assert result.complete, result.account()
    assert sent == [("a smiling face", 40), ("a frowning face, an astronaut", 41)]
    # progress counts each detection's steps once they are found: it ends at its total
    assert seen[-1].done == seen[-1].total == 2 * seen[-1].steps

    assert dict(result.image_account(0).found) == {0: "2 faces, 2 inpainted"}


def test_a_job_of_several_images_switches_only_as_the_recipe_does(backend):
    recipe = parse_recipe(
        {"passes": [{**DETECT, "checkpoint": "tiny-photo"}, {"denoising_strength": 0.2}]}
    )
    images = [astronaut(), astronaut().transpose(Image.Transpose.FLIP_LEFT_RIGHT), astronaut()]
    job = Job(CTX, images=images, seeds=[1, 2, 3], detectors=Registry(), batch_size=2)
    backend.load_checkpoint("tiny-toon")
    result = run_job(recipe, job, backend)
    assert result.complete, result.account()
    assert result.checkpoints_loaded == ["tiny-photo", "tiny-toon"]  # pass 1, then back
    assert dict(backend.disk_loads) == {"tiny-toon": 1, "tiny-photo": 1}


def test_a_missing_detector_is_named_before_anything_runs(backend):
    recipe = parse_recipe({"passes": [{**DETECT, "detector": "face_yolov8n.pt"}]})
    with pytest.raises(RecipeError) as info:
        run_job(recipe, Job(CTX, images=[astronaut()], seeds=[1], detectors=Registry()), backend)
    text = str(info.value)
    assert "pass 1, field 'detector': got 'face_yolov8n.pt'" in text and "'opencv-face'" in text


def test_the_plan_says_what_it_will_look_for(tmp_path, capsys):
    import json

    from lib_multipass.cli import main

    (tmp_path / "r.json").write_text(
        json.dumps({"passes": [{**DETECT, "detect_max": 2}]}), encoding="utf-8"
    )
    assert main(["plan", str(tmp_path / "r.json")]) == 0
    assert "detect: up to 2 faces (found at run time)" in capsys.readouterr().out


def test_the_infotext_records_what_was_found(tiny_models, tmp_path, monkeypatch):
    import json
    import subprocess
    import sys

    monkeypatch.setenv("MULTIPASS_HOME", str(tiny_models.parent))
    recipe = {
        "base": {"width": 128, "height": 128, "steps": 3, "checkpoint": "tiny-toon"},
        "passes": [{**DETECT, "working_width": 64, "working_height": 64}],
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "lib_multipass", "run", "r.json", "--out", "o", "--seed", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = Image.open(tmp_path / "o" / "01-1-final.png").info["parameters"]
    # tiny models draw noise: whatever was found is said, 0 included
    assert "Multipass 1 found: " in text and " inpainted" in text


def test_an_opencv_that_does_not_import_is_named_not_a_crash(tmp_path):
    """opencv-python (not -headless) on a server without libGL: `import cv2` fails although the
    package is installed. The detectors list says so; it must not take the list down (in the
    WebUI the accordion's dropdown is built from it)."""
    import os
    import subprocess
    import sys

    broken = tmp_path / "cv2"
    broken.mkdir()
    (broken / "__init__.py").write_text(
        'raise ImportError("libGL.so.1: cannot open shared object file: No such file or directory")'
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "lib_multipass", "detectors"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "opencv-face" in done.stdout and "libGL.so.1" in done.stdout, done.stdout
    # whole sentences: what to install, and what for
    assert "No detector can run here. Install OpenCV 4.x for its face, profile and body" in (
        " ".join(done.stdout.split())
    )
    assert done.stdout.rstrip().endswith("or ultralytics or mediapipe for their models.")


def test_progress_ends_at_its_total_when_fewer_faces_are_found_than_counted(backend):
    """A detect pass counts steps for the faces it may find; on an image with none (and one
    with a face, then a blank one) the last report is still done == total: no bar stuck at
    33%."""
    recipe = parse_recipe({"passes": [DETECT, {"denoising_strength": 0.3}]})
    blank = Image.new("RGB", astronaut().size, (128, 128, 128))
    seen = []
    result = run_job(
        recipe,
        Job(CTX, images=[blank, astronaut()], seeds=[5, 6], detectors=Registry()),
        backend,
        progress=seen.append,
    )
    assert result.complete, result.account()
    assert seen[-1].done == seen[-1].total
    assert all(p.done <= p.total for p in seen)
