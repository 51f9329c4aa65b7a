"""A job's images one by one: what a worker sends as each image is finished, and the rest of a
job whose first images are already on disk.

A worker sends a `Picture` the moment an image is finished (the embedded engine and Ray
actors from the engine's per-image call, a WebUI host per request), and the driver writes it
then, so a job stopped at image 60 of 100 keeps 59. A job run again after its worker was lost
(or after the list was stopped) runs only its images from the first one missing: `rest_of`
makes that job, with the seeds, variation seeds and file numbers of the whole job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..protocol import Job
from ..results import JobResult


@dataclass
class Picture:
    """One image as a worker sends it: its index in the job the worker ran, the image, its
    infotext, its file stem (its seed, or the given image's name), and whether it is final
    or partial (a WebUI host's request that was stopped)."""

    index: int
    image: Image.Image
    text: str
    stem: str
    state: str = "final"


def picture_of(result: JobResult, recipe: Any, job: Job, index: int) -> Picture:
    """Image `index` of a diffusers job as it is saved (the final's infotext)."""
    from ..runner import final_of

    stem, _state, text = final_of(result, recipe, job, index)
    return Picture(index, result.outputs[index][-1].image, text, stem)


def rest_of(job: Job, first: int) -> Job:
    """The images of `job` from index `first` on, as a job of their own that makes the same
    images: the same seeds, and variation seeds that go on from the first image's (the
    engine and infotext count them from the job's first image)."""
    if first == 0:
        return job
    ctx = job.ctx
    if ctx.subseed_strength != 0:
        ctx = dataclasses.replace(ctx, subseed=(ctx.subseed + first) % 2**32)

    def tail(values: Any) -> Any:
        return None if values is None else list(values)[first:]

    return dataclasses.replace(
        job,
        ctx=ctx,
        seeds=list(job.seeds)[first:],
        images=tail(job.images),
        names=tail(job.names),
        prompts=tail(job.prompts),
        negative_prompts=tail(job.negative_prompts),
    )


def stem_of(job: Job, index: int) -> str:
    """Image `index`'s file stem, as `multipass run` names it: the given image's name, or
    its seed."""
    from ..runner import _slug

    names = list(job.names or [])
    if index < len(names):
        return _slug(Path(names[index]).stem)
    return str(list(job.seeds)[index])


def file_name(number: int, stem: str, state: str = "final") -> str:
    """A final's file name in a job's folder: `07-1234-final.png` for image 7, seed 1234."""
    return f"{number:02d}-{stem}-{state}.png"
