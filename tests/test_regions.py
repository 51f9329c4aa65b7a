"""Regions as passes (seed 002's regional prompting): one painted mask, each separate area its
own crop with its own prompt ([SEP]) and seed, in one go, on the tiny models."""

import base64
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lib_multipass.engine import Job, run_job
from lib_multipass.imaging import plan_masked_crop
from lib_multipass.plan import JobContext
from lib_multipass.recipe import RecipeError, parse_pass, parse_recipe

CTX = JobContext(
    width=384, height=256, steps=4, sampler="Euler a", checkpoint="tiny-toon", prompt="a park"
)
REGIONS = {
    "region": "crop",
    "mask_split": True,
    "working_width": 128,
    "working_height": 128,
    "mask_blur": 4,
    "padding": 8,
    "denoising_strength": 0.7,
    "prompt": "a knight [SEP] a dragon, {prompt}",
    "prompt_mode": "template",
}


def two_characters() -> Image.Image:
    """The mask a user paints for two characters: the right one first, so order is by place."""
    mask = Image.new("L", (384, 256))
    pen = ImageDraw.Draw(mask)
    pen.ellipse((250, 40, 350, 230), fill=255)
    pen.ellipse((30, 60, 120, 240), fill=255)
    return mask


def base_image() -> Image.Image:
    rng = np.random.default_rng(5)
    return Image.fromarray(rng.integers(0, 256, (256, 384, 3), dtype=np.uint8))


def spy_on(backend):
    sent = []
    real = backend.generate

    def spy(requests, on_step):
        sent.extend((r.prompt, r.seed, r.width, r.height) for r in requests)
        return real(requests, on_step)

    backend.generate = spy
    return sent


def test_each_area_of_the_job_mask_gets_its_prompt_and_seed(backend):
    sent = spy_on(backend)
    recipe = parse_recipe({"passes": [REGIONS]})
    image, mask = base_image(), two_characters()
    job = Job(CTX, images=[image], seeds=[70], job_mask=mask)
    result = run_job(recipe, job, backend)
    assert result.complete, result.account()
    # left to right, whatever order they were painted in; seed + area index
    assert sent == [("a knight", 70, 128, 128), ("a dragon, a park", 71, 128, 128)]
    # nothing changes outside the blurred mask; each area did change
    p = parse_pass(REGIONS)
    outside = np.asarray(plan_masked_crop(mask, p).blurred) == 0
    before, after = np.asarray(image), np.asarray(result.images[0])
    assert (before[outside] == after[outside]).all()
    for x1, x2 in ((30, 120), (250, 350)):
        assert (before[100:200, x1 + 20 : x2 - 20] != after[100:200, x1 + 20 : x2 - 20]).any()


def test_a_recipes_mask_image_splits_too_and_the_plan_says_so(backend, tmp_path, capsys):
    from lib_multipass.cli import main

    buffer = io.BytesIO()
    two_characters().save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    sent = spy_on(backend)
    passes = [{**REGIONS, "mask_source": "image", "mask_image": data}]
    result = run_job(
        parse_recipe({"passes": passes}), Job(CTX, images=[base_image()], seeds=[9]), backend
    )
    assert result.complete and [s[1] for s in sent] == [9, 10]
    (tmp_path / "mask.png").write_bytes(buffer.getvalue())
    recipe = {
        "base": {"width": 384, "height": 256},
        "passes": [{**REGIONS, "mask_source": "image", "mask_image": "mask.png"}],
    }
    path = tmp_path / "regions.json"
    path.write_text(__import__("json").dumps(recipe))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "crop 214x214@0,42->128x128 227x227@157,22->128x128" in out


def test_a_mask_of_too_many_areas_is_refused_before_anything_runs(backend):
    dots = Image.new("L", (384, 256))
    pen = ImageDraw.Draw(dots)
    for k in range(70):
        x, y = 10 + (k % 10) * 36, 10 + (k // 10) * 34
        pen.rectangle((x, y, x + 4, y + 4), fill=255)
    sent = spy_on(backend)
    job = Job(CTX, images=[base_image()], seeds=[1], job_mask=dots)
    with pytest.raises(RecipeError) as caught:
        run_job(parse_recipe({"passes": [REGIONS]}), job, backend)
    assert str(caught.value) == (
        "pass 1, field 'mask_split': got True; allowed: a mask of at most 64 separate areas "
        "to split (this one: 70 separate areas)"
    )
    assert sent == []
