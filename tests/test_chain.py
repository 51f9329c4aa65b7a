"""Chains as artists use them: repeats that stop once the image has settled, the chain as an
animation, and a chain stopped after a pass and continued later from the image picked."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lib_multipass.animation import CAPTION, frames, save, stages_of
from lib_multipass.converge import _DOT, THUMB, change, plot_points, threshold_y
from lib_multipass.engine import Job, SampleRequest, run_job
from lib_multipass.infotext import parse_params_line, recipe_from_infotext
from lib_multipass.plan import JobContext, chain_note, format_plan, plan_recipe
from lib_multipass.recipe import parse_recipe
from lib_multipass.runner import contact_sheet, image_plot, image_summary
from lib_multipass.schedule import img2img_steps

CTX = JobContext(width=64, height=64, steps=10, checkpoint="flat")


class Shrinking:
    """A backend whose img2img makes a known change: the k-th call for an image (known by its
    seed) adds `steps[seed][k]` to every channel of its flat grey image, so the measured
    change of that run is exactly that amount."""

    def __init__(self, steps: dict[int, Sequence[int]]) -> None:
        self.steps = steps
        self.calls: dict[int, int] = {}
        self.batches: list[list[int]] = []

    def current_checkpoint(self) -> str:
        return "flat"

    def checkpoint_id(self, name: str) -> str:
        return "flat"

    def load_checkpoint(self, name: str) -> None:
        pass

    def checkpoint_family(self, name: str) -> str:
        return "sd1"

    def check_run(self, run) -> list:
        return []

    def upscale(self, image, size, upscaler):
        return image.resize(size)

    def generate(self, requests: Sequence[SampleRequest], on_step) -> list[Image.Image]:
        self.batches.append([r.seed for r in requests])
        out = []
        for r in requests:
            if r.image is None:
                out.append(Image.new("RGB", (r.width, r.height), (10, 10, 10)))
                continue
            k = self.calls.get(r.seed, 0)
            self.calls[r.seed] = k + 1
            v = r.image.getpixel((0, 0))[0] + self.steps[r.seed][k]
            out.append(Image.new("RGB", r.image.size, (v, v, v)))
        first = requests[0]
        steps = (
            first.steps if first.image is None else img2img_steps(first.strength, first.steps).run
        )
        for step in range(1, steps + 1):  # as many steps as the WebUI would run
            on_step(step, steps)
        return out


def converging(**p) -> object:
    return parse_recipe({"passes": [{"denoising_strength": 0.4, **p}]})


def test_change_is_the_mean_absolute_difference_of_thumbnails():
    a = Image.new("RGB", (512, 768), (100, 100, 100))
    b = Image.new("RGB", (512, 768), (100, 130, 100))
    assert change(a, b) == pytest.approx(10.0)  # one channel of three moved by 30
    assert change(a, a) == 0.0
    # a detail crop's change is measured where it changed, not diluted by the rest
    crop = a.copy()
    crop.paste((255, 255, 255), (100, 200, 164, 264))  # 1% of the image, by 155 everywhere
    assert change(a, crop) == pytest.approx(155.0)
    half = a.copy()
    half.paste((160, 160, 160), (0, 0, 256, 768))  # half of the area it spans, by 60
    half.paste((100, 100, 100), (0, 0, 1, 1))
    half.paste((130, 130, 130), (511, 767, 512, 768))  # a corner: the box is the whole image
    assert change(a, half) == pytest.approx(30.0, abs=0.1)
    # an upscale's run: the whole image, at thumbnail size
    assert change(a, a.resize((768, 1152))) == 0.0
    assert THUMB == 64


def test_repeats_stop_per_image_where_the_change_falls_below_the_threshold():
    backend = Shrinking({1: [40, 20, 10, 4, 2, 1], 2: [40, 3, 1, 1, 1, 1]})
    recipe = converging(repeats=6, converge_below=5)
    result = run_job(recipe, Job(CTX, seeds=[1, 2], batch_size=2), backend)
    assert result.complete, result.account()
    changes = [[o.change for o in out[1:]] for out in result.outputs]
    # image 1 runs until a run changes it by less than 5 (the 4th); image 2 after its 2nd
    assert changes == [[40, 20, 10, 4], [40, 3]]
    assert [len(s) for s in result.settled] == [2, 4]
    assert backend.calls == {1: 4, 2: 2}
    # sampled together while both still took the runs, then image 1 alone
    assert backend.batches[1:] == [[1, 2], [1, 2], [1], [1]]
    for i, want in enumerate(changes):
        account = result.image_account(i)
        assert account.complete and account.text() == "complete"
        assert dict(account.changes) == {0: tuple(want)}
        assert image_summary(result, i)["runs"][-1]["change"] == want[-1]


def test_repeats_never_go_beyond_the_limit():
    backend = Shrinking({1: [50] * 10})
    result = run_job(converging(repeats=4, converge_below=5), Job(CTX, seeds=[1]), backend)
    assert [o.change for o in result.outputs[0][1:]] == [50, 50, 50, 50]
    assert backend.calls == {1: 4} and result.settled == [[]]


def test_each_strength_gets_its_own_repeats_after_an_image_settles():
    backend = Shrinking({1: [9, 1, 9, 8, 1, 9, 9, 9]})
    recipe = converging(schedule="list", strengths=[0.6, 0.5, 0.4], repeats=3, converge_below=2)
    result = run_job(recipe, Job(CTX, seeds=[1]), backend)
    ran = [(o.run.strength, o.change) for o in result.outputs[0][1:]]
    assert ran == [(0.6, 9), (0.6, 1), (0.5, 9), (0.5, 8), (0.5, 1), (0.4, 9), (0.4, 9), (0.4, 9)]
    assert [r.repeat for r in result.settled[0]] == [2]


def test_the_progress_total_drops_the_runs_an_image_did_not_need():
    seen = []
    backend = Shrinking({1: [40, 1, 1, 1]})
    run_job(
        converging(repeats=4, converge_below=5),
        Job(CTX, seeds=[1]),
        backend,
        progress=seen.append,
    )
    assert seen[-1].done == seen[-1].total  # the bar ends full, never short


def test_the_plan_says_up_to():
    recipe = converging(repeats=4, converge_below=2.5)
    text = format_plan(plan_recipe(recipe, CTX), CTX)
    assert "up to 4 runs, at most" in text
    assert "pass 1: up to 4 runs; each strength's 4 repeats stop early" in text
    assert "less than 2.5 (mean of 0-255 on a 64x64 thumbnail)" in text
    assert chain_note(recipe) == ""
    three = parse_recipe({"from_pass": 2, "stop_after": 2, "passes": [{}, {}, {}]})
    assert chain_note(three) == (
        "chain: starts at pass 2: the job's images are pass 1's output (--init), and the passes "
        "before it only give what they set (checkpoint, VAE); stops after pass 2 of 3: continue "
        "a picked image with --from-pass 3"
    )


def test_the_plot_draws_the_recorded_changes():
    backend = Shrinking({1: [40, 20, 10, 4, 2, 1]})
    result = run_job(converging(repeats=6, converge_below=5), Job(CTX, seeds=[1]), backend)
    changes = [o.change for o in result.outputs[0][1:]]
    plot = image_plot(result, 0)
    points = plot_points(changes, 5.0, plot.size)
    assert len(points) == len(changes) == 4
    for x, y in points:
        assert plot.getpixel((x, y)) == _DOT
    ys = [y for _, y in points]
    assert ys == sorted(ys)  # each smaller change is drawn lower
    # the threshold line lies between the last change (4) and the one before (10)
    assert points[-1][1] > threshold_y(changes, 5.0, plot.size) > points[-2][1]
    sheet = contact_sheet(result)
    assert sheet is not None and sheet.width > 5 * 160


@pytest.mark.parametrize("fmt", ["webp", "gif"])
def test_the_animation_has_one_frame_per_stage_in_order(fmt, tmp_path):
    backend = Shrinking({1: [60, 40, 30, 20]})
    result = run_job(converging(repeats=4), Job(CTX, seeds=[1]), backend)
    stages = stages_of(result.outputs[0])
    assert [label for _, label in stages] == [
        "base",
        "pass 1 (1/4)",
        "pass 1 (2/4)",
        "pass 1 (3/4)",
        "pass 1 (4/4) = final",
    ]
    path = save(frames(stages), tmp_path / f"chain.{fmt}", fmt, 250, loop=0)
    with Image.open(path) as anim:
        assert anim.n_frames == len(stages)
        for k, (image, _) in enumerate(stages):
            anim.seek(k)
            anim.load()
            assert anim.info["duration"] == 250
            shown = np.asarray(anim.convert("RGB"))[: anim.height - CAPTION]
            want = np.asarray(image.convert("RGB").resize((shown.shape[1], shown.shape[0])))
            assert np.abs(shown.astype(int) - want.astype(int)).mean() < 4, k
        assert anim.info.get("loop", 0) == 0


def test_frames_are_bounded_in_size():
    big = Image.new("RGB", (4096, 2048))
    made = frames([(big, "base"), (big, "final")])
    assert max(made[0].size) <= 512 and made[0].width == 2 * (made[0].height - CAPTION)


# -- pick and continue ------------------------------------------------------------------------


def test_a_job_stopped_after_a_pass_writes_the_whole_chain_and_where_it_stopped():
    backend = Shrinking({1: [5, 5, 5]})
    recipe = parse_recipe(
        {
            "stop_after": 1,
            "passes": [
                {"denoising_strength": 0.3},
                {"enabled": False},
                {"denoising_strength": 0.2},
            ],
        }
    )
    result = run_job(recipe, Job(CTX, seeds=[1]), backend)
    assert [o.run.pass_index for o in result.outputs[0][1:]] == [0]
    from lib_multipass.infotext import params_to_text, result_params

    account = result.image_account(0)
    params = result_params(recipe, account.passes_ran, account.text())
    assert params["Multipass passes"] == "2" and params["Multipass stop after"] == "1"
    back = recipe_from_infotext("x\n" + params_to_text(params))
    assert back.stop_after == 1 and [p.denoising_strength for p in back.passes] == [0.3, 0.2]


def test_a_continued_job_starts_at_its_pass_and_keeps_what_earlier_passes_set():
    recipe = parse_recipe(
        {
            "from_pass": 2,
            "passes": [
                {"checkpoint": "other", "upscale_by": 2},
                {"denoising_strength": 0.3},
            ],
        }
    )
    (run,) = plan_recipe(recipe, CTX)
    assert run.pass_index == 1 and run.checkpoint == "other" and run.size == (64, 64)


# -- the same on the tiny models, headless, end to end -----------------------------------------

CHAIN = {
    "base": {
        "width": 64,
        "height": 64,
        "steps": 6,
        "checkpoint": "tiny-toon",
        "seed": 21,
        "prompt": "a lighthouse",
    },
    "passes": [
        {"checkpoint": "tiny-photo", "upscale_by": 1.5, "denoising_strength": 0.5},
        {
            "denoising_strength": 0.4,
            "repeats": 3,
            "converge_below": 4,
            "prompt": "stormy",
            "prompt_mode": "append",
            "seed": "offset",
        },
        {
            "checkpoint": "tiny-toon",
            "region": "crop",
            "mask_source": "boxes",
            "boxes": [[8, 8, 40, 40]],
            "padding": 8,
            "working_width": 64,
            "working_height": 64,
            "denoising_strength": 0.5,
        },
    ],
}


def multipass(*args: str, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "MULTIPASS_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "lib_multipass", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_stopped_after_pass_1_and_continued_equals_the_whole_chain(tiny_models, tmp_path):
    pytest.importorskip("torch")
    home = tiny_models.parent
    (tmp_path / "chain.json").write_text(json.dumps(CHAIN))
    recipe = str(tmp_path / "chain.json")
    multipass("run", recipe, "--images", "2", "--out", str(tmp_path / "whole"), home=home)
    multipass(
        "run",
        recipe,
        "--images",
        "2",
        "--stop-after",
        "1",
        "--out",
        str(tmp_path / "first"),
        home=home,
    )
    picked = tmp_path / "first" / "02-22-final.png"  # the second of two: seed 22
    text = Image.open(picked).info["parameters"]
    params = parse_params_line(text.splitlines()[-1])
    assert params["Multipass passes"] == "3" and params["Multipass stop after"] == "1"
    assert params["Multipass result"] == "complete"

    done = multipass(
        "run",
        recipe,
        "--init",
        str(picked),
        "--from-pass",
        "2",
        "--animation",
        "webp",
        "--out",
        str(tmp_path / "rest"),
        home=home,
    )
    assert "finished" in done.stdout and "note: 02-22-final.png" not in done.stdout
    (final,) = (tmp_path / "rest").glob("*-final.png")
    assert np.array_equal(pixels(final), pixels(tmp_path / "whole" / "02-22-final.png"))

    # the continued image tells the whole chain: the pass before, the passes now
    text = Image.open(final).info["parameters"]
    params = parse_params_line(text.splitlines()[-1])
    assert params["Seed"] == "22" and params["Multipass from pass"] == "2"
    assert params["Multipass passes"] == "3" and params["Multipass result"] == "complete"
    assert params["Multipass input"] == "02-22-final.png"
    whole = recipe_from_infotext(text)
    assert dataclasses.replace(whole, from_pass=1) == recipe_from_infotext(
        Image.open(tmp_path / "whole" / "02-22-final.png").info["parameters"]
    )
    summary = json.loads((tmp_path / "rest" / "result.json").read_text())
    assert [r["pass"] for r in summary["images"][0]["runs"]][-1] == 3
    (anim,) = (tmp_path / "rest").glob("*-chain.webp")
    with Image.open(anim) as a:
        runs = len(summary["images"][0]["runs"])
        assert a.n_frames == 1 + runs


# -- every new field at every door ------------------------------------------------------------


def test_every_new_field_is_at_every_door():
    import jsonschema

    from lib_multipass.cli import FLAG_FIELDS, build_parser
    from lib_multipass.docs import fields_markdown
    from lib_multipass.infotext import params_to_text, recipe_to_params
    from lib_multipass.plan import plan_as_dicts
    from lib_multipass.recipe import positional_names, recipe_to_dict
    from lib_multipass.schema import recipe_schema
    from lib_multipass.webui import ui, xyz

    data = {
        "from_pass": 2,
        "stop_after": 3,
        "passes": [{}, {"repeats": 4, "converge_below": 1.5}, {"denoising_strength": 0.3}],
    }
    recipe = parse_recipe(data)
    # schema (the API's and recipe files')
    schema = recipe_schema()
    jsonschema.validate(data, schema)
    assert {"from_pass", "stop_after"} <= set(schema["properties"])
    assert "converge_below" in schema["properties"]["passes"]["items"]["properties"]
    # infotext, both ways
    params = recipe_to_params(recipe)
    assert params["Multipass from pass"] == "2" and params["Multipass stop after"] == "3"
    assert params["Multipass 2 converge below"] == "1.5"
    assert recipe_from_infotext("p\n" + params_to_text(params)) == dataclasses.replace(
        recipe, base=None
    )
    # recipe files written back, the plan, positional args, the field reference
    assert parse_recipe(recipe_to_dict(recipe)) == recipe
    runs = plan_recipe(recipe, CTX)
    assert [r["pass"] for r in plan_as_dicts(runs)] == [2, 2, 2, 2, 3]
    assert plan_as_dicts(runs)[0]["converge_below"] == 1.5
    assert "pass2.converge_below" in positional_names(2)
    reference = fields_markdown()
    for name in ("from_pass", "stop_after", "converge_below"):
        assert f"| `{name}` |" in reference
    # the command line, the UI, XYZ
    parsers = build_parser()
    for flag in ("--from-pass", "--stop-after", "--animation", "--frame-ms", "--loop"):
        assert flag in FLAG_FIELDS and flag in parsers["run"]._option_string_actions
    assert "--from-pass" in parsers["plan"]._option_string_actions
    assert "converge_below" in [n for _, rows in ui.LAYOUT for row in rows for n in row]
    assert [f.name for f in ui.CHAIN_FIELDS] == ["from_pass", "stop_after"]
    assert "converge_below" in xyz.AXIS_FIELDS


@settings(max_examples=60)
@given(
    steps=st.lists(st.integers(0, 30), min_size=1, max_size=8),
    threshold=st.floats(0.5, 30),
)
def test_a_strength_runs_until_a_change_falls_below_the_threshold_never_more(steps, threshold):
    backend = Shrinking({1: steps})
    recipe = converging(repeats=max(2, len(steps)), converge_below=threshold)
    padded = steps + [99] * (recipe.passes[0].repeats - len(steps))
    backend.steps[1] = padded
    result = run_job(recipe, Job(CTX, seeds=[1]), backend)
    below = [k for k, c in enumerate(padded) if c < threshold]
    want = padded[: below[0] + 1] if below else padded
    assert [o.change for o in result.outputs[0][1:]] == want
    assert len(result.settled[0]) == len(padded) - len(want)


def test_an_image_of_another_chain_is_named_when_continued():
    from lib_multipass.infotext import params_to_text, result_params
    from lib_multipass.runner import other_chain

    whole = parse_recipe(
        {"passes": [{"checkpoint": "a", "denoising_strength": 0.3}, {"denoising_strength": 0.2}]}
    )
    stopped = dataclasses.replace(whole, stop_after=1)
    text = "p\n" + params_to_text(result_params(stopped, [0], "complete"))
    going_on = dataclasses.replace(whole, from_pass=2)
    assert not other_chain(going_on, text)
    assert not other_chain(going_on, None) and not other_chain(going_on, "a photo\nSteps: 20")
    changed = parse_recipe({"from_pass": 2, "passes": [{"denoising_strength": 0.6}, {}]})
    assert other_chain(changed, text)
    # the finished image of the whole chain is pass 2's output, not pass 1's
    done = "p\n" + params_to_text(result_params(whole, [0, 1], "complete"))
    assert other_chain(going_on, done)
