"""The txt2img endpoint's flow (A1111 1.10.1 api.py:335-490; the same in reForge, Forge 2, Neo):
alwayson script args by position over the UI defaults, process_images, and a response whose
`info` is Processed.js() (comments never reach the client)."""

from modules import processing, shared


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
    p.is_api = True
    p.do_not_save_samples = not body.get("save_images", False)
    p.do_not_save_grid = not body.get("save_images", False)
    p.scripts = script_runner
    shared.state.begin(job="scripts_txt2img")
    p.script_args = tuple(init_script_args(body, default_script_args, script_runner))
    processed = processing.process_images(p)
    images = processed.images + processed.extra_images
    return {"images": images, "parameters": body, "info": processed.js()}
