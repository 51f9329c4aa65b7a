"""Multipass against plain diffusers doing the same work, measured in one run:

    python bench/bench_engine.py            # everything (builds three SD1.5-size files once)
    python bench/bench_engine.py --quick    # (1), (2) and (4) only, on small models

(1) Multipass / by hand: a base and two passes on two checkpoints, 1 and 4 images, on models
    with SD1.5's layer count (narrow layers, so a CPU gets through); by hand is the same calls
    in plain diffusers, loads included in both. Goal <= 1.05.
(2) batched / image by image: the same job sampled 4 and 8 images per call against 1.
(3) checkpoint loads for A -> B -> C -> A -> B with SD1.5-size checkpoints (4 GB each in fp32,
    over the old 2 GiB default): the default cache (a share of available memory) against the
    old 2 GiB one.
(4) a crop pass on a 4096^2 canvas against the same mask on 512^2, engine and outputs: engine
    goal <= 1.2; writing the outputs goal <= the final image's own PNG encode (<= 1.2).
(5) peak RSS of a job switching between two SD1.5-size checkpoints with no cache, against one
    that loads one model: goal <= 1.2 (one model in memory at a switch).

Each figure is a ratio of two things measured in this run on this machine; the goals are
checked and a missed one is printed as MISSED, with exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from lib_multipass import tiny
from lib_multipass.backends.diffusers_backend import SD1_ARCHITECTURE, DiffusersBackend
from lib_multipass.engine import Job, run_job
from lib_multipass.plan import JobContext
from lib_multipass.recipe import parse_recipe
from lib_multipass.runner import FINAL_COMPRESSION, write_outputs

HOME = Path(os.environ.get("MULTIPASS_HOME", Path.home() / ".cache" / "multipass")) / "bench"
# SD1.5's layer structure (4 UNet levels of 2 layers with attention, 12 CLIP layers, a 4-level
# VAE) at narrow widths: the per-layer overheads of a real model at a CPU's pace
DEEP = {
    **tiny.architecture("sd1"),
    "unet": {
        **SD1_ARCHITECTURE["unet"],
        "block_out_channels": [32, 64, 64, 64],
        "cross_attention_dim": 64,
        "sample_size": 32,
    },
    "vae": {**SD1_ARCHITECTURE["vae"], "block_out_channels": [32, 32, 64, 64]},
    "text_encoder": {
        **tiny.TEXT_ENCODER,
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 12,
        "num_attention_heads": 4,
        "projection_dim": 64,
    },
    "format": "bench-deep-1",
}
# SD1.5 at full size, random weights, with the tiny byte tokenizer (no vocabulary download)
FULL = {**SD1_ARCHITECTURE, "tokenizer": "bytes", "format": "bench-full-1"}

PROMPT, NEGATIVE = "a harbour at dawn", "blurry"
RESULTS: list[tuple[str, float, float | None]] = []


def build(folder: Path, name: str, arch: dict, seed: int) -> Path:
    """A checkpoint of `arch` in the WebUI's single-file layout (built once, then reused)."""
    from safetensors.torch import save_file

    path = folder / f"{name}.safetensors"
    meta = {tiny.METADATA_KEY: json.dumps(arch, sort_keys=True)}
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        save_file(tiny.build_for(arch, seed), str(path.with_suffix(".tmp")), metadata=meta)
        path.with_suffix(".tmp").replace(path)
    return path


def paired(a, b, repeats: int = 5) -> tuple[float, float]:
    """The best times of `a` and `b`, measured in turns (a, b, a, b...): whatever else the
    machine does only ever adds time, and weighs on both alike."""
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(a())
        tb.append(b())
    return min(ta), min(tb)


def report(label: str, value: float, goal: float | None = None, unit: str = "") -> None:
    RESULTS.append((label, value, goal))
    verdict = ""
    if goal is not None:
        verdict = f" (goal <= {goal:.2f})" + ("" if value <= goal else " MISSED")
    print(f"{label}: {value:.3f}{unit}{verdict}", flush=True)


# -- (1) and (2) ----------------------------------------------------------------------------------

RECIPE = parse_recipe(
    {
        "passes": [
            {"checkpoint": "deep-b", "denoising_strength": 0.6},
            {"checkpoint": "deep-a", "denoising_strength": 0.4},
        ]
    }
)


def ctx(steps: int = 10) -> JobContext:
    return JobContext(
        width=128,
        height=128,
        steps=steps,
        sampler="Euler a",
        checkpoint="deep-a",
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
    )


def multipass(models: Path, seeds: list[int], batch: int = 1) -> float:
    backend = DiffusersBackend([models], home=HOME / "home", device="cpu", dtype="fp32")
    start = time.perf_counter()
    result = run_job(RECIPE, Job(ctx(), seeds=seeds, batch_size=batch), backend)
    wall = time.perf_counter() - start
    assert result.complete, result.account()
    return wall


def by_hand(models: Path, seeds: list[int]) -> float:
    """The same work in plain diffusers: load both, base on A, img2img on B, img2img on A."""
    from diffusers import (
        EulerAncestralDiscreteScheduler,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionPipeline,
    )

    config = tiny.write_config_dir(HOME / "by-hand-deep", DEEP)
    start = time.perf_counter()
    pipes = {}
    for name in ("deep-a", "deep-b"):
        pipe = StableDiffusionPipeline.from_single_file(
            str(models / f"{name}.safetensors"),
            config=str(config),
            local_files_only=True,
            torch_dtype=torch.float32,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
        img2img.set_progress_bar_config(disable=True)
        pipes[name] = (pipe, img2img)
    g = torch.Generator
    with torch.inference_mode():
        for seed in seeds:
            image = pipes["deep-a"][0](
                PROMPT,
                negative_prompt=NEGATIVE,
                num_inference_steps=10,
                height=128,
                width=128,
                guidance_scale=7.0,
                generator=g().manual_seed(seed),
            ).images[0]
            # the WebUI's 0.6 at 10 steps runs 7 of 10; 0.4 runs 5 of 10
            image = pipes["deep-b"][1](
                PROMPT,
                negative_prompt=NEGATIVE,
                image=image,
                strength=7.5 / 10,
                num_inference_steps=10,
                guidance_scale=7.0,
                generator=g().manual_seed(seed),
            ).images[0]
            image = pipes["deep-a"][1](
                PROMPT,
                negative_prompt=NEGATIVE,
                image=image,
                strength=5.5 / 10,
                num_inference_steps=10,
                guidance_scale=7.0,
                generator=g().manual_seed(seed),
            ).images[0]
    return time.perf_counter() - start


def bench_overhead_and_batching(models: Path) -> None:
    multipass(models, [1])  # warm-up: configs written, kernels ready
    by_hand(models, [1])
    for n in (1, 4):
        seeds = list(range(1, n + 1))
        ours, theirs = paired(
            lambda s=seeds: multipass(models, s), lambda s=seeds: by_hand(models, s)
        )
        report(f"(1) Multipass / by hand, {n} image{'s' if n > 1 else ''}", ours / theirs, 1.05)
    for n in (4, 8):
        seeds = list(range(1, n + 1))
        batched, single = paired(
            lambda s=seeds, n=n: multipass(models, s, batch=n),
            lambda s=seeds: multipass(models, s, batch=1),
            repeats=3,
        )
        report(f"(2) batched / image by image, {n} images", batched / single)


# -- (3) ------------------------------------------------------------------------------------------


def bench_cache(full: Path) -> None:
    """Disk loads (not times: the second run reads files the OS has cached)."""
    import gc

    order = ["full-a", "full-b", "full-c", "full-a", "full-b"]
    for label, cache in (("default cache", None), ("old 2 GiB cache", 2 * 1024**3)):
        backend = DiffusersBackend(
            [full], home=HOME / "home", device="cpu", dtype="fp32", cache_bytes=cache
        )
        for name in order:
            backend.load_checkpoint(name)
        loads = sum(backend.disk_loads.values())
        print(
            f"(3) A->B->C->A->B, {label} ({backend.cache_bytes / 2**30:.1f} GiB): "
            f"{loads} disk loads",
            flush=True,
        )
        RESULTS.append((f"(3) disk loads, {label}", loads, None))
        del backend
        gc.collect()


# -- (4) ------------------------------------------------------------------------------------------


def bench_canvas(models: Path) -> None:
    crop = {
        "region": "crop",
        "mask_source": "boxes",
        "boxes": [[100, 100, 300, 300]],
        "padding": 32,
        "mask_blur": 8,
        "working_width": 256,
        "working_height": 256,
        "denoising_strength": 0.5,
    }
    recipe = parse_recipe({"passes": [crop]})
    backend = DiffusersBackend([models], home=HOME / "home", device="cpu", dtype="fp32")
    backend.load_checkpoint("deep-a")
    jobs, last = {}, {}
    for side in (512, 4096):
        image = Image.effect_noise((side, side), 64).convert("RGB")
        c = JobContext(width=side, height=side, steps=8, checkpoint="deep-a", prompt=PROMPT)
        jobs[side] = Job(c, images=[image], seeds=[1])
        last[side] = run_job(recipe, jobs[side], backend)  # warm-up

    def engine(side: int) -> float:
        start = time.perf_counter()
        last[side] = run_job(recipe, jobs[side], backend)
        return time.perf_counter() - start

    small, large = paired(lambda: engine(512), lambda: engine(4096), repeats=5)
    report("(4) crop pass, engine 4096^2 / 512^2", large / small, 1.2)
    with tempfile.TemporaryDirectory() as tmp:
        final = last[4096].images[0]

        def outputs() -> float:
            start = time.perf_counter()
            write_outputs(last[4096], recipe, jobs[4096], Path(tmp) / "out", stages=False)
            return time.perf_counter() - start

        def encode() -> float:
            start = time.perf_counter()
            final.save(Path(tmp) / "plain.png", compress_level=FINAL_COMPRESSION)
            return time.perf_counter() - start

        written, plain = paired(outputs, encode, repeats=5)
    report("(4) crop pass outputs on 4096^2 / that final's own PNG encode", written / plain, 1.2)


# -- (5) ------------------------------------------------------------------------------------------

RSS_JOB = """
import sys
from pathlib import Path
from lib_multipass.backends.diffusers_backend import DiffusersBackend
from lib_multipass.engine import Job, run_job
from lib_multipass.plan import JobContext
from lib_multipass.recipe import parse_recipe
folder, home, passes = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
backend = DiffusersBackend([folder], home=home, device="cpu", dtype="fp32", cache_bytes=0)
recipe = parse_recipe({"passes": [{"checkpoint": n, "denoising_strength": 0.5} for n in passes]})
ctx = JobContext(width=64, height=64, steps=2, checkpoint="full-a", prompt="x")
assert run_job(recipe, Job(ctx, seeds=[1]), backend).complete
# VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork and exec)
with open("/proc/self/status") as fh:
    print(next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:")))
"""


def peak_rss(full: Path, passes: list[str]) -> int:
    done = subprocess.run(
        [sys.executable, "-c", RSS_JOB, str(full), str(HOME / "home"), *passes],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip().splitlines()[-1])


def bench_memory(full: Path) -> None:
    one = peak_rss(full, ["full-a"])
    two = peak_rss(full, ["full-b", "full-a"])
    print(
        f"(5) peak RSS: one model {one / 2**30:.2f} GiB, switching A -> B -> A "
        f"{two / 2**30:.2f} GiB",
        flush=True,
    )
    report("(5) peak RSS, two-checkpoint job / one model", two / one, 1.2)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip the SD1.5-size parts")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads",
        flush=True,
    )
    deep = HOME / "deep"
    for name, seed in (("deep-a", 1), ("deep-b", 2)):
        build(deep, name, DEEP, seed)
    bench_overhead_and_batching(deep)
    bench_canvas(deep)
    if not args.quick:
        full = HOME / "full"
        for name, seed in (("full-a", 1), ("full-b", 2), ("full-c", 3)):
            build(full, name, FULL, seed)
        bench_cache(full)
        bench_memory(full)
    missed = [label for label, value, goal in RESULTS if goal is not None and value > goal]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
