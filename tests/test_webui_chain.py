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
