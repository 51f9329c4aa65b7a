"""Tiled passes: the layouts (SD upscale's and Ultimate SD Upscale's), their blends, and tile
passes end to end on the tiny models: one tile is the whole-image pass, strength 0 is the
upscale, batches equal tiles one by one, a cancel keeps the last finished image."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from lib_multipass.engine import Control, Job, run_job
from lib_multipass.plan import JobContext, format_plan, plan_runs
from lib_multipass.recipe import parse_pass, parse_recipe
from lib_multipass.regions.tiles import layout, masked_crop
from lib_multipass.schedule import img2img_steps

CTX = JobContext(
    width=64, height=64, steps=6, sampler="Euler a", checkpoint="tiny-toon", prompt="a castle"
)


def arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(int)


def tile_pass(**kw):
    return parse_pass({"region": "tiles", **kw})


# -- layouts ---------------------------------------------------------------------------------


def split_grid_starts(extent: int, tile: int, overlap: int) -> list[int]:
    """A1111 1.10.1 modules/images.py split_grid, one axis, as its source reads (the fact
    Multipass's SD-upscale layout must reproduce)."""
    non_overlap = tile - overlap
    count = math.ceil((extent - overlap) / non_overlap)
    step = (extent - tile) / (count - 1) if count > 1 else 0
    out = []
    for k in range(count):
        x = int(k * step)
        if x + tile >= extent:
            x = extent - tile
        out.append(x)
    return out


@pytest.mark.parametrize(
    ("canvas", "tile", "overlap", "xs"),
    [
        (1024, 512, 64, [0, 256, 512]),
        (2048, 512, 64, [0, 384, 768, 1152, 1536]),
        (1800, 512, 64, [0, 429, 858, 1288]),
        (1000, 512, 0, [0, 488]),
        (512, 512, 64, [0]),
        (1536, 768, 128, [0, 384, 768]),
    ],
)
def test_sd_upscale_tiles_sit_where_the_script_puts_them(canvas, tile, overlap, xs):
    p = tile_pass(tile_style="sd-upscale", tile_width=tile, tile_height=tile, tile_overlap=overlap)
    plan = layout(p, (canvas, canvas), "sd1")
    assert sorted({t.box[0] for t in plan.pieces}) == xs == split_grid_starts(canvas, tile, overlap)
    assert plan.tiles == len(xs) ** 2 and len(plan.rounds) == 1


@given(
    w=st.integers(8, 300).map(lambda k: 8 * k),
    h=st.integers(8, 300).map(lambda k: 8 * k),
    tile=st.integers(8, 128).map(lambda k: 8 * k),
    overlap=st.integers(0, 40).map(lambda k: 8 * k),
)
@example(w=64, h=1048, tile=72, overlap=0)  # split_grid's last tile would end at 1047
def test_sd_upscale_tiles_cover_the_canvas_overlapping_enough(w, h, tile, overlap):
    tile_w, tile_h = min(tile, w), min(tile, h)
    p = tile_pass(tile_style="sd-upscale", tile_width=tile, tile_height=tile, tile_overlap=overlap)
    if (tile_w < w and overlap >= tile_w) or (tile_h < h and overlap >= tile_h):
        with pytest.raises(ValueError, match="smaller than the tile"):
            layout(p, (w, h), "sd1")
        return
    plan = layout(p, (w, h), "sd1")
    covered = np.zeros((h, w), bool)
    for t in plan.pieces:
        x1, y1, x2, y2 = t.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h and (x2 - x1, y2 - y1) == plan.tile
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    xs = sorted({t.box[0] for t in plan.pieces})
    # as split_grid lays them out, but where its float step leaves the last tile short of
    # the edge (a black line in the script's image), the last tile ends at the edge
    expected = [*split_grid_starts(w, tile_w, overlap)[:-1], w - tile_w] if tile_w < w else [0]
    assert xs == expected
    for a, b in itertools.pairwise(xs):
        assert a + tile_w - b >= overlap  # neighbours overlap by at least the overlap


@given(
    w=st.integers(8, 256).map(lambda k: 8 * k),
    h=st.integers(8, 256).map(lambda k: 8 * k),
    tile=st.integers(8, 96).map(lambda k: 8 * k),
    padding=st.integers(0, 96),
    order=st.sampled_from(["chess", "linear"]),
)
def test_ultimate_tiles_partition_the_canvas_and_sample_one_to_one(w, h, tile, padding, order):
    p = tile_pass(tile_width=tile, tile_height=tile, padding=padding, tile_order=order)
    plan = layout(p, (w, h), "sd1")
    owner = np.full((h, w), -1)
    for t in plan.pieces:
        x1, y1, x2, y2 = t.rect
        assert (owner[y1:y2, x1:x2] == -1).all()  # no two tiles change the same pixel
        owner[y1:y2, x1:x2] = t.index
        bx1, by1, bx2, by2 = t.box
        assert 0 <= bx1 <= x1 and 0 <= by1 <= y1 and x2 <= bx2 <= w and y2 <= by2 <= h
        assert (bx2 - bx1, by2 - by1) == t.working == plan.working  # sampled 1:1, one size
    assert (owner >= 0).all()
    tw, th = plan.tile
    for round_ in plan.rounds if order == "chess" else []:
        cells = {(t.rect[0] // tw, t.rect[1] // th) for t in round_}
        for x, y in cells:  # no two tiles of a round share an edge
            assert not {(x + 1, y), (x, y + 1)} & cells
    if order == "linear":
        assert all(len(r) == 1 for r in plan.rounds)


@pytest.mark.parametrize(
    ("fix", "count"),
    [
        ("band", lambda c, r: r + c - 2),
        ("half-tile", lambda c, r: r * (c - 1) + (r - 1) * c),
        ("half-tile+intersections", lambda c, r: r * (c - 1) + (r - 1) * c + (r - 1) * (c - 1)),
    ],
)
@pytest.mark.parametrize("canvas", [(1024, 1024), (1536, 1024), (1000, 600)])
def test_the_seams_fix_has_ultimate_sd_upscales_pieces(fix, count, canvas):
    p = tile_pass(tile_width=512, tile_height=512, seams_fix=fix)
    plan = layout(p, canvas, "sd1")
    assert len(plan.seam_pieces) == count(plan.cols, plan.rows)
    for piece in plan.seam_pieces:
        x1, y1, x2, y2 = piece.box
        assert 0 <= x1 < x2 <= canvas[0] and 0 <= y1 < y2 <= canvas[1]
        assert (x2 - x1, y2 - y1) == piece.working


def test_a_tile_mask_covers_its_tile_wholly_and_fades_beyond_it():
    p = tile_pass(tile_width=64, tile_height=64, padding=32, mask_blur=8)
    plan = layout(p, (192, 192), "sd1")
    middle = next(t for t in plan.pieces if t.rect == (64, 64, 128, 128))
    mask = np.asarray(masked_crop(middle, plan.canvas).blurred)
    assert (mask[64:128, 64:128] == 255).all()
    assert 0 < mask[64:128, 130].min() < 255  # a feather beyond the tile's edge
    assert mask[:, :30].max() == 0 and mask[:30].max() == 0


def test_an_overlap_as_large_as_the_tile_is_refused_before_the_job():
    recipe = parse_recipe(
        {
            "passes": [
                {
                    "region": "tiles",
                    "tile_style": "sd-upscale",
                    "tile_width": 64,
                    "tile_height": 64,
                    "tile_overlap": 64,
                    "upscale_by": 2,
                }
            ]
        }
    )
    _, problems = plan_runs(recipe, CTX)
    assert [(q.field, q.value) for q in problems] == [("tile_overlap", 64)]
    assert "smaller than the tile (64x64)" in str(problems[0])


def test_the_plan_says_tiles_calls_and_steps():
    recipe = parse_recipe(
        {
            "passes": [
                {
                    "region": "tiles",
                    "tile_style": "sd-upscale",
                    "upscale_by": 4,
                    "denoising_strength": 0.55,
                    "steps": 20,
                }
            ]
        }
    )
    ctx = dataclasses.replace(CTX, width=512, height=512)
    runs, problems = plan_runs(recipe, ctx)
    assert not problems
    text = format_plan(runs, ctx, batch_size=4)
    assert "2048x2048 in 25 tiles of 512x512 (overlap 64), 7 calls of up to 4" in text
    assert "12/20 each" in text
    assert "300 sampling steps per image" in text  # 25 tiles x 12 steps


# -- blends: weights sum to one ---------------------------------------------------------------


class Shifting:
    """A backend whose 'sampling' adds a constant to every piece it is given: what a tile pass
    makes of it shows its blend weights (they sum to one: the image moves by the constant)."""

    def __init__(self, shift: int = 12, fail_at: int | None = None, control=None):
        self.shift, self.calls, self.sizes = shift, 0, []
        self.fail_at, self.control = fail_at, control

    def current_checkpoint(self):
        return "a"

    def checkpoint_id(self, name):
        return "a"

    def load_checkpoint(self, name):
        pass

    def checkpoint_family(self, name):
        return "sd1"

    def check_run(self, run):
        return []

    def upscale(self, image, size, upscaler):
        return image.resize(size, Image.Resampling.LANCZOS)

    def generate(self, requests, on_step):
        self.calls += 1
        self.sizes += [(r.width, r.height, len(requests)) for r in requests]
        out = []
        for r in requests:
            if r.image is None:
                rng = np.random.default_rng(r.seed)
                pixels = rng.integers(0, 200, (r.height, r.width, 3), dtype=np.uint8)
                out.append(Image.fromarray(pixels))
            else:
                out.append(Image.fromarray((arr(r.image) + self.shift).astype(np.uint8)))
        first = requests[0]
        steps = first.steps
        if first.image is not None:
            steps = img2img_steps(first.strength, first.steps, first.step_mode).run
        for step in range(1, steps + 1):  # as many steps as the WebUI would run
            if self.control is not None and self.calls == self.fail_at and step == 2:
                self.control.cancel()
            on_step(step, steps)
        return out


def run_shifting(pass_fields, size=(256, 192), batch_size=1, backend=None):
    recipe = parse_recipe({"passes": [{"region": "tiles", **pass_fields}]})
    ctx = dataclasses.replace(CTX, width=size[0], height=size[1])
    backend = backend or Shifting()
    result = run_job(recipe, Job(ctx, seeds=[3], batch_size=batch_size), backend)
    assert result.complete, result.account()
    return arr(result.outputs[0][0].image), arr(result.images[0]), backend


@pytest.mark.parametrize("overlap", [0, 16, 40])
def test_sd_upscale_blend_weights_sum_to_one(overlap):
    before, after = run_shifting(
        {"tile_style": "sd-upscale", "tile_width": 64, "tile_height": 64, "tile_overlap": overlap}
    )[:2]
    assert (after - before == 12).all()  # every pixel exactly the tiles' shift: no seam at all


@pytest.mark.parametrize("order", ["chess", "linear"])
@pytest.mark.parametrize("blur", [0, 4, 8])
def test_ultimate_tiles_cover_everything_and_leave_no_step_beyond_the_shift(order, blur):
    before, after, backend = run_shifting(
        {"tile_width": 64, "tile_height": 64, "padding": 24, "mask_blur": blur, "tile_order": order}
    )
    moved = after - before
    assert moved.min() >= 12  # every pixel wholly replaced by a sampled tile
    assert moved.max() <= 48  # later tiles' feathers over an earlier one (4 meet at a corner)
    steps = np.abs(np.diff(moved, axis=0)).max(), np.abs(np.diff(moved, axis=1)).max()
    assert max(steps) <= 12  # across any seam, no step larger than the shift
    assert {s[:2] for s in backend.sizes[1:]} == {(112, 112)}  # 64 + 2 x 24, at 1:1


def test_tiles_are_sampled_in_calls_of_the_batch_size_and_never_whole():
    *_, backend = run_shifting(
        {"tile_style": "sd-upscale", "tile_width": 64, "tile_height": 64, "tile_overlap": 16},
        size=(256, 192),
        batch_size=4,
    )
    tiles = backend.sizes[1:]  # after the base
    assert {t[:2] for t in tiles} == {(64, 64)}  # tiles, never the whole canvas
    calls = [t[2] for t in tiles]
    assert len(tiles) == 5 * 4  # 5 columns, 4 rows
    assert sorted(set(calls)) == [4] and backend.calls == 1 + 5


def test_a_cancel_mid_tiles_keeps_the_last_finished_image():
    control = Control()
    backend = Shifting(fail_at=3, control=control)  # during the second tile call
    recipe = parse_recipe(
        {"passes": [{"region": "tiles", "tile_width": 64, "tile_height": 64, "upscale_by": 2}]}
    )
    result = run_job(recipe, Job(CTX, seeds=[3]), backend, control=control)
    assert result.stopped == "cancelled"
    assert result.summary() == "stopped at pass 1, image 1 of 1: cancelled"
    assert np.array_equal(arr(result.images[0]), arr(result.outputs[0][0].image))  # the base
    assert result.images[0].size == (64, 64)


def test_progress_counts_every_tile_and_ends_at_its_total():
    seen = []
    recipe = parse_recipe(
        {
            "passes": [
                {
                    "region": "tiles",
                    "tile_width": 64,
                    "tile_height": 64,
                    "seams_fix": "half-tile+intersections",
                    "upscale_by": 2,
                }
            ]
        }
    )
    result = run_job(recipe, Job(CTX, seeds=[3]), Shifting(), progress=seen.append)
    assert result.complete
    # base 6 steps; 4 tiles of int(0.5*6)+1 = 4 steps; seams: 2+2+1 pieces at 0.35: 3 steps
    assert seen[0].total == seen[-1].total == 6 + 4 * 4 + 5 * 3
    assert seen[-1].done == seen[-1].total


# -- on the tiny models ------------------------------------------------------------------------


def test_one_tile_is_the_whole_image_pass_pixel_for_pixel(backend):
    whole = parse_recipe({"passes": [{"denoising_strength": 0.6}]})
    tiled = parse_recipe(
        {
            "passes": [
                {
                    "denoising_strength": 0.6,
                    "region": "tiles",
                    "tile_style": "sd-upscale",
                    "tile_width": 64,
                    "tile_height": 64,
                }
            ]
        }
    )
    a = run_job(whole, Job(CTX, seeds=[7]), backend)
    b = run_job(tiled, Job(CTX, seeds=[7]), backend)
    assert a.complete and b.complete
    assert np.array_equal(arr(a.images[0]), arr(b.images[0]))


def test_at_strength_0_a_tile_pass_returns_its_upscaled_input(backend):
    recipe = parse_recipe(
        {"passes": [{"region": "tiles", "denoising_strength": 0, "upscale_by": 2}]}
    )
    result = run_job(recipe, Job(CTX, seeds=[7]), backend)
    base = result.outputs[0][0].image
    expected = base.convert("RGB").resize((128, 128), Image.Resampling.LANCZOS)
    assert np.array_equal(arr(result.images[0]), arr(expected))


def test_a_downscale_below_one_is_pillows_lanczos(backend):
    recipe = parse_recipe(
        {"passes": [{"denoising_strength": 0, "upscale_by": 0.5, "upscaler": "Nearest"}]}
    )
    ctx = dataclasses.replace(CTX, width=128, height=128)
    result = run_job(recipe, Job(ctx, seeds=[7]), backend)
    base = result.outputs[0][0].image
    expected = base.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)
    assert result.images[0].size == (64, 64)
    assert np.array_equal(arr(result.images[0]), arr(expected))


@pytest.mark.parametrize("style", ["sd-upscale", "ultimate"])
def test_batched_tiles_equal_the_same_tiles_one_by_one(backend, style):
    """The same tiles, seeds and prompts go to the sampler in calls of 4 as in calls of 1, and
    come back the same but for float rounding: torch's CPU kernels round a batch of 4 a little
    differently (1e-6) from 4 batches of 1, which moves a few pixels by one level."""
    recipe = parse_recipe(
        {
            "passes": [
                {
                    "region": "tiles",
                    "tile_style": style,
                    "tile_width": 64,
                    "tile_height": 64,
                    "tile_overlap": 16,
                    "padding": 16,
                    "upscale_by": 2,
                    "denoising_strength": 0.5,
                }
            ]
        }
    )
    sent: dict[int, list] = {1: [], 4: []}
    real = backend.generate

    def spy(size):
        def generate(requests, on_step):
            for r in requests:
                pixels = None if r.image is None else arr(r.image).tobytes()
                mask = None if r.mask is None else r.mask.tobytes()
                sent[size].append((r.seed, r.prompt, r.width, r.height, r.strength, pixels, mask))
            return real(requests, on_step)

        return generate

    backend.generate = spy(1)
    one = run_job(recipe, Job(CTX, seeds=[5, 6], batch_size=1), backend)
    backend.generate = spy(4)
    four = run_job(recipe, Job(CTX, seeds=[5, 6], batch_size=4), backend)
    assert one.complete and four.complete
    assert len(sent[1]) == len(sent[4]) > 8
    # after the two bases; one by one, image 1 is done before image 2, batched they go together
    tiles = {size: sorted(sent[size][2:], key=lambda r: r[:5]) for size in sent}
    for a, b in zip(tiles[1], tiles[4], strict=True):
        assert a[:5] == b[:5]  # each tile's seed, prompt, size and strength
        if style == "sd-upscale":  # and its pixels: cut from the same canvas, whose base
            # images batched and one by one may differ by 1 where torch's threads split the work
            pa, pb = (np.frombuffer(x, np.uint8).astype(int) for x in (a[5], b[5]))
            assert np.abs(pa - pb).max() <= 1
    for a, b in zip(one.images, four.images, strict=True):
        diff = np.abs(arr(a).astype(int) - arr(b).astype(int))
        assert diff.max() <= 2 and (diff > 0).mean() < 0.01


def test_a_tile_pass_on_its_own_checkpoint_then_a_crop_on_the_large_canvas(backend):
    recipe = parse_recipe(
        {
            "passes": [
                {
                    "checkpoint": "tiny-photo",
                    "region": "tiles",
                    "tile_width": 64,
                    "tile_height": 64,
                    "upscale_by": 2,
                },
                {
                    "checkpoint": "tiny-toon",
                    "region": "crop",
                    "mask_source": "boxes",
                    "boxes": [[8, 8, 24, 24]],
                    "working_width": 64,
                    "working_height": 64,
                },
            ]
        }
    )
    result = run_job(recipe, Job(CTX, seeds=[1, 2]), backend)
    assert result.complete, result.account()
    assert result.checkpoints_loaded == ["tiny-toon", "tiny-photo", "tiny-toon"]
    tiled, final = arr(result.outputs[0][1].image), arr(result.images[0])
    assert final.shape == (128, 128, 3)
    changed = np.abs(final - tiled).max(axis=2) > 0
    ys, xs = np.nonzero(changed)
    assert changed.any() and xs.min() >= 0 and xs.max() < 128 and ys.max() < 128
