"""Batched runs: a run samples a batch of images in one call, each with its own seed, prompts
and init image, and equals the same batched generations made by hand as the WebUI makes them
(on plain diffusers parts), pixel for pixel, for whole-image and crop passes; cancel, skip and
faults keep every finished image."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import ByHandWebUI
from PIL import Image

torch = pytest.importorskip("torch")

from lib_multipass.backends.diffusers_backend import (  # noqa: E402
    BackendError,
    DiffusersBackend,
    resolve_device,
    resolve_dtype,
)
from lib_multipass.engine import Control, Job, run_job  # noqa: E402
from lib_multipass.imaging import box_crops, cut_crop, paste_back  # noqa: E402
from lib_multipass.plan import JobContext  # noqa: E402
from lib_multipass.recipe import parse_recipe  # noqa: E402

CTX = JobContext(
    width=64,
    height=64,
    steps=6,
    sampler="Euler a",
    checkpoint="tiny-toon",
    prompt="a red fox",
    negative_prompt="blurry",
)
SEEDS = [11, 12, 13, 14]


def arr(img):
    return np.asarray(img.convert("RGB"))


def gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_a_batched_job_equals_the_same_batches_by_hand(backend, tiny_models):
    recipe = parse_recipe({"passes": [{"checkpoint": "tiny-photo", "denoising_strength": 0.5}]})
    prompts = ["a red fox", "a blue fox", "a green fox", "a grey fox"]
    job = Job(CTX, seeds=SEEDS, batch_size=2, prompts=prompts, negative_prompts=["blurry"] * 4)
    result = run_job(recipe, job, backend)
    assert result.complete, result.account()

    # by hand, as the WebUI makes them (conftest.ByHandWebUI): two batches of two, per-image
    # prompts and seeds; the base (no per-image prompts in a headless job) uses the job's
    # prompt for every image
    toon, photo = ByHandWebUI(tiny_models, "tiny-toon"), ByHandWebUI(tiny_models, "tiny-photo")
    bases, finals = [], []
    for k in (0, 2):
        batch = SEEDS[k : k + 2]
        base = toon(["a red fox"] * 2, ["blurry"] * 2, batch, steps=6)
        bases += base
        finals += photo(
            prompts[k : k + 2], ["blurry"] * 2, batch, steps=6, images=base, strength=0.5
        )
    for i in range(4):
        assert np.array_equal(arr(result.outputs[i][0].image), arr(bases[i])), i
        assert np.array_equal(arr(result.images[i]), arr(finals[i])), i


def test_an_image_is_the_same_alone_or_in_a_batch(backend):
    """As in the WebUI: each image's noise comes from its own seed's generator, ancestral
    steps included, so batching changes nothing but speed (and the last bits of the UNet's
    batched arithmetic: a level or two here and there, where another seed is another image)."""
    recipe = parse_recipe({"passes": [{"denoising_strength": 0.5}]})
    together = run_job(recipe, Job(CTX, seeds=SEEDS[:2], batch_size=2), backend)
    alone = run_job(recipe, Job(CTX, seeds=SEEDS[1:2], batch_size=1), backend)
    other = run_job(recipe, Job(CTX, seeds=SEEDS[2:3], batch_size=1), backend)
    diff = np.abs(arr(together.images[1]).astype(int) - arr(alone.images[0]).astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 4, (diff.mean(), diff.max())
    far = np.abs(arr(other.images[0]).astype(int) - arr(alone.images[0]).astype(int))
    assert far.mean() > 5


def test_a_batched_crop_pass_equals_the_same_batch_by_hand(backend, tiny_models):
    crop = {
        "region": "crop",
        "mask_source": "boxes",
        "boxes": [[16, 16, 40, 40]],
        "padding": 8,
        "mask_blur": 2,
        "working_width": 64,
        "working_height": 64,
        "denoising_strength": 0.6,
    }
    recipe = parse_recipe({"passes": [crop]})
    images = [Image.new("RGB", (64, 64), c) for c in ((200, 40, 40), (40, 200, 40), (40, 40, 200))]
    job = Job(CTX, images=images, seeds=SEEDS[:3], batch_size=3)
    result = run_job(recipe, job, backend)
    assert result.complete, result.account()

    (planned,) = box_crops((64, 64), (64, 64), recipe.passes[0].boxes, recipe.passes[0])
    cut = [cut_crop(image, planned) for image in images]
    inpaint = ByHandWebUI(tiny_models, "tiny-toon")
    made = inpaint(
        ["a red fox"] * 3,
        ["blurry"] * 3,
        SEEDS[:3],
        steps=6,
        images=[r for r, _ in cut],
        masks=[m for _, m in cut],
        strength=0.6,
    )
    for i in range(3):
        want = paste_back(images[i], made[i], planned)
        assert np.array_equal(arr(result.images[i]), arr(want)), i


def test_batches_count_progress_per_image_and_cancel_keeps_finished_batches(backend):
    recipe = parse_recipe({"passes": [{"denoising_strength": 0.5}, {"denoising_strength": 0.4}]})
    control = Control()
    seen = []

    def progress(p):
        seen.append((p.run, p.image, p.batch))
        if p.run == 2 and p.image == 2:
            control.cancel()  # during pass 2's second batch

    job = Job(dataclasses.replace(CTX, steps=4), seeds=SEEDS, batch_size=2)
    result = run_job(recipe, job, backend, control=control, progress=progress)
    assert result.stopped == "cancelled"
    assert {(run, image, batch) for run, image, batch in seen} >= {(1, 0, 2), (1, 2, 2), (2, 0, 2)}
    assert [len(o) for o in result.outputs] == [3, 3, 2, 2]  # batch 1 got pass 2, batch 2 not
    assert result.image_account(2).text() == "stopped at pass 2: cancelled"


def test_skip_abandons_the_run_for_the_batch_being_sampled(backend):
    recipe = parse_recipe({"passes": [{"denoising_strength": 0.5}]})
    control = Control()

    def progress(p):
        if p.run == 1 and p.image == 0 and p.step == 1:
            control.skip()

    job = Job(dataclasses.replace(CTX, steps=4), seeds=SEEDS, batch_size=2)
    result = run_job(recipe, job, backend, control=control, progress=progress)
    assert result.complete
    assert [o[1].skipped for o in result.outputs] == [True, True, False, False]


def test_a_fault_in_a_batch_keeps_the_finished_ones(backend, tiny_models, tmp_path):
    from conftest import misshapen_copy

    folder = tmp_path / "more"
    misshapen_copy(tiny_models, folder / "broken.safetensors")
    faulty = DiffusersBackend([tiny_models, folder], home=tiny_models.parent / "home")
    recipe = parse_recipe({"passes": [{"denoising_strength": 0.5}, {"checkpoint": "broken"}]})
    job = Job(dataclasses.replace(CTX, steps=4), seeds=SEEDS, batch_size=3)
    result = run_job(recipe, job, faulty)
    assert result.stopped == "error" and result.runs_done == 1
    assert [len(o) for o in result.outputs] == [2, 2, 2, 2]


def test_devices_and_dtypes_are_checked(tiny_models):
    assert resolve_device("auto")[0] in ("cpu", "cuda", "mps")
    assert resolve_device("tpu")[1].startswith("one of auto, cpu, cuda, mps")
    if not torch.cuda.is_available():
        assert "has no CUDA device" in resolve_device("cuda")[1]
    assert resolve_dtype("auto", "cpu") == ("fp32", None)
    assert resolve_dtype("auto", "cuda") == ("fp16", None)
    assert "fp16 is for GPUs" in resolve_dtype("fp16", "cpu")[1]
    assert resolve_dtype("fp64", "cpu")[1] == "one of auto, fp32, fp16, bf16"
    with pytest.raises(BackendError, match="dtype 'fp16': allowed"):
        DiffusersBackend([tiny_models], device="cpu", dtype="fp16")


def test_bf16_runs_and_same_seed_same_image_on_the_same_device(tiny_models):
    b = DiffusersBackend([tiny_models], home=tiny_models.parent / "home", dtype="bf16")
    recipe = parse_recipe({"passes": [{"denoising_strength": 0.5}]})
    job = Job(dataclasses.replace(CTX, steps=3), seeds=[7])
    one, two = run_job(recipe, job, b), run_job(recipe, job, b)
    assert one.complete and np.array_equal(arr(one.images[0]), arr(two.images[0]))
    assert next(b._cache["tiny-toon"][0].unet.parameters()).dtype == torch.bfloat16
