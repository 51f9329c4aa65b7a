"""What a WebUI host is sent for a job and what its answer means: the request body (txt2img,
or img2img with the job's own images as `init_images`), the images and infotexts it sends
back, and its errors in one line. Pure: no HTTP here (webui_workers sends them)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from PIL import Image

from ..protocol import Job
from ..recipe import recipe_to_dict
from .workers import Task

TXT2IMG, IMG2IMG = "/sdapi/v1/txt2img", "/sdapi/v1/img2img"


def request_for(task: Task, job: Job, start: int, count: int) -> tuple[str, dict[str, Any]]:
    """The endpoint and body that make `count` images of `job` from its image `start`: the
    base from the job's base, the passes as `alwayson_scripts.multipass` (the recipe without
    its base). A job with its own images (`init`) goes to img2img with them as `init_images`,
    one batch of `count`, at denoising strength 0: the tab's own img2img runs whatever an
    extension does, so it is asked to change the images as little as it can before the
    passes: one step at the smallest noise (A1111 1.10.1 sd_samplers_common.py
    setup_img2img_steps: t_enc = int(0 * steps) = 0). A continued chain (`from_pass` > 1)
    uses the sent images as they are."""
    ctx, seeds = job.ctx, list(job.seeds)[start : start + count]
    recipe = recipe_to_dict(task.spec.recipe)
    recipe.pop("base", None)
    body: dict[str, Any] = {
        "prompt": ctx.prompt,
        "negative_prompt": ctx.negative_prompt,
        "seed": seeds[0],
        "steps": ctx.steps,
        "sampler_name": ctx.sampler,
        "cfg_scale": ctx.cfg_scale,
        "width": ctx.width,
        "height": ctx.height,
        "batch_size": 1,
        "n_iter": len(seeds),
        "send_images": True,
        "save_images": False,
        "override_settings_restore_afterwards": True,
        "alwayson_scripts": {"multipass": {"args": [True, recipe]}},
    }
    if ctx.scheduler:
        body["scheduler"] = ctx.scheduler
    if ctx.subseed_strength != 0:  # the host's rule: one seed, variation seeds + 1 per image
        body["subseed"] = (ctx.subseed + start) % 2**32
        body["subseed_strength"] = ctx.subseed_strength
    # the job's random number source, as the host's setting for this request (A1111 1.10.1
    # shared_options.py `randn_source`, the same in Forge and Neo): the job's noise, not the
    # host's default (GPU, where Multipass's is CPU)
    overrides: dict[str, Any] = {"randn_source": ctx.rng}
    if ctx.checkpoint:
        overrides["sd_model_checkpoint"] = ctx.checkpoint
    if ctx.clip_skip > 1:
        overrides["CLIP_stop_at_last_layers"] = ctx.clip_skip
    body["override_settings"] = overrides
    if job.images is None:
        return TXT2IMG, body
    # A1111 processing.py StableDiffusionProcessingImg2Img.init: several init images are one
    # batch of that many (batch_size at least their number), each image its own seed + i
    body |= {
        "init_images": [png_base64(image) for image in list(job.images)[start : start + count]],
        "batch_size": len(seeds),
        "n_iter": 1,
        "denoising_strength": 0.0,
        "resize_mode": 0,
    }
    return IMG2IMG, body


def png_base64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def detail(answer: Any) -> str:
    """A host's error body in one line: Multipass's 422 lists every problem's message."""
    if isinstance(answer, dict) and isinstance(answer.get("detail"), list):
        messages = [d.get("message") or str(d) for d in answer["detail"] if isinstance(d, dict)]
        if messages:
            return "; ".join(messages)
    if isinstance(answer, dict):
        for key in ("detail", "error", "errors"):
            if answer.get(key):
                return str(answer[key])[:300]
    return str(answer)[:300]


def pictures_of(answer: dict[str, Any]) -> tuple[list[tuple[Image.Image, str]], str]:
    """The images and infotexts of a txt2img or img2img answer (past the grid), and
    Multipass's result."""
    try:
        info = json.loads(answer.get("info") or "{}")
    except ValueError:
        info = {}
    first = int(info.get("index_of_first_image") or 0)
    texts = list(info.get("infotexts") or [])
    images = [
        Image.open(io.BytesIO(base64.b64decode(b64.split(",", 1)[-1]))).convert("RGB")
        for b64 in answer.get("images") or []
    ]
    pictures = [
        (image, texts[i] if i < len(texts) else "") for i, image in enumerate(images) if i >= first
    ]
    result = str((info.get("extra_generation_params") or {}).get("Multipass result") or "")
    return pictures, result


def ended(result: str, got: int, wanted: int, cancelled: bool) -> tuple[str, str]:
    """A host's answer as the manifest says it: done only with every image and Multipass's
    result complete (or absent, for a recipe with no pass that ran); a job the driver stopped
    is cancelled unless it really finished, whatever the host's answer says."""
    complete = result in ("", "complete") and got == wanted
    if complete:
        return "done", ""
    why = result or f"the host sent back {got} of {wanted} images"
    if cancelled or "cancelled" in result:
        return "cancelled", why
    return "failed", why
