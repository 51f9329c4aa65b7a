"""Planning: a recipe expanded into runs with checkpoints, prompts, sizes, steps and crops."""

import pytest

from lib_multipass.plan import (
    JobContext,
    checkpoint_loads,
    format_plan,
    plan_as_dicts,
    plan_recipe,
    resolve_prompt,
)
from lib_multipass.recipe import RecipeError, parse_recipe

CTX = JobContext(
    width=512, height=768, steps=20, checkpoint="toon", prompt="a knight", negative_prompt="blurry"
)


def finder(i, p, size, family):
    """Crops from a pass's boxes, given in the 512x768 base image's pixels."""
    from lib_multipass.imaging import box_crops

    return tuple(m.crop for m in box_crops(size, (512, 768), p.boxes, p, family))


def plan(passes, ctx=CTX, **kw):
    return plan_recipe(parse_recipe({"passes": passes}), ctx, **kw)


def test_checkpoints_carry_over_until_changed():
    runs = plan(
        [{"checkpoint": "photo"}, {}, {"checkpoint": "toon"}, {"enabled": False, "checkpoint": "x"}]
    )
    assert [r.checkpoint for r in runs] == ["photo", "photo", "toon"]
    assert checkpoint_loads(runs, "toon") == 2


def test_switches_count_from_the_base_checkpoint():
    runs = plan([{"checkpoint": "photo"}])
    assert checkpoint_loads(runs, "toon") == 1
    assert checkpoint_loads(plan([{}]), "toon") == 0


def test_inherited_settings_and_prompt_modes():
    (a, b, c, d) = plan(
        [
            {},
            {
                "prompt": "photo",
                "prompt_mode": "append",
                "steps": 30,
                "cfg_scale": 5,
                "sampler": "DDIM",
            },
            {"prompt": "close-up, {prompt}, detailed", "prompt_mode": "template"},
            {
                "prompt": "new",
                "prompt_mode": "replace",
                "negative_prompt": "ugly",
                "negative_prompt_mode": "append",
            },
        ]
    )
    assert (a.prompt, a.negative_prompt, a.steps, a.cfg_scale, a.sampler) == (
        "a knight",
        "blurry",
        20,
        7.0,
        "Euler a",
    )
    assert (b.prompt, b.steps, b.cfg_scale, b.sampler) == ("a knight, photo", 30, 5.0, "DDIM")
    assert c.prompt == "close-up, a knight, detailed"
    assert (d.prompt, d.negative_prompt) == ("new", "blurry, ugly")


def test_resolve_prompt_edges():
    assert resolve_prompt("append", "", "base") == "base"
    assert resolve_prompt("append", "own", "") == "own"
    with pytest.raises(ValueError, match="prompt mode 'x'"):
        resolve_prompt("x", "", "")


def test_upscale_happens_once_before_a_pass_and_sizes_chain():
    runs = plan([{"upscale_by": 1.5, "repeats": 2}, {"upscale_by": 2, "upscaler": "ESRGAN"}])
    assert [(r.size_in, r.size, r.upscaler) for r in runs] == [
        ((512, 768), (768, 1152), "Lanczos"),
        ((768, 1152), (768, 1152), None),
        ((768, 1152), (1536, 2304), "ESRGAN"),
    ]


def test_steps_and_real_strengths_follow_the_step_mode():
    runs = plan([{"denoising_strength": 0.55}])
    assert (runs[0].count.run, runs[0].count.schedule) == (12, 20)
    fixed = plan([{"denoising_strength": 0.55}], JobContext(512, 512, steps=20, step_mode="fixed"))
    assert (fixed[0].count.run, fixed[0].count.schedule) == (20, 36)


def test_seed_deltas():
    runs = plan(
        [
            {"seed": "same", "repeats": 2},
            {"seed": "offset", "seed_offset": 10, "repeats": 3},
            {"seed": "random"},
        ]
    )
    assert [r.seed_delta for r in runs] == [0, 0, 10, 11, 12, None]


def test_labels_number_the_runs_of_a_pass():
    runs = plan([{"name": "chain", "schedule": "list", "strengths": [0.8, 0.6]}, {}])
    assert [(r.number, r.label) for r in runs] == [
        (1, "chain (1/2)"),
        (2, "chain (2/2)"),
        (3, "pass 2"),
    ]


def test_upscale_over_the_size_limit_is_an_error():
    with pytest.raises(RecipeError) as info:
        plan([{"upscale_by": 4}, {"upscale_by": 4}])
    assert str(info.value).startswith("pass 2, field 'upscale_by': got 4.0")
    assert "8192 px a side" in str(info.value)


def test_job_mask_needed_for_job_mask_source():
    with pytest.raises(RecipeError, match=r"pass 1, field 'mask_source'.*no inpaint mask"):
        plan([{"region": "crop"}])
    runs = plan([{"region": "crop"}], JobContext(512, 512, has_job_mask=True))
    assert runs[0].crops is None


def test_mask_image_needed_for_image_mask_source():
    with pytest.raises(RecipeError, match="pass 1, field 'mask_image'"):
        plan([{"region": "crop", "mask_source": "image"}])


def test_too_many_runs():
    passes = [{"schedule": "list", "strengths": [0.5] * 64, "repeats": 16}]
    with pytest.raises(RecipeError, match=r"1024 runs.*at most 256"):
        plan(passes)


def test_crops_come_from_the_finder_and_show_in_the_table():
    runs = plan(
        [
            {"upscale_by": 2},
            {
                "region": "crop",
                "mask_source": "boxes",
                "boxes": [[200, 100, 300, 200]],
                "mask_blur": 0,
                "padding": 0,
            },
        ],
        find_crops=finder,
    )
    (crop,) = runs[1].crops
    assert crop.box == (400, 200, 600, 400) and crop.working == (512, 512)
    table = format_plan(runs, CTX)
    assert "crop 200x200@400,200->512x512" in table
    assert "2 runs" in table
    assert plan_as_dicts(runs)[1]["crops"] == [{"box": [400, 200, 600, 400], "working": [512, 512]}]


def test_table_warns_when_a_crop_loses_detail():
    runs = plan(
        [
            {
                "region": "crop",
                "mask_source": "boxes",
                "boxes": [[0, 0, 512, 700]],
                "working_width": 256,
                "working_height": 256,
            }
        ],
        find_crops=finder,
    )
    assert "loses detail" in format_plan(runs, CTX)
