"""Crop regions: detailed inpainting of crops around a mask, boxes, a mask's areas or
detections; one crop per round, each crop seeing the ones before it."""

from __future__ import annotations

from typing import Any

from PIL import Image

from ..fields import MAX_LIST
from ..geometry import Size
from ..imaging import (
    MaskedCrop,
    box_crops,
    cut_crop,
    mask_areas,
    paste_into,
    placed_mask,
    plan_masked_crop,
    plan_placed,
    to_mask,
)
from . import Piece


def crops_for(
    p: Any,
    mask_image: Image.Image | None,
    job_mask: Image.Image | None,
    boxes_drawn_on: Size,
    size: Size,
    family: str,
) -> list[MaskedCrop]:
    """The crops of crop pass `p` on an image of `size`; masks and boxes are in base-image
    pixels (`boxes_drawn_on`). A detect pass's crops differ per image: detect_crops."""
    if p.mask_source == "detect":
        return []
    if p.mask_source == "boxes":
        return box_crops(size, boxes_drawn_on, p.boxes, p, family)
    source = mask_image if p.mask_source == "image" else job_mask
    if source is None:
        return []
    if p.mask_split:
        areas = mask_areas(to_mask(source, size), most=MAX_LIST)
        return plan_placed(areas, size, p, family, merge=False)
    planned = plan_masked_crop(to_mask(source, size), p, family)
    return [] if planned is None else [planned]


def detect_crops(
    p: Any, detector: Any, image: Image.Image, family: str
) -> tuple[list[MaskedCrop], int]:
    """A detect pass's crops in one image, and how many confident detections it found: the
    detector's finds, filtered and ordered as the pass says, each (or all together) masked by
    its box or outline, grown or shrunk, then cropped as any mask is."""
    from ..detectors.select import confident_count, select_for

    found = detector.detect(image)
    confident = confident_count(p, found)
    chosen = select_for(p, found, image.size)
    placed = [
        placed_mask(
            d.box, image.size, d.mask if p.detect_mask == "segment" else None, p.detect_dilate
        )
        for d in chosen
    ]
    return plan_placed(placed, image.size, p, family, p.detect_merge), confident


class CropWork:
    """An image's crop pass: crop k is round k, with the run's k-th [SEP] prompt and seed + k;
    it is cut from the image as the crops before it left it and pasted back through its
    blurred mask."""

    def __init__(
        self,
        image: Image.Image,
        crops: list[MaskedCrop],
        found: tuple[int, int] | None = None,
    ) -> None:
        self.image = image
        self.crops = crops
        self.found = found
        self._pasted_into = False

    def rounds(self) -> int:
        return len(self.crops)

    def pieces(self, round_: int) -> list[Piece]:
        crop = self.crops[round_]
        return [Piece(round_, crop.crop.working, round_, round_, masked=True)]

    def cut(self, piece: Piece) -> tuple[Image.Image, Image.Image | None]:
        return cut_crop(self.image, self.crops[piece.key])

    def put(self, piece: Piece, generated: Image.Image) -> None:
        if not self._pasted_into:  # the given image is never changed: paste into a copy
            self.image = self.image.copy()
            self._pasted_into = True
        paste_into(self.image, generated, self.crops[piece.key])

    def result(self) -> Image.Image:
        return self.image
