"""The txt2img and img2img endpoints' flows (A1111 1.10.1 api.py:335-565; the same in reForge,
Forge 2, Neo): alwayson script args by position over the UI defaults, process_images, and a
response whose `info` is Processed.js() (comments never reach the client)."""

import base64
import io

from PIL import Image

from modules import processing, shared


def decode_base64_to_image(encoding):
    """A request's base64 image, with or without a `data:` prefix (api.py:77-99; URLs left out:
    the stand-in serves loopback only)."""
    if encoding.startswith("data:image/"):
        encoding = encoding.split(";")[1].split(",")[1]
    return Image.open(io.BytesIO(base64.b64decode(encoding)))


def init_script_args(body, default_script_args, script_runner):
    script_args = list(default_script_args)
    for name, entry in (body.get("alwayson_scripts") or {}).items():
        script = next(s for s in script_runner.alwayson_scripts if s.title().lower() == name.lower())
        args = entry.get("args", [])
        for idx in range(min(script.args_to - script.args_from, len(args))):
            script_args[script.args_from + idx] = args[idx]
    return script_args


def text2imgapi(body, script_runner, default_script_args):
    """What POST /sdapi/v1/txt2img returns, as a dict (images are PIL here, not base64)."""
    fields = {k: v for k, v in body.items() if k not in ("alwayson_scripts", "send_images", "save_images")}
    p = processing.StableDiffusionProcessingTxt2Img(sd_model=shared.sd_model, **fields)
    return _run(p, "scripts_txt2img", body, script_runner, default_script_args)


def img2imgapi(body, script_runner, default_script_args):
    """What POST /sdapi/v1/img2img returns (A1111 1.10.1 api.py:492-565): the request's fields
    make the processing object, `init_images` (base64) are decoded onto it after, the mask
    too; images are PIL here, not base64."""
    if body.get("init_images") is None:
        raise ValueError("Init image not found")  # the host's 404
    skip = ("alwayson_scripts", "send_images", "save_images", "init_images", "mask", "include_init_images")
    fields = {k: v for k, v in body.items() if k not in skip}
    mask = decode_base64_to_image(body["mask"]) if body.get("mask") else None
    p = processing.StableDiffusionProcessingImg2Img(sd_model=shared.sd_model, mask=mask, **fields)
    p.init_images = [decode_base64_to_image(x) for x in body["init_images"]]
    return _run(p, "scripts_img2img", body, script_runner, default_script_args)


def _run(p, job, body, script_runner, default_script_args):
    """The rest both endpoints share: API flags, the request's scripts, the job in state."""
    p.is_api = True
    p.do_not_save_samples = not body.get("save_images", False)
    p.do_not_save_grid = not body.get("save_images", False)
    p.scripts = script_runner
    shared.state.begin(job=job)
    p.script_args = tuple(init_script_args(body, default_script_args, script_runner))
    try:
        processed = processing.process_images(p)
    finally:
        shared.state.end()
    images = processed.images + processed.extra_images
    return {"images": images, "parameters": body, "info": processed.js()}
