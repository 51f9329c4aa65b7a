"""Masks, crops and paste-back on real PIL images: nothing outside the blurred mask changes."""

import base64
import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from lib_multipass.imaging import (
    blur_mask,
    box_crops,
    cut_crop,
    mask_from_boxes,
    open_mask_image,
    paste_back,
    plan_masked_crop,
    to_mask,
)
from lib_multipass.recipe import parse_pass


def noise_image(size, mode, seed):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


@st.composite
def jobs(draw):
    w, h = draw(st.integers(1, 160)), draw(st.integers(1, 160))
    n = draw(st.integers(0, 3))
    boxes = []
    for _ in range(n):
        x1, y1 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
        boxes.append((x1, y1, draw(st.integers(x1 + 1, w)), draw(st.integers(y1 + 1, h))))
    mode = draw(st.sampled_from(["RGB", "RGBA", "L"]))
    ww, wh = draw(st.sampled_from([(0, 0), (64, 64), (96, 64), (64, 128)]))
    p = parse_pass(
        {
            "region": "crop",
            "mask_blur": draw(st.integers(0, 12)),
            "padding": draw(st.sampled_from([0, 4, 32, 0.5])),
            "padding_unit": draw(st.sampled_from(["px", "fraction"])),
            "working_width": ww,
            "working_height": wh,
        }
    )
    return (w, h), boxes, mode, p, draw(st.integers(0, 2**16))


@given(jobs())
def test_paste_back_changes_nothing_outside_the_blurred_mask(job):
    size, boxes, mode, p, seed = job
    image = noise_image(size, mode, seed)
    mask = mask_from_boxes(size, boxes)
    planned = plan_masked_crop(mask, p)
    if not boxes:
        assert planned is None  # empty mask: no crop
        return
    x1, y1, x2, y2 = planned.crop.box
    assert 0 <= x1 < x2 <= size[0] and 0 <= y1 < y2 <= size[1]
    # the crop holds the whole mask, blurred edge included
    bb = planned.blurred.getbbox()
    assert x1 <= bb[0] and y1 <= bb[1] and x2 >= bb[2] and y2 >= bb[3]
    region, crop_mask = cut_crop(image, planned)
    assert region.size == crop_mask.size == planned.crop.working
    generated = noise_image(region.size, "RGB", seed + 1)
    out = paste_back(image, generated, planned)
    assert out.size == image.size and out.mode == image.mode
    before, after = np.asarray(image), np.asarray(out)
    keep = np.asarray(planned.blurred) == 0
    assert np.array_equal(before[keep], after[keep])
    if mode == "RGBA":
        assert np.array_equal(before[..., 3], after[..., 3])  # alpha is the input's
    # where the blurred mask is fully on, the pixel is the generated one
    full = np.asarray(planned.blurred) == 255
    if full.any() and planned.crop.working == (x2 - x1, y2 - y1) and mode == "RGB":
        crop_gen = np.zeros_like(before)
        crop_gen[y1:y2, x1:x2] = np.asarray(generated)
        assert np.array_equal(after[full], crop_gen[full])


def test_one_pixel_mask_at_the_corner():
    image = noise_image((64, 48), "RGB", 1)
    mask = mask_from_boxes((64, 48), [(63, 47, 64, 48)])
    planned = plan_masked_crop(mask, parse_pass({"region": "crop", "mask_blur": 0, "padding": 0}))
    assert planned.mask_box == (63, 47, 64, 48)
    assert planned.crop.box == (63, 47, 64, 48)
    out = paste_back(image, Image.new("RGB", planned.crop.working, (1, 2, 3)), planned)
    assert out.getpixel((63, 47)) == (1, 2, 3)
    diff = np.argwhere(np.any(np.asarray(out) != np.asarray(image), axis=2))
    assert diff.tolist() in ([[47, 63]], [])


def test_tiny_mask_survives_a_large_blur():
    mask = mask_from_boxes((44, 57), [(32, 55, 33, 56)])
    for blur in (0, 1, 4, 11, 64):
        blurred = blur_mask(mask, blur)
        assert blurred.getpixel((32, 55)) == 255, blur  # the masked pixel is fully inpainted
        assert blurred.getextrema()[1] == 255


def test_full_image_mask():
    image = noise_image((96, 64), "L", 2)
    mask = Image.new("L", (96, 64), 255)
    planned = plan_masked_crop(
        mask, parse_pass({"region": "crop", "working_width": 512, "working_height": 512})
    )
    assert planned.crop.box == (0, 0, 96, 64)
    out = paste_back(image, Image.new("RGB", planned.crop.working, (200, 200, 200)), planned)
    assert out.mode == "L" and out.getpixel((48, 32)) == 200


def test_box_crops_scale_from_the_base_image():
    p = parse_pass(
        {
            "region": "crop",
            "mask_source": "boxes",
            "boxes": [[10, 10, 20, 20], [40, 40, 50, 50]],
            "padding": 0,
            "mask_blur": 0,
        }
    )
    crops = box_crops((128, 128), (64, 64), p.boxes, p)
    assert [c.mask_box for c in crops] == [(20, 20, 40, 40), (80, 80, 100, 100)]


def test_unsupported_mode_is_named():
    planned = plan_masked_crop(
        mask_from_boxes((8, 8), [(0, 0, 4, 4)]), parse_pass({"region": "crop"})
    )
    with pytest.raises(ValueError, match="image mode 'CMYK' is not supported"):
        paste_back(Image.new("CMYK", (8, 8)), Image.new("RGB", (8, 8)), planned)


def png_bytes(img):
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_open_mask_image_from_data_and_path(tmp_path):
    img = mask_from_boxes((32, 16), [(0, 0, 8, 8)])
    data = base64.b64encode(png_bytes(img)).decode()
    assert open_mask_image(data).size == (32, 16)
    assert open_mask_image("data:image/png;base64," + data).size == (32, 16)
    (tmp_path / "m.png").write_bytes(png_bytes(img))
    assert open_mask_image("m.png", tmp_path).getbbox() == (0, 0, 8, 8)
    # without a base folder (the API), a path is not opened
    with pytest.raises(ValueError, match="not base64 PNG data"):
        open_mask_image(str(tmp_path / "m.png"))
    with pytest.raises(ValueError, match="cannot read"):
        open_mask_image(base64.b64encode(b"not a png").decode())
    assert to_mask(img.convert("RGB"), (64, 32)).size == (64, 32)


@st.composite
def masks(draw):
    w, h = draw(st.integers(8, 160)), draw(st.integers(8, 160))
    mask = Image.new("L", (w, h), 0)
    for _ in range(draw(st.integers(1, 3))):
        x1, y1 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
        x2, y2 = draw(st.integers(x1 + 1, w)), draw(st.integers(y1 + 1, h))
        mask.paste(draw(st.sampled_from([255, 128, 7])), (x1, y1, x2, y2))
    return mask


@given(masks(), st.integers(0, 20))
def test_blurring_the_masks_window_is_blurring_the_whole_canvas(mask, blur):
    """Crops are planned on the mask's neighbourhood only: the same pixels as the whole canvas
    blurred, so a 4096^2 canvas costs what a 512^2 one does."""
    from lib_multipass.imaging import blur_mask, plan_masked_crop

    p = parse_pass({"region": "crop", "mask_blur": blur, "padding": 4})
    planned = plan_masked_crop(mask, p)
    assert np.array_equal(np.asarray(planned.blurred), np.asarray(blur_mask(mask, blur)))


@given(st.integers(16, 300), st.integers(16, 300), st.integers(0, 16), st.data())
def test_box_crops_blur_only_their_window_and_match_the_canvas(w, h, blur, data):
    from lib_multipass.imaging import blur_mask, mask_from_boxes

    x1, y1 = data.draw(st.integers(0, w - 2)), data.draw(st.integers(0, h - 2))
    box = (x1, y1, data.draw(st.integers(x1 + 1, w)), data.draw(st.integers(y1 + 1, h)))
    p = parse_pass({"region": "crop", "mask_source": "boxes", "boxes": [box], "mask_blur": blur})
    (planned,) = box_crops((w, h), (w, h), [box], p)
    whole = blur_mask(mask_from_boxes((w, h), [box]), blur)
    assert np.array_equal(np.asarray(planned.blurred), np.asarray(whole))
    assert planned.window.size[0] <= box[2] - box[0] + 2 * (3 * blur + 4)


def reference_areas(mask: Image.Image) -> list[set[tuple[int, int]]]:
    """8-connected areas of non-zero pixels, by a plain flood fill (slow, obviously right)."""
    w, h = mask.size
    px = mask.load()
    seen: set[tuple[int, int]] = set()
    areas = []
    for y in range(h):
        for x in range(w):
            if not px[x, y] or (x, y) in seen:
                continue
            area, todo = set(), [(x, y)]
            seen.add((x, y))
            while todo:
                cx, cy = todo.pop()
                area.add((cx, cy))
                for dx in (-1, 0, 1):
                    for dy in (-1, 0, 1):
                        nx, ny = cx + dx, cy + dy
                        if 0 <= nx < w and 0 <= ny < h and px[nx, ny] and (nx, ny) not in seen:
                            seen.add((nx, ny))
                            todo.append((nx, ny))
            areas.append(area)
    return areas


@st.composite
def speckled_masks(draw):
    """Small soft masks: random pixels, so areas touch by edges, corners, or not at all."""
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    values = draw(st.lists(st.sampled_from([0, 0, 0, 1, 128, 255]), min_size=w * h, max_size=w * h))
    mask = Image.new("L", (w, h))
    mask.putdata(values)
    return mask


@given(speckled_masks())
def test_mask_areas_are_the_8_connected_areas_left_to_right(mask):
    from lib_multipass.imaging import mask_areas

    areas = mask_areas(mask, most=10_000)
    expected = reference_areas(mask)
    found = []
    for area, box in areas:
        pixels = {
            (box[0] + x, box[1] + y)
            for y in range(area.height)
            for x in range(area.width)
            if area.getpixel((x, y))
        }
        found.append(pixels)
        # each keeps the mask's own values, and its box is its pixels' box
        for x, y in pixels:
            assert area.getpixel((x - box[0], y - box[1])) == mask.getpixel((x, y))
        xs, ys = [x for x, _ in pixels], [y for _, y in pixels]
        assert box == (min(xs), min(ys), max(xs) + 1, max(ys) + 1)
    assert sorted(map(sorted, found)) == sorted(map(sorted, expected))
    assert [b[:2] for _, b in areas] == sorted(b[:2] for _, b in areas)


def test_mask_areas_refuses_a_fragmented_mask():
    from lib_multipass.imaging import MaskTooFragmented, mask_areas

    dots = Image.new("L", (40, 40))
    dots.putdata([255 if x % 2 == 0 and y % 2 == 0 else 0 for y in range(40) for x in range(40)])
    assert len(mask_areas(dots, most=400)) == 400
    with pytest.raises(MaskTooFragmented, match="400 separate areas"):
        mask_areas(dots, most=64)


def test_two_painted_blobs_split_into_two_crops_that_paste_back_exactly():
    """Regional prompting: one mask, two characters; each area its own crop, and together
    they change nothing a single crop of the whole mask would leave alone."""
    from lib_multipass.imaging import mask_areas, plan_placed

    mask = Image.new("L", (640, 384))
    pen = ImageDraw.Draw(mask)
    pen.ellipse((40, 60, 200, 360), fill=255)
    pen.ellipse((420, 40, 600, 340), fill=200)
    p = parse_pass({"region": "crop", "mask_blur": 6, "padding": 24})
    crops = plan_placed(mask_areas(mask, most=64), mask.size, p, "sd1", merge=False)
    assert [c.mask_box for c in crops] == [(40, 60, 201, 361), (420, 40, 601, 341)]
    whole = plan_masked_crop(mask, p)
    assert (
        sum(np.asarray(c.blurred, dtype=int) for c in crops).tolist()
        == np.asarray(whole.blurred, dtype=int).tolist()
    )
