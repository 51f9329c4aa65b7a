"""Chains in the WebUI (the stand-in of tests/webui_stub, four hosts): repeats that settle,
their changes in infotext and the API's info, and a chain stopped after a pass, sent to
img2img and continued, equal to the whole chain in one go."""

# ruff: noqa: F811 - `webui` is test_webui's fixture, imported for pytest to find
import itertools

import numpy as np
from test_webui import api_txt2img, txt2img, webui  # noqa: F401

from lib_multipass.infotext import parse_params_line

# the stand-in's img2img blends the image toward the checkpoint's colour by the strength, so
# each repeat at 0.5 changes it by half as much as the one before: 0.5, 0.25, 0.125... of the gap
SETTLE = {
    "passes": [
        {"checkpoint": "photo", "denoising_strength": 0.5, "repeats": 8, "converge_below": 3},
    ]
}


def img2img_calls(webui):
    return [c for c in webui.processing.calls if c["kind"] == "img2img"]


def test_repeats_stop_once_the_image_settles_and_the_changes_are_written(webui):
    _p, processed = txt2img(webui, recipe=SETTLE)
    text = processed.infotexts[processed.index_of_first_image]
    params = parse_params_line(text.splitlines()[-1])
    changes = [float(c) for c in params["Multipass 1 changes"].split()]
    assert 1 < len(changes) < 8 and len(img2img_calls(webui)) == len(changes)
    assert all(c >= 3 for c in changes[:-1]) and changes[-1] < 3
    for a, b in itertools.pairwise(changes):
        assert abs(b - a / 2) <= 1  # halving, give or take the rounding to whole pixels
    assert params["Multipass result"] == "complete"


def test_the_api_info_carries_each_images_changes(webui):
    _response, info = api_txt2img(webui, SETTLE, batch_size=2)
    per_image = info["extra_generation_params"]["Multipass changes"]
    assert len(per_image) == 2
    for changes, text in zip(per_image, info["infotexts"][-2:], strict=True):
        params = parse_params_line(text.splitlines()[-1])
        assert params["Multipass 1 changes"] == " ".join(f"{c:.2f}" for c in changes)
        assert changes[-1] < 3 <= min(changes[:-1])


def pixels(image):
    return np.asarray(image.convert("RGB"))


CHAIN = {
    "passes": [
        {"checkpoint": "photo", "denoising_strength": 0.5, "upscale_by": 1.5},
        {"denoising_strength": 0.4, "repeats": 4, "converge_below": 3},
        {"checkpoint": "toon.safetensors [aaaa]", "denoising_strength": 0.3},
        {
            "region": "crop",
            "mask_source": "boxes",
            "boxes": [[8, 8, 40, 40]],  # on the 64x64 base: 12..60 on the 96x96 image
            "denoising_strength": 0.6,
            "working_width": 64,
            "working_height": 64,
        },
    ]
}


def img2img(webui, state, image, seed):
    """An img2img job as "Send to img2img" sets it up: the image, its seed and prompt, and
    Multipass's fields as the paste callbacks give them."""
    webui.shared.state.begin()
    p = webui.processing.StableDiffusionProcessingImg2Img(
        prompt="a castle",
        negative_prompt="blurry",
        seed=seed,
        steps=20,
        sampler_name="Euler a",
        width=64,
        height=64,
        outpath_samples="out",
        outpath_grids="grids",
        init_images=[image],
        denoising_strength=0.75,
    )
    p.scripts = webui.runner
    args = [None] * len(webui.runner.inputs)
    args[webui.script.args_from] = True
    args[webui.script.args_from + 1] = state
    p.script_args = tuple(args)
    return webui.processing.process_images(p)


def test_stopped_after_pass_1_sent_to_img2img_and_continued_equals_the_whole_chain(webui):
    from lib_multipass.webui import ui

    _p, whole = txt2img(webui, recipe=CHAIN, batch_size=2)
    _p, stopped = txt2img(webui, recipe={**CHAIN, "stop_after": 1}, batch_size=2)
    first = stopped.index_of_first_image
    picked, text = stopped.images[first + 1], stopped.infotexts[first + 1]  # the second: 101
    params = parse_params_line(text.splitlines()[-1])
    assert params["Multipass stop after"] == "1" and params["Multipass passes"] == "4"
    assert picked.size == (96, 96)  # pass 1's upscale, and no more

    # what "Send to img2img" pastes: the whole chain, going on at pass 2
    state = ui.recipe_state_from_params(params, 4, continuing=True)
    assert state["from_pass"] == 2 and state["stop_after"] == 0
    f = next(f for f in ui.CHAIN_FIELDS if f.name == "from_pass")
    assert ui.chain_paste(f, True)(params) == 2 and ui.chain_paste(f, False)(params) == 1

    webui.processing.calls.clear()
    continued = img2img(webui, state, picked, int(params["Seed"]))
    done = continued.images[continued.index_of_first_image]
    want = whole.images[whole.index_of_first_image + 1]
    assert done.size == want.size == (96, 96)
    assert np.array_equal(pixels(done), pixels(want))

    # the continued image tells the whole chain: what ran before, what ran now
    text = continued.infotexts[continued.index_of_first_image]
    after = parse_params_line(text.splitlines()[-1])
    assert after["Multipass from pass"] == "2" and after["Multipass passes"] == "4"
    assert after["Multipass result"] == "complete"
    assert "Multipass stop after" not in after


def test_the_gallery_gets_each_images_plot_and_animation_when_asked(webui, tmp_path):
    from PIL import Image

    webui.shared.opts.data["multipass_change_plot"] = True
    webui.shared.opts.data["multipass_animation"] = "gif"
    webui.shared.opts.data["multipass_animation_frame_ms"] = 120
    _p, processed = txt2img(webui, recipe=SETTLE, outpath_samples=str(tmp_path))
    first = processed.index_of_first_image
    _final, plot, shown = processed.images[first:]
    assert len(processed.infotexts) == len(processed.images)
    assert plot.size == (200, 120)
    path = shown.already_saved_as  # the file the gallery shows: the animation itself
    assert path == f"{tmp_path}/100-chain.gif"
    params = parse_params_line(processed.infotexts[first].splitlines()[-1])
    runs = len(params["Multipass 1 changes"].split())
    with Image.open(path) as anim:
        assert anim.n_frames == 1 + runs  # the base, then each run (the last the final)
        anim.seek(anim.n_frames - 1)
        assert anim.info["duration"] == 120


def test_bad_chain_fields_are_named_at_the_api_and_in_the_ui(webui):
    """converge_below, from_pass and stop_after at the API (422 before the job) and from the
    UI's widgets (the pass's hint; Generate makes nothing and says why)."""
    import json

    from test_webui import asgi_call

    from lib_multipass.fields import PASS_FIELDS
    from lib_multipass.webui import api, job, ui

    check = api.RecipeCheck(None, job.validate_request)
    recipe = {
        "from_pass": 3,
        "passes": [{"repeats": 2, "converge_below": 300}, {"converge_below": 2}],
    }
    bad = {"prompt": "x", "alwayson_scripts": {"multipass": {"args": [True, recipe]}}}
    sent = asgi_call(check, bad)
    assert sent[0]["status"] == 422
    detail = json.loads(sent[1]["body"])["detail"]
    assert [(d["where"], d["field"], d["value"]) for d in detail] == [
        ("pass 1", "converge_below", 300),
        ("pass 2", "converge_below", 2.0),
    ]
    # the chain's own fields once the passes are good
    recipe = {"from_pass": 3, "passes": [{"denoising_strength": 0.3}]}
    sent = asgi_call(check, {"alwayson_scripts": {"multipass": {"args": [True, recipe]}}})
    detail = json.loads(sent[1]["body"])["detail"]
    assert detail[0]["message"] == (
        "recipe, field 'from_pass': got 3; allowed: a pass of this recipe: 1 to 1"
    )
    recipe = {"stop_after": "x", "passes": [{}]}
    sent = asgi_call(check, {"alwayson_scripts": {"multipass": {"args": [True, recipe]}}})
    assert json.loads(sent[1]["body"])["detail"][0]["field"] == "stop_after"

    # the UI: a converge_below typed without repeats, and a stop before the start
    slots = [(None, f) for f in ui.CHAIN_FIELDS] + [(0, f) for f in PASS_FIELDS]
    values = [2, 1] + [ui.to_widget(f, ui.default_pass(0)[f.name]) for f in PASS_FIELDS]
    values[2 + [f.name for f in PASS_FIELDS].index("converge_below")] = "1.5"
    state = ui.collect_state(slots, values, None)
    assert state["from_pass"] == 2 and state["stop_after"] == 1
    hint = ui.hint(state["passes"][0], 20)
    assert hint.startswith("⚠ pass 1, field 'converge_below': got 1.5")
    _p, processed = txt2img(webui, recipe=state)
    assert webui.processing.calls == []
    assert "nothing was generated" in processed.comments
    assert "field 'converge_below'" in processed.comments


def test_xyz_has_convergence_axes(webui):
    from lib_multipass.webui import xyz

    assert xyz.axis_label(0, "converge_below") == "[Multipass] Pass 1 stop repeats below change"
    assert "converge_below" in xyz.AXIS_FIELDS and "repeats" in xyz.AXIS_FIELDS


def test_pass_hints_say_which_passes_this_job_leaves_out():
    from lib_multipass.webui import ui

    state = {"from_pass": 2, "stop_after": 3, "passes": [{}, {}, {}, {}]}
    said = [ui.chain_hint(state, i) for i in range(4)]
    assert said[0].startswith("Ran before: this job starts at pass 2")
    assert said[1] == said[2] == ""
    assert said[3].startswith("After the stop: this job stops after pass 3")
    assert ui.chain_hint({"from_pass": "x"}, 0) == ""


def test_an_api_img2img_request_continues_at_the_size_of_the_image_it_sends(webui):
    """The API's check sees a continued chain at the sent image's size, with its boxes drawn
    on the chain's base, as the whole chain's are."""
    import base64
    import io

    import pytest
    from PIL import Image

    from lib_multipass.recipe import RecipeError
    from lib_multipass.webui import job

    buf = io.BytesIO()
    Image.new("RGB", (96, 96)).save(buf, "PNG")
    picked = base64.b64encode(buf.getvalue()).decode()
    assert job.sent_size(job.RequestView({"init_images": [picked]})) == (96, 96)
    assert job.sent_size(job.RequestView({"init_images": ["not base64!"]})) is None
    assert job.sent_size(job.RequestView({})) is None
    crop = {
        "region": "crop",
        "mask_source": "boxes",
        "boxes": [[70, 70, 90, 90]],
        "denoising_strength": 0.3,
    }
    recipe = {"from_pass": 2, "passes": [{"upscale_by": 1.5}, crop]}
    body = {"width": 64, "height": 64, "init_images": [picked]}
    # boxes are drawn on the chain's base (the request's size, as pasted): this one lies
    # outside it, as it would in the whole chain
    with pytest.raises(RecipeError, match="boxes that overlap the 64x64 base image"):
        job.validate_request(True, recipe, body)
    crop["boxes"] = [[40, 40, 60, 60]]
    job.validate_request(True, recipe, body)
