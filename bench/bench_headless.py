"""Where a headless run's time goes, on a full-size SD1.5 (random weights, the WebUI's layout).

    python bench/bench_headless.py [--size 128] [--steps 4] [--dtype fp32] [--runs 3]

Writes a random-weight SD1.5 in the WebUI's single-file layout (2.1 GB, fp16) to a temporary
folder, then in fresh processes, each part timed on its own: importing what `multipass run`
imports before any work (torch, diffusers, transformers, the backend), reading the checkpoint
(`load_checkpoint`: safetensors, conversion, building the pipeline), and sampling: txt2img at
the given size with the WebUI's Euler (the runner's k-diffusion loop) and with diffusers' own
Euler pipeline on the same weights, per step (between the ends of the first and the last step,
so prompt encoding and set-up are apart), in turns, the better of two, after a warm-up call.
Medians of --runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from lib_multipass.backends.diffusers_backend import DiffusersBackend
from lib_multipass.protocol import SampleRequest
imported = time.perf_counter() - t0
from pathlib import Path
folder, home, size, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
dtype = sys.argv[5]
torch.set_num_threads(2)
b = DiffusersBackend([folder], home=home, device="cpu", dtype=dtype)
t = time.perf_counter(); b.load_checkpoint("sd15-random"); read = time.perf_counter() - t
def request(n):
    return SampleRequest("a photo of a cat, detailed", "blurry", "Euler", "", n, 7.0, 1, size, size)
b.generate([request(1)], lambda s, n: None)  # warm-up: the first call's one-off costs
from diffusers import EulerDiscreteScheduler
pipe = b._pipeline("txt2img")
pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
c = b.conditioning(pipe, [request(steps)]).padded_at(0)
def runner_step():
    times = []
    b.generate([request(steps)], lambda s, n: times.append(time.perf_counter()))
    return (times[-1] - times[0]) / (steps - 1)  # between step ends: the steps alone
def diffusers_step():
    stamps = []
    pipe(prompt_embeds=c.cond, negative_prompt_embeds=c.uncond, num_inference_steps=steps,
         height=size, width=size, guidance_scale=7.0, output_type="latent",
         callback_on_step_end=lambda p, i, tt, kw: (stamps.append(time.perf_counter()), kw)[1])
    return (stamps[-1] - stamps[0]) / (steps - 1)
webui, plain = [], []
for _ in range(2):  # in turns, so that load on the machine weighs on both
    webui.append(runner_step())
    plain.append(diffusers_step())
webui, plain = min(webui), min(plain)
print(json.dumps({"import": imported, "read": read, "webui_step": webui, "diffusers_step": plain}))
"""


def random_checkpoint(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from safetensors.torch import save_file

    from tests.test_full_size import random_sd15

    path = folder / "sd15-random.safetensors"
    tensors = random_sd15()
    save_file(tensors, str(path))
    del tensors
    gc.collect()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "models"
        folder.mkdir()
        random_checkpoint(folder)
        rows = []
        for _ in range(args.runs):
            start = time.perf_counter()
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(folder),
                    str(Path(tmp) / "home"),
                    str(args.size),
                    str(args.steps),
                    args.dtype,
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if out.returncode:
                sys.exit(out.stderr)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["process"] = time.perf_counter() - start
            rows.append(row)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    what = f"{args.dtype}, {args.size}x{args.size}, CPU (medians of {args.runs})"
    print(f"SD1.5 random weights, {what}")
    print(f"import (torch, diffusers, transformers, the backend): {med['import']:.1f} s")
    print(f"checkpoint read (2.1 GB file -> pipeline): {med['read']:.1f} s")
    print(f"per step, the WebUI's Euler (runner): {med['webui_step']:.2f} s")
    print(f"per step, diffusers' Euler pipeline, same weights: {med['diffusers_step']:.2f} s")
    ratio = med["webui_step"] / med["diffusers_step"]
    print(f"runner / diffusers per step: {ratio:.3f}")
    print(f"whole child process: {med['process']:.1f} s")


if __name__ == "__main__":
    main()
