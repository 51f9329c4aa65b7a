"""End to end on the built-in tiny models: real checkpoints, real diffusers, real crops."""

import dataclasses
import socket

import numpy as np
import pytest
from conftest import ByHandWebUI, NetworkAccess
from PIL import Image

torch = pytest.importorskip("torch")

from lib_multipass.engine import Control, Job, run_job  # noqa: E402
from lib_multipass.imaging import box_crops  # noqa: E402
from lib_multipass.plan import JobContext  # noqa: E402
from lib_multipass.recipe import RecipeError, parse_recipe  # noqa: E402

CTX = JobContext(
    width=64,
    height=64,
    steps=8,
    cfg_scale=7.0,
    sampler="Euler a",
    checkpoint="tiny-toon",
    prompt="a red fox in snow",
    negative_prompt="blurry",
)


def job(seeds=(11,), **kw):
    return Job(ctx=dataclasses.replace(CTX, **kw), seeds=list(seeds))


def arr(img):
    return np.asarray(img.convert("RGB"))


TWO_PASSES = parse_recipe(
    {
        "passes": [
            {"checkpoint": "tiny-photo", "upscale_by": 1.5, "denoising_strength": 0.5},
            {
                "checkpoint": "tiny-toon",
                "denoising_strength": 0.75,
                "prompt": "photo",
                "prompt_mode": "append",
            },
        ]
    }
)


def test_one_go_equals_by_hand(backend, tiny_models):
    result = run_job(TWO_PASSES, job(), backend)
    assert result.complete, result.account()

    # the same three generations one after another, as the WebUI makes them, by hand on plain
    # diffusers parts (conftest.ByHandWebUI), same seeds: the WebUI's img2img runs
    # int(d * 8) + 1 of 8 steps, 5 for 0.5 and 7 for 0.75
    seed = 11
    toon, photo = ByHandWebUI(tiny_models, "tiny-toon"), ByHandWebUI(tiny_models, "tiny-photo")
    (base,) = toon(["a red fox in snow"], ["blurry"], [seed], steps=8)
    (first,) = photo(
        ["a red fox in snow"],
        ["blurry"],
        [seed],
        steps=8,
        width=96,
        height=96,
        images=[base.resize((96, 96), Image.Resampling.LANCZOS)],
        strength=0.5,
    )
    (second,) = toon(
        ["a red fox in snow, photo"],
        ["blurry"],
        [seed],
        steps=8,
        width=96,
        height=96,
        images=[first],
        strength=0.75,
    )

    stages = [o.image for o in result.outputs[0]]
    assert np.array_equal(arr(stages[0]), arr(base))
    assert np.array_equal(arr(stages[1]), arr(first))
    assert np.array_equal(arr(stages[2]), arr(second))
    assert np.array_equal(arr(result.images[0]), arr(second))
    assert result.images[0].size == (96, 96)


def test_same_seed_same_result_bit_for_bit(backend):
    a = run_job(TWO_PASSES, job(), backend)
    b = run_job(TWO_PASSES, job(), backend)
    assert np.array_equal(arr(a.images[0]), arr(b.images[0]))


def test_the_two_builtin_checkpoints_differ(backend):
    toon = run_job(parse_recipe({"passes": []}), job(), backend).images[0]
    photo = run_job(parse_recipe({"passes": []}), job(checkpoint="tiny-photo"), backend).images[0]
    assert np.abs(arr(toon).astype(int) - arr(photo).astype(int)).mean() > 10


def test_detailed_inpaint_changes_nothing_outside_its_blurred_mask(backend):
    crop_pass = {
        "region": "crop",
        "mask_source": "boxes",
        "boxes": [[20, 24, 36, 40]],
        "padding": 8,
        "mask_blur": 3,
        "working_width": 64,
        "working_height": 64,
        "denoising_strength": 0.6,
    }
    recipe = parse_recipe({"passes": [crop_pass]})
    result = run_job(recipe, job(), backend)
    assert result.complete, result.account()
    before, after = result.outputs[0][0].image, result.images[0]
    (planned,) = box_crops((64, 64), (64, 64), recipe.passes[0].boxes, recipe.passes[0])
    outside = np.asarray(planned.blurred) == 0
    assert np.array_equal(arr(before)[outside], arr(after)[outside])
    inside = np.asarray(planned.blurred) == 255
    assert (arr(before)[inside] != arr(after)[inside]).any()  # the crop was really redone


def test_grouped_order_loads_each_checkpoint_once(backend):
    recipe = parse_recipe(
        {
            "passes": [
                {"checkpoint": "tiny-toon"},
                {"checkpoint": "tiny-photo"},
                {"checkpoint": "tiny-toon"},
            ]
        }
    )
    result = run_job(recipe, job(seeds=[1, 2, 3, 4], checkpoint="tiny-photo"), backend)
    assert result.complete
    assert dict(backend.disk_loads) == {"tiny-photo": 1, "tiny-toon": 1}
    # base on photo, then toon, photo, toon: 4 switches for 4 images, the same as for 1
    assert result.checkpoints_loaded == ["tiny-photo", "tiny-toon", "tiny-photo", "tiny-toon"]


def test_cancel_in_pass_2_keeps_pass_1_and_the_original_checkpoint(backend):
    backend.load_checkpoint("tiny-photo")  # what the user had loaded
    full = run_job(TWO_PASSES, job(seeds=[5, 6]), backend)
    control = Control()

    def progress(p):
        if p.run == 2 and p.step == 2:
            control.cancel()

    result = run_job(TWO_PASSES, job(seeds=[5, 6]), backend, control=control, progress=progress)
    assert result.stopped == "cancelled" and result.runs_done == 1
    assert "image 1 of 2" in result.where and "pass 2" in result.where
    for i in range(2):
        pass1 = full.outputs[i][1].image
        assert np.array_equal(arr(result.images[i]), arr(pass1))
        assert len(result.outputs[i]) == 2  # base and pass 1
    assert backend.current_checkpoint() == "tiny-photo"


def test_error_in_pass_2_keeps_pass_1_and_the_original_checkpoint(backend, tiny_models, tmp_path):
    # a whole checkpoint whose weights do not fit its architecture: it fails when loaded
    from conftest import misshapen_copy

    from lib_multipass.backends.diffusers_backend import DiffusersBackend

    folder = tmp_path / "more"
    misshapen_copy(tiny_models, folder / "broken.safetensors")
    backend = DiffusersBackend([tiny_models, folder], home=tiny_models.parent / "home")
    backend.load_checkpoint("tiny-photo")
    recipe = parse_recipe({"passes": [{"denoising_strength": 0.5}, {"checkpoint": "broken"}]})
    result = run_job(recipe, job(seeds=[5, 6]), backend)
    assert result.stopped == "error" and result.runs_done == 1
    assert "pass 2" in result.where and "failed" in result.account()
    assert [len(o) for o in result.outputs] == [2, 2]
    assert backend.current_checkpoint() == "tiny-photo"


def test_skip_abandons_only_the_current_image_run(backend):
    control = Control()
    skipped = []

    def progress(p):
        if p.run == 1 and p.image == 0 and p.step == 1 and not skipped:
            skipped.append(True)
            control.skip()

    recipe = parse_recipe({"passes": [{"denoising_strength": 0.5}, {"denoising_strength": 0.4}]})
    result = run_job(recipe, job(seeds=[5, 6]), backend, control=control, progress=progress)
    assert result.complete
    first = result.outputs[0]
    assert first[1].skipped and np.array_equal(arr(first[1].image), arr(first[0].image))
    assert not result.outputs[1][1].skipped and not first[2].skipped


def test_bad_recipe_never_half_runs(backend):
    recipe = parse_recipe(
        {
            "passes": [
                {"denoising_strength": 0.5},
                {"checkpoint": "nope", "sampler": "Euler z", "upscale_by": 2, "upscaler": "ESRGAN"},
            ]
        }
    )
    with pytest.raises(RecipeError) as info:
        run_job(recipe, job(), backend)
    fields = {(p.where, p.field) for p in info.value.problems}
    assert fields == {("pass 2", "checkpoint"), ("pass 2", "sampler"), ("pass 2", "upscaler")}
    assert backend.disk_loads == {}  # nothing was loaded, nothing ran


def test_strength_zero_is_upscale_only(backend):
    recipe = parse_recipe(
        {"passes": [{"upscale_by": 2, "denoising_strength": 0, "upscaler": "Nearest"}]}
    )
    result = run_job(recipe, job(), backend)
    base = result.outputs[0][0].image
    assert np.array_equal(
        arr(result.images[0]), arr(base.resize((128, 128), Image.Resampling.NEAREST))
    )


def test_no_network_is_touched():
    with pytest.raises(NetworkAccess):
        socket.create_connection(("203.0.113.1", 443), timeout=1)


def test_crops_are_found_once_per_pass_not_per_image(backend, monkeypatch):
    import lib_multipass.regions.crops as crops

    calls = []
    real = crops.crops_for
    monkeypatch.setattr(crops, "crops_for", lambda *a: calls.append(a[4]) or real(*a))
    recipe = parse_recipe(
        {
            "passes": [
                {
                    "region": "crop",
                    "mask_source": "boxes",
                    "boxes": [[8, 8, 24, 24]],
                    "working_width": 64,
                    "working_height": 64,
                }
            ]
        }
    )
    result = run_job(recipe, job(seeds=[1, 2, 3, 4]), backend)
    assert result.complete and calls == [(64, 64)]


def test_a_cancel_before_a_pass_loads_nothing_more(backend):
    """Interrupt between passes: the next pass's checkpoint is never loaded, only the user's."""
    backend.load_checkpoint("tiny-toon")
    control = Control()
    generated = []

    class CancelAfterPass2:
        """The backend, with Interrupt pressed just after pass 2's last image came back."""

        def __getattr__(self, name):
            return getattr(backend, name)

        def generate(self, requests, on_step):
            images = backend.generate(requests, on_step)
            for request in requests:
                if request.image is not None:  # not the base
                    generated.append(request.seed)
            if len(generated) == 4:
                control.cancel()
            return images

    passes = [
        {"checkpoint": "tiny-photo"},
        {"checkpoint": "tiny-toon"},
        {"checkpoint": "tiny-photo"},
    ]
    recipe = parse_recipe({"passes": passes})
    result = run_job(recipe, job(seeds=[1, 2]), CancelAfterPass2(), control=control)
    assert result.stopped == "cancelled" and result.runs_done == 2
    # photo, toon for passes 1 and 2; pass 3's photo is never loaded (toon is the user's)
    assert result.checkpoints_loaded == ["tiny-photo", "tiny-toon"]


def test_another_name_of_the_loaded_checkpoint_does_not_switch(backend):
    backend.load_checkpoint("tiny-photo")
    recipe = parse_recipe({"passes": [{"checkpoint": "tiny-photo.safetensors"}]})
    result = run_job(recipe, job(checkpoint="tiny-photo"), backend)
    assert result.complete and result.checkpoints_loaded == []
    assert backend.checkpoint_id("tiny-photo.safetensors") == backend.checkpoint_id("")


def test_each_image_accounts_for_what_ran_on_it(backend):
    control = Control()

    def progress(p):
        if p.run == 2 and p.image == 1 and p.step == 1:
            control.cancel()  # pass 1 done for both images, run 2 done for image 1 only

    recipe = parse_recipe(
        {"passes": [{"denoising_strength": 0.3}, {"schedule": "list", "strengths": [0.4, 0.3]}]}
    )
    result = run_job(recipe, job(seeds=[1, 2]), backend, control=control, progress=progress)
    first, second = result.image_account(0), result.image_account(1)
    assert first.passes_ran == (0, 1) and not first.complete
    assert first.text() == "stopped at pass 2, run 2 of 2: cancelled"
    assert second.passes_ran == (0,)
    assert second.text() == "stopped at pass 2, run 1 of 2: cancelled"
    done = run_job(recipe, job(seeds=[1, 2]), backend)
    assert done.image_account(0).text() == "complete"
