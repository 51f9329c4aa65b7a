"""Tile passes against the same work done otherwise, measured in one run:

    python bench/bench_tiles.py

(1) batched / one tile per call: the same sd-upscale tile pass over a 2048^2 canvas (81 tiles of
    256^2), 4 and 8 tiles per call against 1.
(2) tile pass / by hand: the engine's tile pass against the same tiles cut, sampled one by one
    with plain diffusers' img2img pipeline (3 of 4 Euler a steps, as the pass runs) and joined
    as the SD upscale script joins them, the model loaded beforehand in both. Goal <= 1.05.
(3) peak RSS of a tile pass on a 4096^2 canvas against one on 1024^2 (each in a fresh process,
    less the bytes of the images the pass holds by design: its input, the upscaled canvas and
    the result): a tile pass holds tiles, not latents of the canvas. Goal <= 1.1.

The models have SD1.5's layer structure at narrow widths (bench_engine.py's DEEP), so a CPU
gets through; the figures are ratios of things measured in this run on this machine, and a
missed goal prints MISSED and exits 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from bench_engine import DEEP, HOME, NEGATIVE, PROMPT, build, paired, report
from PIL import Image

from lib_multipass import tiny
from lib_multipass.backends.diffusers_backend import DiffusersBackend
from lib_multipass.engine import Job, run_job
from lib_multipass.plan import JobContext
from lib_multipass.recipe import parse_recipe
from lib_multipass.regions.tiles import GridWork, layout, tile_pieces

STEPS, STRENGTH = 4, 0.5  # the WebUI runs int(0.5 * 4) + 1 = 3 of 4 steps
TILE = 256  # the narrow SD1.5-shaped model at 256^2 keeps a 2-core CPU within minutes
TILES = {
    "region": "tiles",
    "tile_style": "sd-upscale",
    "tile_width": TILE,
    "tile_height": TILE,
    "tile_overlap": 32,
    "denoising_strength": STRENGTH,
}
RESULTS_MISSED: list[str] = []


def canvas_job(side: int, batch: int = 1) -> Job:
    image = Image.effect_noise((side, side), 64).convert("RGB")
    ctx = JobContext(
        width=side,
        height=side,
        steps=STEPS,
        sampler="Euler a",
        checkpoint="deep-a",
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
    )
    return Job(ctx, images=[image], seeds=[1], batch_size=batch)


def bench_batching(backend: DiffusersBackend) -> None:
    recipe = parse_recipe({"passes": [TILES]})
    jobs = {n: canvas_job(2048, n) for n in (1, 4, 8)}

    def run(n: int) -> float:
        start = time.perf_counter()
        assert run_job(recipe, jobs[n], backend).complete
        return time.perf_counter() - start

    run(4)  # warm-up
    for n in (4, 8):
        batched, single = paired(lambda n=n: run(n), lambda: run(1), repeats=2)
        report(f"(1) batched / one tile per call, {n} tiles per call, 2048^2", batched / single)


def by_hand(models: Path, image: Image.Image, pipe) -> Image.Image:
    """The same tiles, one img2img call each in plain diffusers, joined as the script does."""
    p = parse_recipe({"passes": [TILES]}).passes[0]
    plan = layout(p, image.size, "sd1")
    join = GridWork(image, plan, tile_pieces(plan, p))  # only its join of sampled tiles
    for piece in tile_pieces(plan, p)[0]:
        t = piece.key[1]
        tile = image.crop(t.box)
        out = pipe(
            PROMPT,
            negative_prompt=NEGATIVE,
            image=tile,
            strength=3.5 / 4,  # what makes diffusers run 3 of 4 steps, as the WebUI does
            num_inference_steps=STEPS,
            guidance_scale=7.0,
            generator=torch.Generator().manual_seed(1 + t.index),
        ).images[0]
        join.put(piece, out)
    return join.result()


def bench_overhead(backend: DiffusersBackend, models: Path) -> None:
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionImg2ImgPipeline

    config = tiny.write_config_dir(HOME / "by-hand-deep", DEEP)
    pipe = StableDiffusionImg2ImgPipeline.from_single_file(
        str(models / "deep-a.safetensors"),
        config=str(config),
        local_files_only=True,
        torch_dtype=torch.float32,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    recipe = parse_recipe({"passes": [TILES]})
    job = canvas_job(768)
    run_job(recipe, job, backend)  # warm-up
    by_hand(models, job.images[0], pipe)
    # The engine samples as the WebUI does (its noise, k-diffusion's Euler a), diffusers' pipeline
    # with its own scheduler and noise: the same tiles, steps and model calls, other pixels.
    # That the pass's tiles are the tiles sampled one by one is a test (tests/test_tiles.py).

    def engine() -> float:
        start = time.perf_counter()
        assert run_job(recipe, job, backend).complete
        return time.perf_counter() - start

    def hand() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            by_hand(models, job.images[0], pipe)
        return time.perf_counter() - start

    a, b = paired(engine, hand, repeats=3)
    report("(2) tile pass / the same tiles by hand in plain diffusers, 768^2", a / b, 1.05)


RSS_JOB = """
import sys
from pathlib import Path
from PIL import Image
from lib_multipass.backends.diffusers_backend import DiffusersBackend
from lib_multipass.engine import Job, run_job
from lib_multipass.plan import JobContext
from lib_multipass.recipe import parse_recipe
folder, home, side = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
backend = DiffusersBackend([folder], home=home, device="cpu", dtype="fp32")
recipe = parse_recipe({"passes": [{"region": "tiles", "tile_style": "sd-upscale",
    "tile_width": 256, "tile_height": 256, "tile_overlap": 32, "upscale_by": 2,
    "denoising_strength": 0.3}]})
ctx = JobContext(width=side // 2, height=side // 2, steps=2, checkpoint="deep-a", prompt="x")
image = Image.effect_noise((side // 2, side // 2), 64).convert("RGB")
assert run_job(recipe, Job(ctx, images=[image], seeds=[1]), backend).complete
with open("/proc/self/status") as fh:
    print(next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:")))
"""


def peak_rss(models: Path, side: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", RSS_JOB, str(models), str(HOME / "home"), str(side)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip().splitlines()[-1])


def bench_memory(models: Path) -> None:
    def held(side: int) -> int:  # input (side/2)^2, the upscaled canvas and the result, RGB
        return 3 * ((side // 2) ** 2 + 2 * side**2)

    small, large = peak_rss(models, 1024), peak_rss(models, 4096)
    print(
        f"(3) peak RSS: 1024^2 tile pass {small / 2**20:.0f} MiB, 4096^2 {large / 2**20:.0f} MiB "
        f"(images held: {held(1024) / 2**20:.0f} and {held(4096) / 2**20:.0f} MiB)",
        flush=True,
    )
    ratio = (large - held(4096)) / (small - held(1024))
    report("(3) peak RSS of a tile pass, 4096^2 / 1024^2, less the images held", ratio, 1.1)


def main() -> int:
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads",
        flush=True,
    )
    deep = HOME / "deep"
    for name, seed in (("deep-a", 1), ("deep-b", 2)):
        build(deep, name, DEEP, seed)
    backend = DiffusersBackend([deep], home=HOME / "home", device="cpu", dtype="fp32")
    bench_overhead(backend, deep)
    bench_batching(backend)
    bench_memory(deep)
    from bench_engine import RESULTS

    missed = [label for label, value, goal in RESULTS if goal is not None and value > goal]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
