"""What the engine asks of a host, and what a job is: sampling requests, the Backend protocol,
cancel and skip, and a job's inputs. Backends (diffusers, the WebUI) implement `Backend`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from .geometry import Size
from .plan import JobContext, Run
from .recipe import Problem


class Cancelled(Exception):
    """The job was asked to stop; raised between sampling steps."""


class Skipped(Exception):
    """The current image's current run was asked to be skipped."""


@dataclass(frozen=True)
class SampleRequest:
    """One sampling call: txt2img when `image` is None, img2img with it, inpaint with `mask`."""

    prompt: str
    negative_prompt: str
    sampler: str
    scheduler: str
    steps: int
    cfg_scale: float
    seed: int
    width: int
    height: int
    strength: float = 1.0
    step_mode: str = "proportional"
    image: Image.Image | None = None
    mask: Image.Image | None = None  # L, white is regenerated
    vae: str = ""
    text_encoders: tuple[str, ...] = ()
    clip_skip: int = 1  # the WebUI's CLIP_stop_at_last_layers
    # ControlNet units (controlnet.ControlUnit) whose control image is `image`
    controlnet: tuple[Any, ...] = ()
    subseed: int = -1  # the WebUI's variation seed, mixed in at subseed_strength
    subseed_strength: float = 0.0
    rng: str = "CPU"  # the WebUI's random number source: CPU, GPU or NV
    image_rules: str = "A1111"  # whose rules the image follows where WebUIs differ


StepCallback = Callable[[int, int], None]


class Backend(Protocol):
    """What the engine needs from a host: checkpoints, sampling, upscaling."""

    def current_checkpoint(self) -> str:
        """The name of the loaded checkpoint ('' if none)."""
        ...

    def checkpoint_id(self, name: str) -> str:
        """Who `name` really is ('' names the loaded checkpoint): the same id for every name of
        one checkpoint (file name, title, title with a hash), '' for a name it does not know."""
        ...

    def load_checkpoint(self, name: str) -> None:
        """Make `name` the loaded checkpoint."""
        ...

    def checkpoint_family(self, name: str) -> str:
        """'sd1', 'sd2' or 'sdxl', for automatic working sizes ('' names the current one)."""
        ...

    def check_run(self, run: Run) -> list[Problem]:
        """What in `run` this backend cannot do (unknown checkpoint, sampler, upscaler...)."""
        ...

    def generate(
        self, requests: Sequence[SampleRequest], on_step: StepCallback
    ) -> list[Image.Image]:
        """Sample a batch of images in one call (same settings and size; each with its own
        seed, prompts and init image); call on_step(step, total) after every step."""
        ...

    def upscale(self, image: Image.Image, size: Size, upscaler: str) -> Image.Image:
        """`image` resized to `size` with the named upscaler."""
        ...


class Control:
    """Cancel and skip requests, settable from another thread (a UI, a signal handler)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._skip = threading.Event()

    def cancel(self) -> None:
        self._stop.set()

    def skip(self) -> None:
        self._skip.set()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def should_skip(self) -> bool:
        return self._skip.is_set()

    def clear_skip(self) -> None:
        self._skip.clear()


@dataclass(frozen=True)
class Job:
    """The inputs of a job besides the recipe."""

    ctx: JobContext
    images: Sequence[Image.Image] | None = None  # None: generate the base with txt2img
    seeds: Sequence[int] = (0,)
    job_mask: Image.Image | None = None  # the job's own inpaint mask, base image size
    recipe_dir: Path | None = None  # where a recipe file's mask image paths start; None: API
    # each image's own base prompts (wildcards, prompt matrix); None: ctx's for all
    prompts: Sequence[str] | None = None
    negative_prompts: Sequence[str] | None = None
    batch_size: int = 1  # images sampled together in one call (the WebUI's batch size)
    detectors: Any = None  # a detectors.Registry, for detect passes
    names: Sequence[str] | None = None  # given images' file names (headless --init), for outputs

    @property
    def count(self) -> int:
        """How many images the job holds."""
        return len(self.images) if self.images is not None else len(self.seeds)
