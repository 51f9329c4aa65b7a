"""StableDiffusionProcessing with A1111 1.10.1's field names, and a process_images that keeps
the real control flow (overrides, checkpoint reload from the settings, hook order, infotext)
while "sampling" by tinting images with a colour of the loaded checkpoint and the seed."""

import hashlib
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from modules import images as images_module
from modules import sd_models, shared

calls = []  # every sampling call: dict(kind, checkpoint, seed, prompt, strength, size, ...)
on_call = []  # test hooks, each called with the call dict before it returns (may raise)


def quote(text):
    import json

    if "," not in str(text) and "\n" not in str(text) and ":" not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


@dataclass(repr=False)
class StableDiffusionProcessing:
    sd_model: object = None
    outpath_samples: str = None
    outpath_grids: str = None
    prompt: str = ""
    prompt_for_display: str = None
    negative_prompt: str = ""
    styles: list = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    seed_enable_extras: bool = True
    sampler_name: str = None
    scheduler: str = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool = None
    tiling: bool = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    extra_generation_params: dict = None
    overlay_images: list = None
    eta: float = None
    do_not_reload_embeddings: bool = False
    denoising_strength: float = None
    ddim_discretize: str = None
    s_min_uncond: float = None
    s_churn: float = None
    s_tmax: float = None
    s_tmin: float = None
    s_noise: float = None
    override_settings: dict = None
    override_settings_restore_afterwards: bool = True
    sampler_index: int = None
    refiner_checkpoint: str = None
    refiner_switch_at: float = None
    token_merging_ratio = 0
    token_merging_ratio_hr = 0
    disable_extra_networks: bool = False
    firstpass_image: Any = None
    scripts_value: Any = field(default=None, init=False)
    script_args_value: list = field(default=None, init=False)
    scripts_setup_complete: bool = field(default=False, init=False)
    comments: dict = None
    is_api: bool = field(default=False, init=False)

    def __post_init__(self):
        self.styles = self.styles or []
        self.extra_generation_params = self.extra_generation_params or {}
        self.override_settings = dict(self.override_settings or {})
        self.comments = {}

    @property
    def scripts(self):
        return self.scripts_value

    @scripts.setter
    def scripts(self, value):
        self.scripts_value = value
        if self.scripts_value and self.script_args_value and not self.scripts_setup_complete:
            self.setup_scripts()

    @property
    def script_args(self):
        return self.script_args_value

    @script_args.setter
    def script_args(self, value):
        self.script_args_value = value
        if self.scripts_value and self.script_args_value and not self.scripts_setup_complete:
            self.setup_scripts()

    def setup_scripts(self):
        self.scripts_setup_complete = True
        self.scripts.setup_scrips(self, is_ui=not self.is_api)

    def comment(self, text):
        self.comments[text] = 1

    def close(self):
        pass


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    denoising_strength: float = 0.75
    hr_scale: float = 2.0
    hr_upscaler: str = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str = None


@dataclass(repr=False)
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = None
    resize_mode: int = 0
    denoising_strength: float = 0.75
    image_cfg_scale: float = None
    mask: Any = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float = None
    latent_mask: Any = None
    force_task_id: str = None
    image_mask: Any = field(default=None, init=False)

    def __post_init__(self):
        super().__post_init__()
        self.image_mask = self.mask
        self.mask = None


class Processed:
    def __init__(
        self,
        p,
        images_list,
        seed=-1,
        info="",
        subseed=None,
        all_prompts=None,
        all_negative_prompts=None,
        all_seeds=None,
        all_subseeds=None,
        index_of_first_image=0,
        infotexts=None,
        comments="",
    ):
        self.images = images_list
        self.prompt = p.prompt
        self.negative_prompt = p.negative_prompt
        self.seed = seed
        self.info = info
        self.comments = "".join(f"{comment}\n" for comment in p.comments)
        self.width = p.width
        self.height = p.height
        self.extra_generation_params = p.extra_generation_params
        self.index_of_first_image = index_of_first_image
        self.all_prompts = all_prompts or [p.prompt]
        self.all_seeds = all_seeds or [seed]
        self.infotexts = infotexts or [info]


def create_infotext(p, seed):
    params = {
        "Steps": p.steps,
        "Sampler": p.sampler_name,
        "CFG scale": p.cfg_scale,
        "Seed": seed,
        "Size": f"{p.width}x{p.height}",
        "Model": shared.sd_model.sd_checkpoint_info.name_for_extra,
        **p.extra_generation_params,
    }
    line = ", ".join(f"{k}: {quote(v)}" for k, v in params.items() if v is not None)
    return f"{p.prompt}\nNegative prompt: {p.negative_prompt}\n{line}"


def _tint(checkpoint, seed, size):
    digest = hashlib.sha256(f"{checkpoint}|{seed}".encode()).digest()
    return Image.new("RGB", size, tuple(digest[:3]))


def process_images(p):
    if p.scripts is not None:
        p.scripts.before_process(p)
    stored_opts = {k: shared.opts.data[k] for k in p.override_settings if k in shared.opts.data}
    try:
        if sd_models.checkpoint_aliases.get(p.override_settings.get("sd_model_checkpoint")) is None:
            p.override_settings.pop("sd_model_checkpoint", None)
            if sd_models.FLAVOUR == "forge":
                sd_models.forge_model_reload()
            else:
                sd_models.reload_model_weights()
        for k, v in p.override_settings.items():
            shared.opts.set(k, v, is_api=True, run_callbacks=False)
            if k == "sd_model_checkpoint" and sd_models.FLAVOUR != "forge":
                sd_models.reload_model_weights()
        return process_images_inner(p)
    finally:
        if p.override_settings_restore_afterwards:
            for k, v in stored_opts.items():
                setattr(shared.opts, k, v)


def process_images_inner(p):
    if p.scripts is not None:
        p.scripts.process(p)
    images, seeds, prompts, infotexts = [], [], [], []
    base_seed = p.seed if p.seed != -1 else 1000
    for n in range(p.n_iter):
        if shared.state.interrupted or shared.state.stopping_generation:
            break
        for i in range(p.batch_size):
            seed = base_seed + n * p.batch_size + i
            prompt = p.prompt.replace("{n}", str(n * p.batch_size + i))  # as wildcards would
            title = shared.sd_model.sd_checkpoint_info.title
            size = (p.width, p.height)
            out = _tint(title, seed, size)
            call = {
                "kind": "img2img" if hasattr(p, "init_images") else "txt2img",
                "checkpoint": title,
                "seed": seed,
                "prompt": prompt,
                "size": size,
                "strength": p.denoising_strength,
                "sampler": p.sampler_name,
                "steps": p.steps,
                "override": dict(p.override_settings),
                "mask": getattr(p, "image_mask", None),
                "scripts": p.scripts,
                "inpaint_full_res": getattr(p, "inpaint_full_res", None),
            }
            if hasattr(p, "init_images"):
                init = p.init_images[0].convert("RGB").resize(size)
                blended = Image.blend(init, out, p.denoising_strength)
                mask = getattr(p, "image_mask", None)
                out = (
                    Image.composite(blended, init, mask.convert("L"))
                    if mask is not None
                    else blended
                )
            for hook in on_call:
                hook(call)
            calls.append(call)
            images.append(out)
            seeds.append(seed)
            prompts.append(prompt)
            infotexts.append(create_infotext(p, seed))
            if not p.do_not_save_samples:
                images_module.save_image(
                    out, p.outpath_samples, "", seed, p.prompt, "png", info=infotexts[-1], p=p
                )
        shared.state.nextjob()
    first = 0
    if len(images) > 1 and not p.do_not_save_grid:
        grid = images_module.image_grid(images, p.batch_size)
        images.insert(0, grid)
        first = 1
    res = Processed(
        p,
        images,
        seeds[0] if seeds else -1,
        infotexts[0] if infotexts else "",
        all_prompts=prompts,
        all_seeds=seeds,
        index_of_first_image=first,
        infotexts=([infotexts[0]] if first else []) + infotexts,
    )
    if p.scripts is not None:
        p.scripts.postprocess(p, res)
    return res
