"""Pixel work for detailed inpainting: masks, blur, crop out, paste back (PIL only)."""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from .fields import MAX_SIDE
from .geometry import Box, Crop, Size, crop_for_mask, resolve_padding, scale_box

SUPPORTED_MODES = ("RGB", "RGBA", "L")
MASK_ALL_BLACK = "a mask with white (inpainted) pixels; this one is all black"


@dataclass(frozen=True)
class MaskedCrop:
    """A crop planned from a mask: where, and the blurred mask that blends it back.

    The blurred mask is kept only where it can be non-zero (`window`, the mask's box grown by
    the blur's reach), so planning and pasting cost the same on a 4096^2 canvas as on 512^2.
    """

    crop: Crop
    mask_box: Box  # the mask's own box, before blur and padding
    size: Size  # the image's
    window_box: Box  # where `window` sits in the image
    window: Image.Image  # the blurred mask there; 0 everywhere else: "left exactly as it was"

    @property
    def blurred(self) -> Image.Image:
        """The blurred mask over the whole image (for figures and checks; the work uses crops)."""
        full = Image.new("L", self.size, 0)
        full.paste(self.window, self.window_box[:2])
        return full

    def blurred_in(self, box: Box) -> Image.Image:
        """The blurred mask cut to `box` (any box inside the image)."""
        out = Image.new("L", (box[2] - box[0], box[3] - box[1]), 0)
        wx, wy = self.window_box[:2]
        out.paste(self.window, (wx - box[0], wy - box[1]))
        return out


def mask_from_boxes(size: Size, boxes: Sequence[Box]) -> Image.Image:
    """An L mask, white inside the boxes."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for x1, y1, x2, y2 in boxes:
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=255)
    return mask


def to_mask(image: Image.Image, size: Size) -> Image.Image:
    """Any mask image as L at `size`; non-zero pixels are masked, as in the WebUI."""
    mask = image.convert("L") if image.mode != "L" else image
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    return mask


def blur_reach(blur: int) -> int:
    """How far a Gaussian blur of radius `blur` can move a mask's non-zero pixels (PIL's
    three box passes reach under three radii), with a margin."""
    return 3 * max(0, blur) + 4 if blur > 0 else 0


def blur_mask(mask: Image.Image, blur: int) -> Image.Image:
    """The soft-edged mask used to blend a generated crop back into the image.

    A Gaussian blur of radius `blur`, rescaled to keep the mask's peak: a mask smaller than the
    blur would otherwise fade to nearly nothing (a 1-pixel mask at blur 11 rounds to all zeros)
    and the pass would change nothing. Where even that fades to zero, the radius is halved.
    """
    peak_in = mask.getextrema()[1]
    if blur <= 0 or peak_in == 0:
        return mask.copy()
    radius = float(blur)
    while True:
        out = mask.filter(ImageFilter.GaussianBlur(radius))
        peak = out.getextrema()[1]
        if peak > 0 or radius <= 0.5:
            break
        radius /= 2
    if 0 < peak < peak_in:
        out = out.point(lambda v: min(peak_in, round(v * peak_in / peak)))
    return out


def grow_box(box: Box, by: int, size: Size) -> Box:
    """`box` grown by `by` pixels on every side, within an image of `size`."""
    return (
        max(0, box[0] - by),
        max(0, box[1] - by),
        min(size[0], box[2] + by),
        min(size[1], box[3] + by),
    )


def plan_masked_crop(
    mask: Image.Image,
    p: Any,
    family: str = "sd1",
) -> MaskedCrop | None:
    """The crop for pass `p` over `mask` (same size as the image); None for an empty mask."""
    mask_box = mask.getbbox()
    if mask_box is None:
        return None
    window_box = grow_box(mask_box, blur_reach(p.mask_blur), mask.size)
    return _plan(mask.crop(window_box), window_box, mask_box, mask.size, p, family)


def _plan(
    local: Image.Image, window_box: Box, mask_box: Box, size: Size, p: Any, family: str
) -> MaskedCrop:
    """Blur the mask in its window (the same pixels as blurring the whole canvas: outside the
    window both are zero), then find the crop."""
    window = blur_mask(local, p.mask_blur)
    wx, wy = window_box[:2]
    inner = window.getbbox()
    blurred_box = (
        (inner[0] + wx, inner[1] + wy, inner[2] + wx, inner[3] + wy) if inner else mask_box
    )
    pads = resolve_padding(mask_box, p.padding, p.padding_unit, tuple(p.padding_sides))
    working = (p.working_width, p.working_height) if p.working_width else None
    crop = crop_for_mask(blurred_box, size, pads, working, family)
    return MaskedCrop(crop, mask_box, size, window_box, window)


def box_crops(
    size: Size, base_size: Size, boxes: Sequence[Box], p: Any, family: str = "sd1"
) -> list[MaskedCrop]:
    """One crop per box; boxes are given in the base image's pixels and scaled to `size`."""
    out = []
    for box in boxes:
        scaled = scale_box(box, base_size, size)
        if scaled[0] >= scaled[2] or scaled[1] >= scaled[3]:
            continue  # the box lies outside this image
        window_box = grow_box(scaled, blur_reach(p.mask_blur), size)
        wx, wy = window_box[:2]
        local = mask_from_boxes(
            (window_box[2] - wx, window_box[3] - wy),
            [(scaled[0] - wx, scaled[1] - wy, scaled[2] - wx, scaled[3] - wy)],
        )
        out.append(_plan(local, window_box, scaled, size, p, family))
    return out


def placed_mask(
    box: Box, size: Size, outline: Image.Image | None = None, grow: int = 0
) -> tuple[Image.Image, Box]:
    """A mask placed in an image of `size`: white over `box` (or inside `outline`, an L image
    of the box's size), grown by `grow` pixels (negative shrinks it); with where it sits."""
    if outline is None:  # a box grows or shrinks exactly as a box
        x1, y1, x2, y2 = box
        placed = (
            max(0, x1 - grow),
            max(0, y1 - grow),
            min(size[0], x2 + grow),
            min(size[1], y2 + grow),
        )
        if placed[0] >= placed[2] or placed[1] >= placed[3]:
            return Image.new("L", (1, 1), 0), (x1, y1, x1 + 1, y1 + 1)
        w, h = placed[2] - placed[0], placed[3] - placed[1]
        return Image.new("L", (w, h), 255), placed
    reach = max(0, grow)
    placed = grow_box(box, reach, size)
    local = Image.new("L", (placed[2] - placed[0], placed[3] - placed[1]), 0)
    local.paste(outline.convert("L"), (box[0] - placed[0], box[1] - placed[1]))
    pick = ImageFilter.MaxFilter(3) if grow > 0 else ImageFilter.MinFilter(3)
    for _ in range(abs(grow)):  # a 3x3 square step per pixel: as a box grows, a shape does
        local = local.filter(pick)
    return local, placed


MAX_RUNS = 1_000_000  # row runs a mask may hold to be split (a 4096^2 mask of 64 blobs: ~0.3 M)
_RUN = re.compile(rb"\xff+")


class MaskTooFragmented(ValueError):
    """A mask with more separate areas (or row runs) than Multipass will split."""


def mask_areas(mask: Image.Image, most: int) -> list[tuple[Image.Image, Box]]:
    """The separate areas of a mask (8-connected non-zero pixels), left to right (then top to
    bottom), each as its own mask (the original values, other areas cleared) placed at its box.

    Rows are read as runs of masked pixels (found by a regular expression over the row's
    bytes, so the cost follows the runs, not the pixels) and runs touching across rows are
    joined. Raises MaskTooFragmented beyond `most` areas or MAX_RUNS runs."""
    mask = mask.convert("L")
    bbox = mask.getbbox()
    if bbox is None:
        return []
    bx, by, bx2, by2 = bbox
    local = mask.crop(bbox)
    w = bx2 - bx
    data = local.point([0] + [255] * 255).tobytes()
    rows: list[tuple[int, int, int]] = []  # (y, x1, x2) of each run
    parent: list[int] = []

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    previous: list[tuple[int, int, int]] = []  # (x1, x2, run) of the row above
    for y in range(by2 - by):
        current = []
        start = 0
        for found in _RUN.finditer(data, y * w, (y + 1) * w):
            x1, x2 = found.start() - y * w, found.end() - y * w
            run = len(rows)
            if run >= MAX_RUNS:
                raise MaskTooFragmented(f"more than {MAX_RUNS} runs of masked pixels")
            rows.append((y, x1, x2))
            parent.append(run)
            while start < len(previous) and previous[start][1] < x1:
                start += 1  # ends left of this run (diagonal touch is x2 == x1: kept)
            k = start
            while k < len(previous) and previous[k][0] <= x2:  # starts at most one right
                a, b = root(run), root(previous[k][2])
                if a != b:
                    parent[max(a, b)] = min(a, b)
                k += 1
            current.append((x1, x2, run))
        previous = current
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(root(i), []).append(r)
    if len(groups) > most:
        raise MaskTooFragmented(f"{len(groups)} separate areas")
    out = []
    for runs in groups.values():
        x1 = min(r[1] for r in runs)
        y1 = min(r[0] for r in runs)
        x2 = max(r[2] for r in runs)
        y2 = max(r[0] for r in runs) + 1
        keep = Image.new("L", (x2 - x1, y2 - y1), 0)
        pen = ImageDraw.Draw(keep)
        for y, a, b in runs:
            pen.line([(a - x1, y - y1), (b - 1 - x1, y - y1)], fill=255)
        area = ImageChops.multiply(local.crop((x1, y1, x2, y2)), keep)
        out.append((area, (x1 + bx, y1 + by, x2 + bx, y2 + by)))
    out.sort(key=lambda placed: (placed[1][0], placed[1][1]))
    return out


def plan_placed(
    placed: Sequence[tuple[Image.Image, Box]], size: Size, p: Any, family: str, merge: bool
) -> list[MaskedCrop]:
    """Crops for masks placed in an image (detections, a mask's areas): one each, or one
    around them all (where they overlap, the stronger value)."""

    groups = [list(placed)] if merge and placed else [[m] for m in placed]
    out = []
    for group in groups:
        union = (
            min(b[0] for _, b in group),
            min(b[1] for _, b in group),
            max(b[2] for _, b in group),
            max(b[3] for _, b in group),
        )
        window_box = grow_box(union, blur_reach(p.mask_blur), size)
        wx, wy = window_box[:2]
        local = Image.new("L", (window_box[2] - wx, window_box[3] - wy), 0)
        for mask, box in group:
            at = (box[0] - wx, box[1] - wy, box[0] - wx + mask.width, box[1] - wy + mask.height)
            local.paste(ImageChops.lighter(local.crop(at), mask.convert("L")), at[:2])

        inner = local.getbbox()
        if inner is None:
            continue  # shrunk to nothing
        mask_box = (inner[0] + wx, inner[1] + wy, inner[2] + wx, inner[3] + wy)
        out.append(_plan(local, window_box, mask_box, size, p, family))
    return out


def cut_crop(image: Image.Image, planned: MaskedCrop) -> tuple[Image.Image, Image.Image]:
    """The image and its blurred mask cut to the crop and resized to the working size."""
    box, work = planned.crop.box, planned.crop.working
    region = image.crop(box).convert("RGB").resize(work, Image.Resampling.LANCZOS)
    mask = planned.blurred_in(box).resize(work, Image.Resampling.BILINEAR)
    return region, mask


def paste_back(image: Image.Image, generated: Image.Image, planned: MaskedCrop) -> Image.Image:
    """Scale the generated crop back and blend it in through the blurred mask.

    Every pixel where the blurred mask is 0 (all of them outside the crop) keeps its exact value;
    the result has the input's size and mode (RGB, RGBA or L; alpha is kept from the input).
    """
    if image.mode not in SUPPORTED_MODES:
        raise ValueError(
            f"image mode {image.mode!r} is not supported; allowed: {', '.join(SUPPORTED_MODES)}"
        )
    out = image.copy()
    paste_into(out, generated, planned)
    return out


def paste_into(image: Image.Image, generated: Image.Image, planned: MaskedCrop) -> None:
    """paste_back, into `image` itself (no copy of a large canvas per piece)."""
    if image.mode not in SUPPORTED_MODES:
        raise ValueError(
            f"image mode {image.mode!r} is not supported; allowed: {', '.join(SUPPORTED_MODES)}"
        )
    box = planned.crop.box
    region = image.crop(box)
    size = (box[2] - box[0], box[3] - box[1])
    gen = generated if generated.size == size else generated.resize(size, Image.Resampling.LANCZOS)
    if image.mode == "RGBA":
        gen = gen.convert("RGB").convert("RGBA")
        gen.putalpha(region.getchannel("A"))
    else:
        gen = gen.convert(image.mode)
    image.paste(Image.composite(gen, region, planned.blurred_in(box)), box[:2])


def open_mask_image(value: str, base_dir: Path | None = None) -> Image.Image:
    """A mask image from base64 PNG data (optionally a data: URL) or, for recipe files, a path.

    Paths are only taken where `base_dir` is given (a recipe file's folder) and are read relative
    to it; the API passes None and so accepts image data only. Sizes are bounded.
    """
    if value.startswith("data:") or base_dir is None:
        payload = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError(f"mask_image: not base64 PNG data ({e})") from e
        source: Any = io.BytesIO(raw)
        shown = "image data"
    else:
        source = base_dir / value
        shown = str(source)
    try:
        with Image.open(source) as img:
            if max(img.size) > MAX_SIDE:
                raise ValueError(f"mask_image: {img.size[0]}x{img.size[1]} is over {MAX_SIDE} px")
            img.load()
            return img.copy()
    except (OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"mask_image: cannot read {shown} as an image ({e})") from e
