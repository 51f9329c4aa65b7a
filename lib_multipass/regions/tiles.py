"""Tiled passes: a canvas cut into tiles of the model's size, each sampled as img2img, put back.

Two styles, as users know them:

- ``sd-upscale``, the WebUI's "SD upscale" script: tiles of the tile size laid out with at
  least `tile_overlap` pixels of overlap (A1111 1.10.1 modules/images.py, split_grid), all cut
  from the same canvas, and joined again row by row with a linear ramp across each overlap
  (combine_grid). The geometry and the blend are the script's, so a pass set like the script
  gives the script's image.
- ``ultimate``, Ultimate SD Upscale's: a grid of tiles of exactly the tile size from the top left,
  each inpainted as a crop with `padding` pixels of context and pasted back through its mask
  blurred by `mask_blur`, in linear order (each tile sees the ones before it) or chess order
  (every other tile, then the rest); then an optional seams fix (bands across the seams,
  half-tile offset tiles, and the corners where four tiles meet), at a strength of its own.

Everything here is geometry and PIL: a tile pass holds its canvas and the tiles being sampled,
never a latent of the whole canvas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps

from ..geometry import FAMILY_SIDE, Box, Crop, Size, resolve_padding
from ..imaging import MaskedCrop, blur_mask, blur_reach, cut_crop, grow_box, paste_into
from . import Piece

STYLES = ("sd-upscale", "ultimate")
ORDERS = ("chess", "linear")
SEAMS_FIXES = ("none", "band", "half-tile", "half-tile+intersections")


@dataclass(frozen=True)
class TilePiece:
    """One piece of a tile pass, in canvas pixels: a tile, or a piece of the seams fix.

    `rect` is what the piece changes (for masked pieces, where its mask is white before the
    blur); `box` is what it samples; `profile` shapes the mask inside `rect`.
    """

    kind: str  # "tile", "seam" (half-tile offset), "band" or "corner"
    index: int  # the piece's number in its pass (tiles first, then the seams fix's pieces)
    box: Box
    rect: Box
    working: Size
    profile: str = "rect"  # rect, rows (a seam across rows), cols, band-v, band-h, radial
    blur: int = 0
    seams: bool = False  # sampled at the seams fix's strength


@dataclass(frozen=True)
class TileLayout:
    """Where a tile pass samples a canvas: its tiles and seams-fix pieces, in rounds.

    Pieces of one round are cut from the canvas as the round starts, so they can be sampled
    together (batched) and put back in order; the next round sees the result.
    """

    style: str
    canvas: Size
    tile: Size
    working: Size
    overlap: int
    cols: int
    rows: int
    rounds: tuple[tuple[TilePiece, ...], ...]
    seams_fix: str = "none"
    order: str = "chess"

    @property
    def tiles(self) -> int:
        return self.cols * self.rows

    @property
    def pieces(self) -> list[TilePiece]:
        return [piece for round_ in self.rounds for piece in round_]

    @property
    def seam_pieces(self) -> list[TilePiece]:
        return [piece for piece in self.pieces if piece.seams]

    def describe(self) -> str:
        """e.g. '2048x2048 in 16 tiles of 512x512 (overlap 64)'."""
        w, h = self.canvas
        tw, th = self.tile
        text = f"{w}x{h} in {self.tiles} tile{'s' if self.tiles != 1 else ''} of {tw}x{th}"
        if self.style == "sd-upscale":
            text += f" (overlap {self.overlap})"
        else:
            text += f" ({self.order})" if self.tiles > 1 else ""
        if self.working != self.tile and self.style == "sd-upscale":
            text += f", sampled at {self.working[0]}x{self.working[1]}"
        seams = self.seam_pieces
        if seams:
            text += f", seams fix {self.seams_fix}: {len(seams)} pieces"
        return text


def auto_tile(family: str) -> int | None:
    """The automatic tile side: the family's native side (512 SD1, 1024 SDXL); None: unknown."""
    return FAMILY_SIDE.get(family)


def tile_size(p: Any, canvas: Size, family: str) -> Size:
    """The pass's tile size on a canvas: its own, or the family's native side; never larger
    than the canvas (a canvas smaller than a tile is one tile)."""
    if p.tile_width and p.tile_height:
        w, h = int(p.tile_width), int(p.tile_height)
    else:
        side = auto_tile(family)
        if side is None:
            raise ValueError(f"no automatic tile size for checkpoint family {family!r}")
        w = h = side
    return min(w, canvas[0]), min(h, canvas[1])


def _starts(extent: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one side, as A1111's split_grid lays them out: the fewest tiles that
    overlap by at least `overlap`, spread evenly, the last flush with the edge. (split_grid's
    float step can put its last tile one pixel short, e.g. 1048 px in tiles of 72, leaving a
    black line; here the last tile always ends at the edge.)"""
    if tile >= extent:
        return [0]
    count = math.ceil((extent - overlap) / (tile - overlap))
    step = (extent - tile) / (count - 1) if count > 1 else 0
    out = []
    for k in range(count - 1):
        x = int(k * step)
        if x + tile >= extent:
            x = extent - tile
        out.append(x)
    return [*out, extent - tile]


def _round8_up(x: float) -> int:
    return 8 * math.ceil(x / 8 - 1e-9)


def _crop_for(rect: Box, canvas: Size, size: Size, pads: tuple[int, int, int, int]) -> Box:
    """A box of `size` (at most the canvas) that covers `rect` and its left/top padding where
    the canvas allows: shifted inwards at the edges, never shrunk, so a piece is sampled 1:1."""
    w, h = min(size[0], canvas[0]), min(size[1], canvas[1])
    x = min(max(0, rect[0] - pads[0]), canvas[0] - w)
    y = min(max(0, rect[1] - pads[1]), canvas[1] - h)
    x = min(x, rect[0])
    y = min(y, rect[1])
    return (x, y, x + w, y + h)


def _fit_aspect(size: Size, working: Size, canvas: Size) -> Size:
    """`size` grown to the working size's aspect (within the canvas), so nothing is stretched."""
    aspect = working[0] / working[1]
    w, h = size
    if w / h < aspect:
        w = min(canvas[0], round(h * aspect))
    else:
        h = min(canvas[1], round(w / aspect))
    return w, h


def layout(p: Any, canvas: Size, family: str) -> TileLayout:
    """The tiles and seams-fix pieces of tile pass `p` on a canvas of `canvas` size.

    Raises ValueError when the pass cannot tile it (an overlap as large as the tile).
    """
    tile = tile_size(p, canvas, family)
    explicit = (int(p.working_width), int(p.working_height)) if p.working_width else None
    if p.tile_style == "sd-upscale":
        return _grid_layout(p, canvas, tile, explicit)
    return _ultimate_layout(p, canvas, tile, explicit)


def _grid_layout(p: Any, canvas: Size, tile: Size, explicit: Size | None) -> TileLayout:
    overlap = int(p.tile_overlap)
    needs = [t for t, extent in zip(tile, canvas, strict=True) if t < extent]
    if any(overlap >= t for t in needs):
        raise ValueError(f"an overlap smaller than the tile ({tile[0]}x{tile[1]}); got {overlap}")
    xs = _starts(canvas[0], tile[0], overlap)
    ys = _starts(canvas[1], tile[1], overlap)
    working = explicit or tile
    pieces = tuple(
        TilePiece(
            "tile",
            r * len(xs) + c,
            (x, y, x + tile[0], y + tile[1]),
            (x, y, x + tile[0], y + tile[1]),
            working,
        )
        for r, y in enumerate(ys)
        for c, x in enumerate(xs)
    )
    return TileLayout("sd-upscale", canvas, tile, working, overlap, len(xs), len(ys), (pieces,))


def _ultimate_layout(p: Any, canvas: Size, tile: Size, explicit: Size | None) -> TileLayout:
    W, H = canvas
    tw, th = tile
    cols, rows = math.ceil(W / tw), math.ceil(H / th)
    pads = resolve_padding((0, 0, tw, th), p.padding, p.padding_unit, tuple(p.padding_sides))
    crop = (
        min(W, _round8_up(tw + pads[0] + pads[2])),
        min(H, _round8_up(th + pads[1] + pads[3])),
    )
    if explicit is not None:
        crop = _fit_aspect(crop, explicit, canvas)
    working = explicit or crop
    tiles = []
    for yi in range(rows):
        for xi in range(cols):
            rect = (xi * tw, yi * th, min(W, (xi + 1) * tw), min(H, (yi + 1) * th))
            box = _crop_for(rect, canvas, crop, pads)
            tiles.append(TilePiece("tile", len(tiles), box, rect, working, blur=p.mask_blur))
    if p.tile_order == "linear":
        rounds: list[tuple[TilePiece, ...]] = [(t,) for t in tiles]
    else:
        white = tuple(t for t in tiles if (t.rect[0] // tw + t.rect[1] // th) % 2 == 0)
        black = tuple(t for t in tiles if (t.rect[0] // tw + t.rect[1] // th) % 2 == 1)
        rounds = [r for r in (white, black) if r]
    rounds += _seams_rounds(p, canvas, tile, cols, rows, len(tiles))
    return TileLayout("ultimate", canvas, tile, working, 0, cols, rows, tuple(rounds), p.seams_fix)


def _seams_rounds(
    p: Any, canvas: Size, tile: Size, cols: int, rows: int, first: int
) -> list[tuple[TilePiece, ...]]:
    """The seams fix's rounds, numbered on from the tiles."""
    fix = p.seams_fix
    if fix == "none":
        return []
    W, H = canvas
    tw, th = tile
    pad = int(p.seams_fix_padding)
    pads = (pad, pad, pad, pad)
    out: list[list[TilePiece]] = []
    number = first

    def piece(kind: str, rect: Box, size: Size, profile: str, blur: int, pieces: list) -> None:
        nonlocal number
        rect = (max(0, rect[0]), max(0, rect[1]), min(W, rect[2]), min(H, rect[3]))
        if rect[0] >= rect[2] or rect[1] >= rect[3]:
            return
        box = _crop_for(rect, canvas, size, pads)
        work = (box[2] - box[0], box[3] - box[1])
        pieces.append(TilePiece(kind, number, box, rect, work, profile, blur, seams=True))
        number += 1

    if fix == "band":
        width = int(p.seams_fix_width)
        across = _round8_up(width + 2 * pad)
        vertical: list[TilePiece] = []
        for xi in range(1, cols):
            x = xi * tw - width // 2
            piece("band", (x, 0, x + width, H), (min(W, across), H), "band-v", 0, vertical)
        horizontal: list[TilePiece] = []
        for yi in range(1, rows):
            y = yi * th - width // 2
            piece("band", (0, y, W, y + width), (W, min(H, across)), "band-h", 0, horizontal)
        out += [vertical, horizontal]
    else:
        size = (min(W, _round8_up(tw + 2 * pad)), min(H, _round8_up(th + 2 * pad)))
        blur = int(p.seams_fix_blur)
        for parity in (0, 1):  # every other piece first: neighbours see each other's result
            across_rows: list[TilePiece] = []
            for yi in range(rows - 1):
                for xi in range(parity, cols, 2):
                    y = yi * th + th // 2
                    rect = (xi * tw, y, xi * tw + tw, y + th)
                    piece("seam", rect, size, "rows", blur, across_rows)
            out.append(across_rows)
        for parity in (0, 1):
            across_cols: list[TilePiece] = []
            for yi in range(parity, rows, 2):
                for xi in range(cols - 1):
                    x = xi * tw + tw // 2
                    rect = (x, yi * th, x + tw, yi * th + th)
                    piece("seam", rect, size, "cols", blur, across_cols)
            out.append(across_cols)
        if fix == "half-tile+intersections":
            corners: list[TilePiece] = []
            for yi in range(rows - 1):
                for xi in range(cols - 1):
                    x, y = xi * tw + tw // 2, yi * th + th // 2
                    rect = (x, y, x + tw, y + th)
                    piece("corner", rect, (min(W, tw), min(H, th)), "radial", blur, corners)
            out.append(corners)
    return [tuple(r) for r in out if r]


# -- masks ---------------------------------------------------------------------------------------


def _ramp(n: int) -> bytes:
    """A profile across `n` pixels rising from 0 to 255 at the middle and falling to 0 again."""
    return bytes(round(255 * max(0.0, 1 - abs(2 * (i + 0.5) / n - 1))) for i in range(n))


def profile_mask(profile: str, size: Size) -> Image.Image:
    """The mask of a piece inside its rectangle (L, `size`): white, or a ramp across a seam
    (strongest on the seam, nothing at the piece's edges), or a disc fading from a corner."""
    w, h = size
    if profile == "rect":
        return Image.new("L", size, 255)
    if profile in ("rows", "band-h"):  # the seam runs left to right through the middle
        return Image.frombytes("L", (1, h), _ramp(h)).resize(size, Image.Resampling.NEAREST)
    if profile in ("cols", "band-v"):
        return Image.frombytes("L", (w, 1), _ramp(w)).resize(size, Image.Resampling.NEAREST)
    if profile == "radial":
        disc = ImageOps.invert(Image.radial_gradient("L"))
        return disc.resize(size, Image.Resampling.BICUBIC)
    raise ValueError(
        f"mask profile {profile!r} is not one of rect, rows, cols, band-v, band-h, radial"
    )


def masked_crop(piece: TilePiece, canvas: Size) -> MaskedCrop:
    """The piece as a detailed-inpaint crop: its mask over its rectangle and the box it samples.

    A tile's mask is white over the whole tile and fades out *beyond* it over `blur` pixels, so
    every pixel of the canvas is wholly covered by some tile (what is sampled replaces the old
    image everywhere; where tiles meet, the later one fades over the earlier). Ultimate SD
    Upscale blurs across the tile's edge instead, which leaves a quarter of the old image along
    every seam. Seams-fix pieces keep their ramp or disc, blurred as it is.
    """
    x1, y1, x2, y2 = piece.rect
    window_box = grow_box(piece.rect, 2 * piece.blur + blur_reach(piece.blur), canvas)
    wx, wy = window_box[:2]
    size = (window_box[2] - wx, window_box[3] - wy)
    shape = profile_mask(piece.profile, (x2 - x1, y2 - y1))
    local = Image.new("L", size, 0)
    if piece.kind == "tile" and piece.blur > 0:
        grown = grow_box(piece.rect, piece.blur, canvas)
        local.paste(255, (grown[0] - wx, grown[1] - wy, grown[2] - wx, grown[3] - wy))
        local = blur_mask(local, piece.blur)
        local.paste(shape, (x1 - wx, y1 - wy))  # white over the tile itself, whatever the blur
        window = local
    else:
        local.paste(shape, (x1 - wx, y1 - wy))
        window = blur_mask(local, piece.blur)
    return MaskedCrop(Crop(piece.box, piece.working), piece.rect, canvas, window_box, window)


# -- works: one image's tile pass ------------------------------------------------------------------


def _ramp_mask(n: int, length: int, vertical: bool) -> Image.Image:
    """A1111's combine_grid blend mask: int(r * 255 / overlap) for r in 0..overlap-1, across the
    overlap (columns, or rows when `vertical`), `length` long."""
    line = bytes(int(r * 255 / n) for r in range(n))
    if vertical:
        return Image.frombytes("L", (1, n), line).resize((length, n), Image.Resampling.NEAREST)
    return Image.frombytes("L", (n, 1), line).resize((n, length), Image.Resampling.NEAREST)


def tile_pieces(plan: TileLayout, p: Any) -> list[list[Piece]]:
    """The pieces of a tile pass by round: each tile's seed the run's + its number, or the
    run's own for every tile (`tile_seed` 'same', as Ultimate SD Upscale does)."""
    same = p.tile_seed == "same"
    masked = plan.style == "ultimate"
    return [
        [Piece((r, t), t.working, 0 if same else t.index, 0, t.seams, masked) for t in round_]
        for r, round_ in enumerate(plan.rounds)
    ]


def work_for(plan: TileLayout, image: Image.Image, p: Any) -> GridWork | MaskedTilesWork:
    """One image's tile pass."""
    rounds = tile_pieces(plan, p)
    if plan.style == "sd-upscale":
        return GridWork(image, plan, rounds)
    return MaskedTilesWork(image, plan, rounds)


class GridWork:
    """An image's sd-upscale pass: every tile cut from the (upscaled) canvas, then joined row by
    row as A1111's combine_grid joins them; a row is joined as soon as its tiles are back, so
    only one row of sampled tiles is held at a time."""

    found = None

    def __init__(self, canvas: Image.Image, plan: TileLayout, rounds: list[list[Piece]]) -> None:
        # only read from (tiles are cropped out of it), so an RGB canvas is not copied
        self.canvas = canvas if canvas.mode == "RGB" else canvas.convert("RGB")
        self.plan = plan
        self._rounds = rounds
        self.out = Image.new("RGB", plan.canvas)
        self._row: dict[int, Image.Image] = {}
        self._next_row = 0

    def rounds(self) -> int:
        return len(self._rounds)

    def pieces(self, round_: int) -> list[Piece]:
        return self._rounds[round_]

    def cut(self, piece: Piece) -> tuple[Image.Image, Image.Image | None]:
        t: TilePiece = piece.key[1]
        tile = self.canvas.crop(t.box)
        if t.working != tile.size:
            tile = tile.resize(t.working, Image.Resampling.LANCZOS)
        return tile, None

    def put(self, piece: Piece, generated: Image.Image) -> None:
        t: TilePiece = piece.key[1]
        size = (t.box[2] - t.box[0], t.box[3] - t.box[1])
        tile = generated.convert("RGB")
        if tile.size != size:
            tile = tile.resize(size, Image.Resampling.LANCZOS)
        self._row[t.index] = tile
        cols = self.plan.cols
        while self._next_row < self.plan.rows:
            first = self._next_row * cols
            if any(first + c not in self._row for c in range(cols)):
                break
            self._join_row([self._row.pop(first + c) for c in range(cols)], first)
            self._next_row += 1

    def _join_row(self, tiles: Sequence[Image.Image], first: int) -> None:
        plan, overlap = self.plan, self.plan.overlap
        pieces = plan.pieces[first : first + plan.cols]
        y = pieces[0].box[1]
        h = plan.tile[1]
        row = Image.new("RGB", (plan.canvas[0], h))
        for piece, tile in zip(pieces, tiles, strict=True):
            x = piece.box[0]
            if x == 0 or overlap == 0:
                row.paste(tile, (x, 0))
                continue
            row.paste(tile.crop((0, 0, overlap, h)), (x, 0), _ramp_mask(overlap, h, False))
            row.paste(tile.crop((overlap, 0, tile.width, h)), (x + overlap, 0))
        if y == 0 or overlap == 0:
            self.out.paste(row, (0, y))
            return
        top = _ramp_mask(overlap, plan.canvas[0], True)
        self.out.paste(row.crop((0, 0, row.width, overlap)), (0, y), top)
        self.out.paste(row.crop((0, overlap, row.width, h)), (0, y + overlap))

    def result(self) -> Image.Image:
        if self._next_row < self.plan.rows:
            raise RuntimeError(f"tile rows {self._next_row + 1} and on were never sampled")
        return self.out


class MaskedTilesWork:
    """An image's ultimate-style pass: round by round, each piece cut from the canvas as the
    round started and inpainted back through its blurred mask."""

    found = None

    def __init__(self, canvas: Image.Image, plan: TileLayout, rounds: list[list[Piece]]) -> None:
        mode = canvas.mode if canvas.mode in ("RGB", "RGBA") else "RGB"
        self.canvas = canvas.convert(mode)  # a copy: pasted into in place
        self.plan = plan
        self._rounds = rounds
        self._source: Image.Image | None = None
        self._round = -1
        self._crops: dict[int, MaskedCrop] = {}

    def rounds(self) -> int:
        return len(self._rounds)

    def pieces(self, round_: int) -> list[Piece]:
        return self._rounds[round_]

    def cut(self, piece: Piece) -> tuple[Image.Image, Image.Image | None]:
        r, t = piece.key
        if r != self._round:  # a new round: its pieces come from the canvas as it is now
            self._round = r
            single = len(self._rounds[r]) == 1
            self._source = self.canvas if single else self.canvas.copy()
        planned = masked_crop(t, self.plan.canvas)
        self._crops[t.index] = planned
        assert self._source is not None
        return cut_crop(self._source, planned)

    def put(self, piece: Piece, generated: Image.Image) -> None:
        t: TilePiece = piece.key[1]
        paste_into(self.canvas, generated, self._crops.pop(t.index))

    def result(self) -> Image.Image:
        self._source = None
        return self.canvas
