"""Engine benchmark on the built-in tiny models; prints ratios measured in one run.

    python bench/bench_engine.py

(a) engine overhead: a job's wall time over the sum of its sampling calls, models preloaded
    (target <= 1.05);
(b) a checkpoint switch from the RAM cache over a load from disk (target <= 0.1);
(c) checkpoint loads per job: the engine's grouped order (run k for every image, then k+1)
    against running the same recipe image by image, as the WebUI's hires fix and adetailer do,
    both holding one model in memory.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from lib_multipass.backends.diffusers_backend import DiffusersBackend
from lib_multipass.engine import Job, run_job
from lib_multipass.plan import JobContext
from lib_multipass.recipe import parse_recipe
from lib_multipass.tiny import ensure_tiny_models

RECIPE = parse_recipe(
    {
        "passes": [
            {"checkpoint": "tiny-photo", "upscale_by": 1.5, "denoising_strength": 0.5},
            {"checkpoint": "tiny-toon", "schedule": "list", "strengths": [0.6, 0.4]},
            {
                "checkpoint": "tiny-photo",
                "region": "crop",
                "mask_source": "boxes",
                "boxes": [[40, 40, 88, 88]],
                "working_width": 128,
                "working_height": 128,
            },
        ]
    }
)
CTX = JobContext(width=128, height=128, steps=12, checkpoint="tiny-toon", prompt="a harbour")


class TimedBackend(DiffusersBackend):
    """The real backend, adding up the time spent inside sampling calls."""

    sampling = 0.0

    def generate(self, request, on_step):
        start = time.perf_counter()
        try:
            return super().generate(request, on_step)
        finally:
            self.sampling += time.perf_counter() - start


def overhead(models: Path, home: Path) -> float:
    backend = TimedBackend([models], home=home)
    for name in ("tiny-photo", "tiny-toon"):
        backend.load_checkpoint(name)  # preloaded: the ratio is about the engine, not the disk
    run_job(RECIPE, Job(CTX, seeds=[1]), backend)  # warm-up
    ratios = []
    for _ in range(3):
        backend.sampling = 0.0
        start = time.perf_counter()
        result = run_job(RECIPE, Job(CTX, seeds=[1, 2, 3, 4]), backend)
        wall = time.perf_counter() - start
        assert result.complete
        ratios.append(wall / backend.sampling)
    return statistics.median(ratios)


def switch_costs(models: Path, home: Path) -> tuple[float, float]:
    disk, cached = [], []
    for _ in range(5):
        backend = DiffusersBackend([models], home=home)
        start = time.perf_counter()
        backend.load_checkpoint("tiny-toon")
        disk.append(time.perf_counter() - start)
        backend.load_checkpoint("tiny-photo")
        start = time.perf_counter()
        backend.load_checkpoint("tiny-toon")
        cached.append(time.perf_counter() - start)
    return statistics.median(disk), statistics.median(cached)


def loads_per_job(models: Path, home: Path, images: int) -> tuple[int, int]:
    grouped = DiffusersBackend([models], home=home, cache_bytes=1)
    run_job(RECIPE, Job(CTX, seeds=list(range(images))), grouped)
    per_image = DiffusersBackend([models], home=home, cache_bytes=1)
    for seed in range(images):
        run_job(RECIPE, Job(CTX, seeds=[seed]), per_image)
    return sum(grouped.disk_loads.values()), sum(per_image.disk_loads.values())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        models = ensure_tiny_models(Path(tmp) / "models")
        home = Path(tmp) / "home"
        ratio = overhead(models, home)
        disk, cached = switch_costs(models, home)
        print(f"(a) engine wall / sampling time, 4 images x 4 runs: {ratio:.3f} (target <= 1.05)")
        print(
            f"(b) cached switch / disk load: {cached * 1000:.2f} ms / {disk * 1000:.1f} ms = "
            f"{cached / disk:.4f} (target <= 0.1)"
        )
        for images in (1, 3, 8):
            grouped, per_image = loads_per_job(models, home, images)
            print(
                f"(c) {images} images, recipe toon -> photo -> toon -> photo: checkpoint loads "
                f"{grouped} grouped vs {per_image} image by image"
            )


if __name__ == "__main__":
    main()
