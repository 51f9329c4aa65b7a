"""Regions: where a run samples an image, and how what it samples goes back.

Every region (the whole image, crops around masks or boxes, detections, tiles) answers the
same questions for one image in one run, so the engine's loop never asks which one it holds:

- `rounds()` and `pieces(r)`: what it samples, in rounds. Pieces of one round are cut from the
  image as the round starts, so the engine may sample them together (batched, across the
  job's images too); the next round sees the result.
- `cut(piece)`: the piece's pixels at its working size, and its inpaint mask (or None).
- `put(piece, generated)`: take a sampled piece back; `result()`: the image after the run.

`Regions` makes each run's work for each image, with what a job's regions share: crops found
once per pass and size, detections once per pass and image, tile layouts once per pass.
No torch here: pieces are PIL images and geometry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from ..geometry import Size


@dataclass(frozen=True)
class Piece:
    """One sampling request's worth of an image."""

    key: Any  # the region's own handle on the piece
    working: Size  # the size it is sampled at
    seed_offset: int = 0  # added to the run's seed for this image (crop k, tile t)
    prompt_index: int = 0  # which of the run's [SEP] prompts
    seams: bool = False  # sampled at the pass's seams-fix strength instead of the run's
    masked: bool = False  # inpainted through a mask (the latents outside it are kept)


class Work(Protocol):
    """What one region does to one image in one run."""

    found: tuple[int, int] | None  # detect passes: (found, inpainted); else None

    def rounds(self) -> int: ...

    def pieces(self, round_: int) -> Sequence[Piece]: ...

    def cut(self, piece: Piece) -> tuple[Image.Image, Image.Image | None]: ...

    def put(self, piece: Piece, generated: Image.Image) -> None: ...

    def result(self) -> Image.Image: ...


class WholeWork:
    """The whole image, sampled at once as img2img."""

    found = None

    def __init__(self, image: Image.Image) -> None:
        self.image = image

    def rounds(self) -> int:
        return 1

    def pieces(self, round_: int) -> list[Piece]:
        return [Piece(0, self.image.size)]

    def cut(self, piece: Piece) -> tuple[Image.Image, Image.Image | None]:
        return self.image, None

    def put(self, piece: Piece, generated: Image.Image) -> None:
        self.image = generated

    def result(self) -> Image.Image:
        return self.image


class Regions:
    """The regions of one job's passes: each run's work for each image.

    `masks` are the passes' mask images (by pass index), `job_mask` the job's own, both in
    base-image pixels; `boxes_drawn_on` is the image size boxes are given in; `detectors` finds
    things for detect passes (a detectors.Registry).
    """

    def __init__(
        self,
        recipe: Any,
        *,
        masks: dict[int, Image.Image],
        job_mask: Image.Image | None,
        boxes_drawn_on: Size,
        detectors: Any = None,
    ) -> None:
        self.recipe = recipe
        self.masks = masks
        self.job_mask = job_mask
        self.boxes_drawn_on = boxes_drawn_on
        self.detectors = detectors
        self._crops: dict[tuple[int, Size, str], list[Any]] = {}
        self._found: dict[tuple[int, int], tuple[list[Any], int]] = {}
        self._tiles: dict[tuple[int, Size, str], Any] = {}

    def _pass(self, run: Any) -> Any:
        return self.recipe.passes[run.pass_index]

    def planned(self, run: Any, family: str) -> list[list[Piece]] | None:
        """The pieces of `run` on every image, by round, where they are known before the
        images are (None for a detect pass: found per image)."""
        if run.region == "whole":
            return [[Piece(0, run.size)]]
        if run.region == "tiles":
            from .tiles import tile_pieces

            return tile_pieces(self.tile_layout(run, family), self._pass(run))
        if run.mask_source == "detect":
            return None
        crops = self.crops(run, family, run.size)
        return [[Piece(k, c.crop.working, k, k, masked=True)] for k, c in enumerate(crops)]

    def crops(self, run: Any, family: str, size: Size) -> list[Any]:
        """A crop pass's crops on an image of `size` (not a detect pass's: those differ per
        image); found once per pass, size and family."""
        from .crops import crops_for

        key = (run.pass_index, size, family)
        if key not in self._crops:
            self._crops[key] = crops_for(
                self._pass(run),
                self.masks.get(run.pass_index),
                self.job_mask,
                self.boxes_drawn_on,
                size,
                family,
            )
        return self._crops[key]

    def tile_layout(self, run: Any, family: str) -> Any:
        """A tile pass's layout on its canvas (after its upscale)."""
        from .tiles import layout

        if getattr(run, "tiles", None) is not None:
            return run.tiles  # laid out when the job was planned
        key = (run.pass_index, run.size, family)
        if key not in self._tiles:
            self._tiles[key] = layout(self._pass(run), run.size, family)
        return self._tiles[key]

    def work(self, run: Any, index: int, image: Image.Image, family: str) -> Work:
        """What `run` does to image `index` (0-based in the job), given as the run finds it."""
        if run.region == "whole":
            return WholeWork(image)
        if run.region == "tiles":
            from .tiles import work_for

            return work_for(self.tile_layout(run, family), image, self._pass(run))
        from .crops import CropWork, detect_crops

        p = self._pass(run)
        if run.mask_source != "detect":
            return CropWork(image, self.crops(run, family, image.size))
        key = (run.pass_index, index)
        if key not in self._found:  # detected once per image, as the pass's first run finds it
            self._found[key] = detect_crops(p, self.detectors.get(p.detector), image, family)
        crops, confident = self._found[key]
        return CropWork(image, crops, found=(confident, len(crops)))


StepsOf = Callable[[Piece], int]
