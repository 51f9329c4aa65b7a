"""StableDiffusionProcessing with the hosts' field names, and process_images with each flavour's
real control flow where Multipass touches it (A1111 1.10.1 processing.py:819-1148, reForge
:898-1265, Forge 2 :799-1156, Neo :792-1169): overrides, which checkpoint gets (re)loaded and
when, hook order, infotext, Processed and its js(). "Sampling" tints each image with a colour
of the loaded checkpoint (its file), VAE and modules, and the seed."""

import hashlib
import json
import os
from types import SimpleNamespace
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from modules import FLAVOUR, FORGE
from modules import images as images_module
from modules import sd_models, sd_vae, shared

calls = []  # every sampling call: dict(kind, checkpoint, seed, prompt, strength, size, ...)
on_call = []  # test hooks, each called with the call dict before it returns (may raise)
need_global_unload = False
opt_C = 4
opt_f = 8  # the latent's downscale; the newest Neo sets it from the loaded VAE's ratio


def quote(text):
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
    if FORGE:
        distilled_cfg_scale: float = 3.5

    cached_c = [None, None, None]
    cached_uc = [None, None, None]

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

    def get_token_merging_ratio(self, for_hr=False):
        return shared.opts.token_merging_ratio

    def clear_prompt_cache(self):
        self.cached_c = [None, None, None]
        self.cached_uc = [None, None, None]
        StableDiffusionProcessing.cached_c = [None, None, None]
        StableDiffusionProcessing.cached_uc = [None, None, None]

    sampler = None

    def close(self):
        # processing.py:384-390 (A1111 1.10.1, Forge 2): the job lets go of its sampler
        self.sampler = None


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
    if FORGE:
        hr_additional_modules: list = None


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
    def __init__(self, p, images_list, seed=-1, info="", subseed=None, all_prompts=None,
                 all_negative_prompts=None, all_seeds=None, all_subseeds=None,
                 index_of_first_image=0, infotexts=None, comments="", extra_images_list=()):
        self.images = images_list
        self.extra_images = list(extra_images_list)
        self.prompt = p.prompt
        self.negative_prompt = p.negative_prompt
        self.seed = seed
        self.subseed = subseed
        self.subseed_strength = p.subseed_strength
        self.info = info
        self.comments = "".join(f"{comment}\n" for comment in p.comments)
        self.width = p.width
        self.height = p.height
        self.sampler_name = p.sampler_name
        self.cfg_scale = p.cfg_scale
        self.steps = p.steps
        self.batch_size = p.batch_size
        self.denoising_strength = getattr(p, "denoising_strength", None)
        self.extra_generation_params = p.extra_generation_params
        self.index_of_first_image = index_of_first_image
        self.styles = p.styles
        self.all_prompts = all_prompts or [p.prompt]
        self.all_negative_prompts = all_negative_prompts or [p.negative_prompt]
        self.all_seeds = all_seeds or [seed]
        self.all_subseeds = all_subseeds or [subseed]
        self.infotexts = infotexts or [info] * len(images_list)
        self.sd_model_name = shared.sd_model.sd_checkpoint_info.name_for_extra
        self.sd_model_hash = shared.sd_model.sd_model_hash

    def js(self):
        obj = {
            "prompt": self.all_prompts[0],
            "all_prompts": self.all_prompts,
            "negative_prompt": self.all_negative_prompts[0],
            "all_negative_prompts": self.all_negative_prompts,
            "seed": self.seed,
            "all_seeds": self.all_seeds,
            "subseed": self.subseed,
            "all_subseeds": self.all_subseeds,
            "subseed_strength": self.subseed_strength,
            "width": self.width,
            "height": self.height,
            "sampler_name": self.sampler_name,
            "cfg_scale": self.cfg_scale,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "restore_faces": None,
            "face_restoration_model": None,
            "sd_model_name": self.sd_model_name,
            "sd_model_hash": self.sd_model_hash,
            "sd_vae_name": None,
            "sd_vae_hash": None,
            "seed_resize_from_w": -1,
            "seed_resize_from_h": -1,
            "denoising_strength": self.denoising_strength,
            "extra_generation_params": self.extra_generation_params,
            "index_of_first_image": self.index_of_first_image,
            "infotexts": self.infotexts,
            "styles": self.styles,
            "job_timestamp": "20261126000000",
            "clip_skip": 1,
            "is_using_inpainting_conditioning": False,
            "version": "stub",
        }
        return json.dumps(obj, default=lambda o: None)


def create_infotext(p, seed, prompt):
    params = {
        "Steps": p.steps,
        "Sampler": p.sampler_name,
        "CFG scale": p.cfg_scale,
        "Seed": seed,
        "Size": f"{p.width}x{p.height}",
        "Model hash": shared.sd_model.sd_model_hash,
        "Model": shared.sd_model.sd_checkpoint_info.name_for_extra,
        **p.extra_generation_params,
        "Version": "stub",
    }
    line = ", ".join(f"{k}: {quote(v)}" for k, v in params.items() if v is not None)
    negative = p.negative_prompt[0] if isinstance(p.negative_prompt, list) else p.negative_prompt
    return f"{prompt}\nNegative prompt: {negative}\n{line}"



def _tint(checkpoint_file, vae, seed, size):
    key = f"{os.path.basename(checkpoint_file)}|{vae}|{seed}"
    return Image.new("RGB", size, tuple(hashlib.sha256(key.encode()).digest()[:3]))


TIMESTEP_SAMPLERS = ("DDIM", "PLMS", "UniPC")  # sd_samplers_timesteps.py samplers_data_timesteps
on_step = []  # test hooks, each called after every sampling step (as a poll of the progress)


def _steps_run(p, steps, t_enc=None):
    """The steps (callbacks, each one console update) the host's sampler takes: k-diffusion
    all `steps` (img2img t_enc + 1: sd_samplers_kdiffusion.py sample_img2img, sigmas
    [steps - t_enc - 1:]); the timestep samplers walk range(0, 1000, 1000 // steps)
    (sd_samplers_timesteps.py:84-93 get_timesteps; img2img timesteps[:t_enc], :102), DDIM and
    PLMS one step per timestep after the first (sd_samplers_timesteps_impl.py:22, :109:
    trange(len(timesteps) - 1)), UniPC one a timestep (UniPCCFG.after_update)."""
    if p.sampler_name not in TIMESTEP_SAMPLERS:
        return steps if t_enc is None else t_enc + 1
    timesteps = len(range(0, 1000, 1000 // steps)) if t_enc is None else t_enc
    return timesteps if p.sampler_name == "UniPC" else max(timesteps - 1, 0)


def _img2img_setup(p, steps=None):
    """sd_samplers_common.py setup_img2img_steps: (steps, t_enc)."""
    if shared.opts.data.get("img2img_fix_steps") or steps is not None:
        requested = steps or p.steps
        d = p.denoising_strength
        return (int(requested / min(d, 0.999)) if d > 0 else 0), requested - 1
    return p.steps, int(min(p.denoising_strength, 0.999) * p.steps)


def _sample_steps(p, hires=False):
    """The sampler's progress (sd_samplers_common.py:271-278): sampling_steps is what
    launch_sampling was given (txt2img steps, img2img t_enc + 1), the steps that run update
    the console's total bar (callback_state). A batch is sampled once: only its first image
    steps. `hires`: the hires fix's second pass, img2img over hr_second_pass_steps or steps
    (processing.py sample_hr_pass: sample_img2img(..., steps=self.hr_second_pass_steps or
    self.steps))."""
    if getattr(p, "_stub_sampled", None) == shared.state.job_no:
        return
    p._stub_sampled = shared.state.job_no
    if hires:
        _, t_enc = _img2img_setup(p, p.hr_second_pass_steps or p.steps)
        launched, run = t_enc + 1, _steps_run(p, p.steps, t_enc)
    elif hasattr(p, "init_images"):
        _, t_enc = _img2img_setup(p)
        launched, run = t_enc + 1, _steps_run(p, p.steps, t_enc)
    else:
        launched, run = p.steps, _steps_run(p, p.steps)
    shared.state.sampling_steps = launched
    for step in range(run):
        shared.state.sampling_step = step
        if hasattr(shared, "total_tqdm"):  # the newest Neo has none
            shared.total_tqdm.update()
        for hook in on_step:
            hook()


def _refine_job_count(p):
    """Hires fix counts its second pass before the job's count is set (A1111 1.10.1
    processing.py:1290-1299 in txt2img init, Forge 2 :1325-1334, Neo :1338-1347): once a
    request, the console total becomes (steps + hires steps) * job_count and the count doubles."""
    state = shared.state
    if not getattr(p, "enable_hr", False) or state.processing_has_refined_job_count:
        return
    if state.job_count == -1:
        state.job_count = p.n_iter
    total_steps = (p.steps + (p.hr_second_pass_steps or p.steps)) * state.job_count
    if hasattr(shared, "total_tqdm"):
        shared.total_tqdm.updateTotal(total_steps)
    state.job_count = state.job_count * 2
    state.processing_has_refined_job_count = True


def manage_model_and_prompt_cache(p):
    global need_global_unload
    p.sd_model, just_reloaded = sd_models.forge_model_reload()
    if need_global_unload:
        p.clear_prompt_cache()
    need_global_unload = False


def process_images(p):
    if p.scripts is not None:
        p.scripts.before_process(p)
    stored_opts = {k: shared.opts.data[k] for k in p.override_settings if k in shared.opts.data}
    try:
        if sd_models.checkpoint_aliases.get(p.override_settings.get("sd_model_checkpoint")) is None:
            p.override_settings.pop("sd_model_checkpoint", None)
            if not FORGE:
                sd_models.reload_model_weights()
        if FORGE:
            from modules.sysinfo import set_config

            set_config(p.override_settings, is_api=True, run_callbacks=False, save_config=False)
            manage_model_and_prompt_cache(p)
        else:
            for k, v in p.override_settings.items():
                shared.opts.set(k, v, is_api=True, run_callbacks=False)
                if k == "sd_model_checkpoint":
                    sd_models.reload_model_weights()
                if k == "sd_vae":
                    sd_vae.reload_vae_weights()
            if FLAVOUR == "a1111":
                sd_models.apply_token_merging(p.sd_model, p.get_token_merging_ratio())
        return process_images_inner(p)
    finally:
        if p.override_settings_restore_afterwards:
            if FORGE:
                from modules.sysinfo import set_config

                set_config(stored_opts, save_config=False)
            else:
                for k, v in stored_opts.items():
                    setattr(shared.opts, k, v)
                    if k == "sd_vae":
                        sd_vae.reload_vae_weights()


def process_images_inner(p):
    if p.scripts is not None:
        p.scripts.process(p)
    _refine_job_count(p)  # in p.init, before the count (A1111 processing.py:921-930)
    if shared.state.job_count == -1:  # A1111 processing.py:929, Forge :921
        shared.state.job_count = p.n_iter
    images, seeds, prompts, infotexts = [], [], [], []
    base_seed = p.seed if p.seed != -1 else 1000
    total = p.n_iter * p.batch_size
    # list seeds and prompts as the hosts take them (A1111 processing.py:901-909, setup_prompts):
    # with a variation strength every image has the seed, and variation seeds go + 1
    step = 1 if p.subseed_strength == 0 else 0
    all_seeds = list(p.seed) if isinstance(p.seed, list) else [base_seed + x * step for x in range(total)]
    base_subseed = p.subseed if p.subseed != -1 else 2000
    all_subseeds = [base_subseed + x for x in range(total)]
    all_prompts = (
        list(p.prompt)
        if isinstance(p.prompt, list)
        else [p.prompt.replace("{n}", str(x)) for x in range(total)]  # as wildcards would
    )
    for n in range(p.n_iter):
        if shared.state.interrupted or shared.state.stopping_generation:
            break
        if FORGE:
            sd_models.forge_model_reload()  # model can be changed for example by refiner
        else:
            sd_models.reload_model_weights()  # model can be changed for example by refiner
        if p.scripts is not None:  # Forge 2 processing.py:960, after the job count is set (:921)
            batch = slice(n * p.batch_size, (n + 1) * p.batch_size)
            p.scripts.process_batch(
                p,
                batch_number=n,
                prompts=all_prompts[batch],
                seeds=all_seeds[batch],
                subseeds=all_subseeds[batch],
            )
        if FLAVOUR == "reforge":  # processing.py:1065, no None check
            next((x for x in p.scripts.alwayson_scripts if x.name == "advanced model sampling"), None)
        for i in range(p.batch_size):
            seed = all_seeds[n * p.batch_size + i]
            prompt = all_prompts[n * p.batch_size + i]
            model = shared.sd_model
            title = model.sd_checkpoint_info.title
            vae = model.modules if FORGE else sd_vae.get_loaded_vae_name()
            size = (p.width // opt_f * opt_f, p.height // opt_f * opt_f)  # whole latents
            out = _tint(model.sd_checkpoint_info.filename, vae, seed, size)
            _sample_steps(p)
            if getattr(p, "enable_hr", False) and i == 0:  # the batch's second pass
                shared.state.nextjob()  # sample_hr_pass (A1111 processing.py:1425)
                _sample_steps(p, hires=True)
            # the sampler the job keeps until it is closed holds the model it sampled with
            # (Forge 2 sd_samplers_kdiffusion.py:59-79: CFGDenoiserKDiffusion.inner_model, a
            # ForgeScheduleLinker whose inner_model is shared.sd_model)
            p.sampler = SimpleNamespace(model_wrap=SimpleNamespace(inner_model=model))
            call = {
                "job_no": shared.state.job_no,
                "job_count": shared.state.job_count,
                "kind": "img2img" if hasattr(p, "init_images") else "txt2img",
                "checkpoint": title,
                "file": os.path.basename(model.sd_checkpoint_info.filename),
                "vae": vae,
                "setting": shared.opts.data.get("sd_model_checkpoint"),
                "seed": seed,
                "subseed": all_subseeds[n * p.batch_size + i],
                "subseed_strength": p.subseed_strength,
                "prompt": prompt,
                "size": size,
                "strength": p.denoising_strength,
                "sampler": p.sampler_name,
                "steps": p.steps,
                "override": dict(p.override_settings),
                # what the text encoder reads while this job samples: the setting, with the
                # job's override applied (A1111 sd_hijack_clip.py:357, Forge processing.py:472)
                "clip_skip": shared.opts.CLIP_stop_at_last_layers,
                "mask": getattr(p, "image_mask", None),
                "batch": p.batch_size,

                "scripts": p.scripts,
                "inpaint_full_res": getattr(p, "inpaint_full_res", None),
                # what the host's ControlNet read from p in its process() (stand-in)
                "controlnet": list(getattr(p, "stub_controlnet", [])),
            }
            if hasattr(p, "init_images"):
                init = p.init_images[i if len(p.init_images) > 1 else 0].convert("RGB").resize(size)
                call["init"] = init
                blended = Image.blend(init, out, p.denoising_strength)
                mask = getattr(p, "image_mask", None)
                out = Image.composite(blended, init, mask.convert("L")) if mask is not None else blended
            del model  # the job's own frame holds no model past its image (its sampler does)
            for hook in on_call:
                hook(call)
            calls.append(call)
            images.append(out)
            seeds.append(seed)
            prompts.append(prompt)
            infotexts.append(create_infotext(p, seed, prompt))
            if not p.do_not_save_samples:
                images_module.save_image(out, p.outpath_samples, "", seed, p.prompt, "png", info=infotexts[-1], p=p)
        shared.state.nextjob()
    first = 0
    if len(images) > 1 and not p.do_not_save_grid and shared.opts.return_grid:
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
