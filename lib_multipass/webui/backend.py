"""The WebUI backend: passes run as nested img2img jobs through `modules.processing`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..checkpoints import checkpoint_problem, family_or_default
from ..controlnet import model_family
from ..geometry import Size
from ..plan import Run
from ..protocol import Cancelled, Control, SampleRequest, Skipped, StepCallback
from ..recipe import Problem, where_pass
from . import compat


def _shared() -> Any:
    return compat.host_module("modules.shared")


def _on_latent_grid(args: dict[str, Any], factor: int) -> dict[str, Any]:
    """A nested job's args with its size rounded up to whole latent cells of `factor` pixels
    (its init images and mask resized to it); unchanged where it is on the grid already."""
    w, h = args["width"], args["height"]
    size = (-(-w // factor) * factor, -(-h // factor) * factor)
    if size == (w, h):
        return args
    out = dict(args, width=size[0], height=size[1])
    out["init_images"] = [i.resize(size, Image.LANCZOS) for i in args["init_images"]]
    if args.get("mask") is not None:
        out["mask"] = args["mask"].resize(size, Image.NEAREST)
    return out


class WebUIControl(Control):
    """Interrupt and Skip as the WebUI's buttons set them."""

    def should_stop(self) -> bool:
        state = _shared().state
        return bool(state.interrupted or getattr(state, "stopping_generation", False))

    def should_skip(self) -> bool:
        return bool(_shared().state.skipped)

    def clear_skip(self) -> None:
        _shared().state.skipped = False


def _listed(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"one of {shown}{', ...' if len(names) > limit else ''}" if names else "(none listed)"


class WebUIBackend:
    """Checkpoints, sampling and upscaling through the host WebUI.

    Call `close()` when the job is done: it puts back the user's VAE and loading parameters.
    """

    def __init__(
        self,
        outpath_samples: str = "",
        outpath_grids: str = "",
        inherit: dict[str, Any] | None = None,
        scripts: compat.JobScripts | None = None,
    ) -> None:
        self.outpath_samples = outpath_samples
        self.outpath_grids = outpath_grids
        self.inherit = dict(inherit or {})  # job fields nested passes keep (compat.inherited)
        self.scripts = scripts  # the job's scripts: those chosen run in passes, and ControlNet
        self._families: dict[str, str] = {}
        self._file_problems: dict[str, str | None] = {}
        self._models: compat.PassModels | None = None

    @property
    def models(self) -> compat.PassModels:
        if self._models is None:
            self._models = compat.PassModels()
        return self._models

    def close(self) -> None:
        if self._models is not None:
            self._models.restore()

    def current_checkpoint(self) -> str:
        info = compat.current_checkpoint()
        return compat.checkpoint_name(info) if info is not None else ""

    def checkpoint_id(self, name: str) -> str:
        info = compat.find_checkpoint(name) if name else compat.current_checkpoint()
        return str(info.filename) if info is not None else ""

    def load_checkpoint(self, name: str) -> None:
        info = compat.find_checkpoint(name)
        if info is None:
            raise LookupError(f"checkpoint {name!r} is not in the WebUI's list")
        if str(info.filename).lower().endswith(".ckpt") and not compat.allow_pickles():
            raise PermissionError(
                f"checkpoint {name!r} is a pickle-based .ckpt file; start the WebUI with "
                "--multipass-allow-ckpt to let Multipass load it"
            )
        self.models.switch(info)

    def checkpoint_family(self, name: str) -> str:
        info = compat.find_checkpoint(name) if name else compat.current_checkpoint()
        if info is None:
            return "sd1"
        loaded = getattr(getattr(_shared(), "sd_model", None), "sd_checkpoint_info", None)
        if loaded is not None and str(loaded.filename) == str(info.filename):
            family = compat.loaded_family()  # the host knows best what it loaded
            if family:
                return family
        key = str(info.filename)
        if key not in self._families:
            self._families[key] = family_or_default(key)
        return self._families[key]

    def _file_problem(self, filename: str) -> str | None:
        """What is wrong with a .safetensors file's structure (header only), if anything."""
        if not filename.lower().endswith(".safetensors"):
            return None
        if filename not in self._file_problems:
            self._file_problems[filename] = checkpoint_problem(filename)
        return self._file_problems[filename]

    def check_run(self, run: Run) -> list[Problem]:
        where = where_pass(run.pass_index)
        problems = []
        if run.checkpoint:
            info = compat.find_checkpoint(run.checkpoint)
            if info is None:
                allowed = _listed(compat.checkpoint_titles()) + " (a title, name or hash)"
                problems.append(Problem(where, "checkpoint", run.checkpoint, allowed))
            elif str(info.filename).lower().endswith(".ckpt") and not compat.allow_pickles():
                allowed = "a .safetensors checkpoint (.ckpt needs --multipass-allow-ckpt)"
                problems.append(Problem(where, "checkpoint", run.checkpoint, allowed))
            elif problem := self._file_problem(str(info.filename)):
                # a truncated or fake file would fail mid-job; named before anything runs
                allowed = f"a usable checkpoint ({Path(info.filename).name}: {problem})"
                problems.append(Problem(where, "checkpoint", run.checkpoint, allowed))
        if compat.find_sampler(run.sampler) is None:
            problems.append(Problem(where, "sampler", run.sampler, _listed(compat.sampler_names())))
        labels = compat.scheduler_labels()
        if run.scheduler and labels and not compat.find_scheduler(run.scheduler):
            problems.append(Problem(where, "scheduler", run.scheduler, _listed(labels)))
        if run.upscaler is not None and run.upscaler not in compat.upscaler_names():
            allowed = _listed(compat.upscaler_names())
            problems.append(Problem(where, "upscaler", run.upscaler, allowed))
        if run.vae and run.vae not in compat.vae_names():
            problems.append(Problem(where, "vae", run.vae, _listed(compat.vae_names())))
        encoders = compat.text_encoder_names()
        if run.text_encoders and encoders is None:
            allowed = "[] (text encoders are chosen per pass on Forge 2 and Neo only)"
            problems.append(Problem(where, "text_encoders", list(run.text_encoders), allowed))
        elif run.text_encoders:
            unknown = [n for n in run.text_encoders if n not in encoders]
            if unknown:
                allowed = "names from " + _listed(encoders)
                problems.append(Problem(where, "text_encoders", unknown, allowed))
        return problems + self._controlnet_problems(run, where)

    def _controlnet_problems(self, run: Run, where: str) -> list[Problem]:
        """A pass's ControlNet units against the host's ControlNet: there at all, its models
        and preprocessors, its unit count, and each model's family against the pass's."""
        if not run.controlnet:
            return []
        host = compat.controlnet_host()
        if host is None:
            allowed = (
                "'' here: this WebUI has no ControlNet (on A1111 install sd-webui-controlnet; "
                "reForge, Forge 2 and Neo have it built in)"
            )
            return [Problem(where, u.field("model"), u.model, allowed) for u in run.controlnet]
        problems = []
        count = compat.controlnet_unit_count()
        if len(run.controlnet) > count:
            u = run.controlnet[-1]
            allowed = f"at most {count} units (the host's ControlNet unit count setting)"
            problems.append(Problem(where, u.field("model"), u.model, allowed))
        family = self.checkpoint_family(run.checkpoint)
        modules = host.modules()
        for u in run.controlnet:
            model = host.find_model(u.model)
            if model is None:
                allowed = _listed(host.models()) + f" (a model {host.what} lists)"
                problems.append(Problem(where, u.field("model"), u.model, allowed))
            else:
                made_for = model_family(host.model_file(model) or "")
                if made_for and family and made_for != family:
                    on = repr(run.checkpoint) if run.checkpoint else "the current checkpoint"
                    allowed = (
                        f"a ControlNet model for {family} checkpoints: {u.model!r} is for "
                        f"{made_for}, and the pass runs on {on} ({family})"
                    )
                    problems.append(Problem(where, u.field("model"), u.model, allowed))
            if u.module and host.module_for(u.module) is None:
                allowed = _listed(modules) + " or '' (no preprocessor)"
                problems.append(Problem(where, u.field("module"), u.module, allowed))
        return problems

    def generate(
        self, requests: Sequence[SampleRequest], on_step: StepCallback
    ) -> list[Image.Image]:
        """One nested img2img for the batch, as the host's own batched img2img: batch_size
        images, each with its seed, prompts and init image. A nested job has one inpaint mask,
        so crops with different masks (detections) go in one job per mask."""
        groups: dict[Any, list[int]] = {}
        for k, r in enumerate(requests):
            key = None if r.mask is None else (r.mask.size, r.mask.tobytes())
            if r.controlnet:  # the host's ControlNet takes one control image per job
                key = ("controlnet", k)
            groups.setdefault(key, []).append(k)
        if len(groups) > 1:
            out: list[Image.Image | None] = [None] * len(requests)
            for members in groups.values():
                made = self.generate([requests[k] for k in members], on_step)
                for k, image in zip(members, made, strict=True):
                    out[k] = image
            return [image for image in out if image is not None]
        return self._nested(requests, on_step)

    def _nested(
        self, requests: Sequence[SampleRequest], on_step: StepCallback
    ) -> list[Image.Image]:
        processing = compat.host_module("modules.processing")
        shared = _shared()
        info = compat.current_checkpoint()
        first = requests[0]
        one = len(requests) == 1
        # no sd_model: every host's p.sd_model is shared.sd_model (a property whose setter
        # does nothing, processing.py:262-268), and arguments naming the model loaded before
        # the pass would keep it alive beside the pass's (Forge frees one nothing else holds)
        args: dict[str, Any] = {
            "outpath_samples": self.outpath_samples,
            "outpath_grids": self.outpath_grids,
            "prompt": first.prompt if one else [r.prompt for r in requests],
            "negative_prompt": first.negative_prompt
            if one
            else [r.negative_prompt for r in requests],
            "styles": [],
            "seed": first.seed if one else [r.seed for r in requests],
            "subseed": -1,
            "subseed_strength": 0,
            "sampler_name": first.sampler,
            "batch_size": len(requests),
            "n_iter": 1,
            "steps": first.steps,
            "cfg_scale": first.cfg_scale,
            "width": first.width,
            "height": first.height,
            "init_images": [r.image for r in requests],
            "mask": first.mask,
            "mask_blur": 0,
            "inpainting_fill": 1,  # original content: the crop itself is the starting point
            "inpaint_full_res": False,  # Multipass has already cropped
            "denoising_strength": first.strength,
            "do_not_save_samples": True,
            "do_not_save_grid": True,
            # the pass's models come from PassModels, not settings; its clip skip is an
            # override the host's process_images applies and puts back (every host's name)
            "override_settings": compat.clip_skip_override(first.clip_skip),
            "override_settings_restore_afterwards": True,
        }
        cls = processing.StableDiffusionProcessingImg2Img
        fields = {f.name for f in dataclasses.fields(cls)}
        if first.scheduler and "scheduler" in fields:
            args["scheduler"] = first.scheduler
        args |= {k: v for k, v in self.inherit.items() if k in fields}
        units = []
        if first.controlnet:
            host = compat.controlnet_host()
            if host is None:
                raise compat.HostError("this WebUI has no ControlNet")
            units = [host.unit(u, first.image) for u in first.controlnet]
        scripts = self.scripts or compat.JobScripts(None, (), ())
        p = None
        try:
            with self.models.running(info, first.vae, first.text_encoders):
                # the pass's model decides its latent grid (the newest Neo's opt_f follows
                # its VAE): a size off that grid is sampled on it and resized back
                compat.load_pass_model()
                args = _on_latent_grid(args, compat.latent_factor())
                p = cls(**args)
                p.scripts, p.script_args = scripts.for_pass(units)
                compat.before_nested_job()
                processed = processing.process_images(p)
        finally:
            if p is not None and hasattr(p, "close"):
                p.close()
        del p  # nothing of ours keeps the model alive past the pass
        state = shared.state
        if state.interrupted or getattr(state, "stopping_generation", False):
            raise Cancelled
        if state.skipped:
            raise Skipped
        ran = getattr(getattr(shared, "sd_model", None), "sd_checkpoint_info", None)
        if info is not None and ran is not None and str(ran.filename) != str(info.filename):
            raise RuntimeError(
                f"the WebUI ran this pass on {ran.title!r} instead of {info.title!r} "
                "(was the checkpoint changed while the job ran?)"
            )
        on_step(first.steps, first.steps)
        first_image = getattr(processed, "index_of_first_image", 0)
        images = list(processed.images[first_image : first_image + len(requests)])
        wanted = (first.width, first.height)
        images = [i if i.size == wanted else i.resize(wanted, Image.LANCZOS) for i in images]
        if len(images) != len(requests):
            raise RuntimeError(
                f"the WebUI returned {len(images)} images for a Multipass pass of {len(requests)}"
            )
        return images

    def upscale(self, image: Image.Image, size: Size, upscaler: str) -> Image.Image:
        images = compat.host_module("modules.images")
        return images.resize_image(0, image, size[0], size[1], upscaler_name=upscaler)
