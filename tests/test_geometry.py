"""Crop geometry: properties over random masks and sizes, and the awkward cases by hand."""

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lib_multipass.geometry import (
    auto_working_size,
    crop_for_mask,
    pad_box,
    resolve_padding,
    round8,
    scale_box,
    upscaled_size,
)


@st.composite
def scenes(draw):
    w = draw(st.integers(1, 3000))
    h = draw(st.integers(1, 3000))
    x1 = draw(st.integers(0, w - 1))
    y1 = draw(st.integers(0, h - 1))
    x2 = draw(st.integers(x1 + 1, w))
    y2 = draw(st.integers(y1 + 1, h))
    pads = draw(st.tuples(*[st.integers(0, 400)] * 4))
    working = draw(st.none() | st.tuples(st.integers(8, 2048), st.integers(8, 2048)))
    family = draw(st.sampled_from(["sd1", "sd2", "sdxl"]))
    return (w, h), (x1, y1, x2, y2), pads, working, family


def contains(outer, inner):
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and outer[2] >= inner[2]
        and outer[3] >= inner[3]
    )


@given(scenes())
def test_crop_invariants(scene):
    size, mask_box, pads, working, family = scene
    crop = crop_for_mask(mask_box, size, pads, working, family)
    x1, y1, x2, y2 = crop.box
    # inside the image, non-empty, and around the whole mask
    assert 0 <= x1 < x2 <= size[0] and 0 <= y1 < y2 <= size[1]
    assert contains(crop.box, mask_box)
    # the working size is a multiple of 8
    assert crop.working[0] % 8 == 0 and crop.working[1] % 8 == 0 and min(crop.working) >= 8
    # working aspect equals the crop's, within rounding: one pixel of the crop, 4 of the working
    cw, ch = x2 - x1, y2 - y1
    ww, wh = crop.working
    assert (cw - 1) / (ch + 1) - 1e-9 <= (ww + 4) / max(wh - 4, 1)
    assert (ww - 4) / (wh + 4) <= (cw + 1) / (ch - 1 if ch > 1 else 0.5) + 1e-9


@given(scenes())
def test_crop_keeps_padding_when_it_only_grows(scene):
    size, mask_box, pads, working, family = scene
    crop = crop_for_mask(mask_box, size, pads, working, family)
    padded = pad_box(mask_box, pads, size)
    cw, ch = crop.box[2] - crop.box[0], crop.box[3] - crop.box[1]
    if cw >= padded[2] - padded[0] and ch >= padded[3] - padded[1]:
        assert contains(crop.box, padded)


@given(scenes())
def test_explicit_working_aspect_is_met_when_the_image_allows(scene):
    size, mask_box, pads, working, family = scene
    assume(working is not None)
    crop = crop_for_mask(mask_box, size, pads, working, family)
    ww, wh = round8(working[0]), round8(working[1])
    if crop.working == (ww, wh):
        cw, ch = crop.box[2] - crop.box[0], crop.box[3] - crop.box[1]
        # one pixel of rounding on each side of the crop
        assert abs(cw / ch - ww / wh) <= (ww / wh) * (1 / ch) + 1 / ch + 1e-9


def test_small_mask_in_the_middle_grows_to_working_aspect():
    crop = crop_for_mask((100, 100, 110, 140), (512, 512), (8, 8, 8, 8), (512, 512))
    assert crop.box == (77, 92, 133, 148)  # 56x56 around the padded 26x56 box
    assert crop.working == (512, 512)


def test_mask_at_the_border_shifts_inside():
    crop = crop_for_mask((0, 0, 10, 10), (512, 512), (32, 32, 32, 32), (512, 256))
    assert crop.box == (0, 0, 84, 42)


def test_one_pixel_mask():
    crop = crop_for_mask((511, 511, 512, 512), (512, 512), (0, 0, 0, 0), (512, 512))
    assert crop.box == (511, 511, 512, 512)
    assert crop.scale == 512


def test_full_image_mask_keeps_the_image_and_bends_the_working_size():
    crop = crop_for_mask((0, 0, 768, 512), (768, 512), (32,) * 4, (512, 512))
    assert crop.box == (0, 0, 768, 512)
    # same area as 512x512, the image's 3:2 aspect
    assert crop.working == (624, 416)


def test_mask_larger_than_working_size():
    crop = crop_for_mask((100, 100, 1900, 1500), (2048, 2048), (0,) * 4, (512, 512))
    assert crop.box[2] - crop.box[0] == crop.box[3] - crop.box[1] == 1800
    assert crop.scale < 1


def test_auto_working_size_follows_family_and_aspect():
    assert auto_working_size((100, 100), "sd1") == (512, 512)
    assert auto_working_size((100, 100), "sdxl") == (1024, 1024)
    assert auto_working_size((150, 100), "sd1") == (624, 416)
    assert auto_working_size((1000, 10), "sd1") == (888, 296)  # capped at 3:1
    assert auto_working_size((100, 100), "flux") == (1024, 1024)
    assert auto_working_size((100, 100), "qwen") == (1328, 1328)
    with pytest.raises(ValueError, match="family 'wan'"):
        auto_working_size((1, 1), "wan")


def test_padding_fraction_is_relative_to_the_mask():
    assert resolve_padding((0, 0, 100, 40), 0.25, "fraction") == (25, 10, 25, 10)
    assert resolve_padding((0, 0, 3, 3), 0.25, "fraction") == (1, 1, 1, 1)  # rounded up
    assert resolve_padding((0, 0, 100, 40), 32, "px") == (32, 32, 32, 32)
    assert resolve_padding((0, 0, 100, 40), 0, "fraction", (0.1, 0, 0.5, 1)) == (10, 0, 50, 40)
    with pytest.raises(ValueError, match="padding unit 'em'"):
        resolve_padding((0, 0, 1, 1), 1, "em")


def test_bad_mask_box():
    with pytest.raises(ValueError, match="not inside the image"):
        crop_for_mask((0, 0, 600, 10), (512, 512), (0,) * 4)


@given(
    st.tuples(st.integers(0, 500), st.integers(0, 500), st.integers(1, 500), st.integers(1, 500)),
    st.tuples(st.integers(8, 1000), st.integers(8, 1000)),
    st.tuples(st.integers(8, 3000), st.integers(8, 3000)),
)
def test_scaled_box_covers_the_original(box, src, dst):
    x1, y1 = min(box[0], src[0] - 1), min(box[1], src[1] - 1)
    b = (x1, y1, min(src[0], x1 + box[2]), min(src[1], y1 + box[3]))
    s = scale_box(b, src, dst)
    assert 0 <= s[0] <= s[2] <= dst[0] and 0 <= s[1] <= s[3] <= dst[1]
    assert s[0] <= b[0] * dst[0] / src[0] and s[2] >= b[2] * dst[0] / src[0] - 1e-9


def test_upscaled_size_rounds_to_8():
    assert upscaled_size((512, 768), 1.5) == (768, 1152)
    assert upscaled_size((512, 512), 1.3) == (664, 664)
    assert upscaled_size((520, 512), 1) == (520, 512)


def test_small_working_sizes_keep_the_aspect():
    # a 56x64 image too small to frame its mask at 1:1: the working size follows the crop,
    # and rounding each side alone to 8 would give 56x72 (0.78 for 0.875)
    crop = crop_for_mask((0, 0, 32, 57), (56, 64), (32,) * 4, (64, 64))
    assert crop.box == (0, 0, 56, 64)
    assert crop.working == (56, 64)


@given(st.floats(64 * 64, 2048 * 2048), st.floats(1 / 3, 3))
def test_size_for_area_is_the_truest_multiple_of_8(area, aspect):
    from lib_multipass.geometry import size_for_area

    w, h = size_for_area(area, aspect)
    assert w % 8 == 0 and h % 8 == 0
    ideal_w = (area * aspect) ** 0.5
    assert abs(w - max(64, ideal_w)) < 8
    for other_h in (h - 8, h + 8):
        if other_h >= 64:
            # relative error: w/h against h/w alike
            assert abs(math.log(w / h / aspect)) <= abs(math.log(w / other_h / aspect)) + 1e-12
