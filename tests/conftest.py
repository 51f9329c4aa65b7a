"""Test set-up: no hub access, a reproducible hypothesis profile, the repo's example folder."""

import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"  # any hidden model-hub access fails loudly
os.environ["TRANSFORMERS_VERBOSITY"] = "error"


class NetworkAccess(AssertionError):
    """A test tried to reach the network; nothing may (models are built from code)."""


_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and (host in ("localhost", "::1") or host.startswith("127.")):
        return _connect(self, address)
    if self.family == getattr(socket, "AF_UNIX", None):
        return _connect(self, address)
    raise NetworkAccess(f"a test tried to connect to {address!r}")


socket.socket.connect = _guarded_connect

settings.register_profile(
    "default", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

ROOT = Path(__file__).resolve().parent.parent
# `python -m lib_multipass` in a test's subprocess runs this tree, not an installed Multipass
# (an editable install points at one checkout; tests run in others, such as worktrees)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)


@pytest.fixture
def examples_dir() -> Path:
    return ROOT / "examples"


def by_hand_pipeline(cls, models: Path, name: str):
    """A plain diffusers pipeline of class `cls` on tiny model `name`, as a user would make it
    by hand (the WebUI's Euler a), to compare Multipass's results with."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler

    from lib_multipass import tiny

    config = tiny.write_config_dir(models.parent / "by-hand-config", tiny.architecture())
    pipe = cls.from_single_file(
        str(models / f"{name}.safetensors"),
        config=str(config),
        local_files_only=True,
        torch_dtype=torch.float32,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class ByHandWebUI:
    """The WebUI's process by hand on a plain diffusers pipeline's parts: the pipeline's own
    prompt encoding, the WebUI's noise for each seed (backends.rng), its sigmas and img2img
    slice (backends.sigmas), k-diffusion's sampler (backends.sampling), the VAE's posterior
    sampled as the WebUI samples it (each image from its seed), decode out truncated to
    bytes, and a masked image put back outside its mask. What Multipass's runs must equal pixel
    for pixel, for batches, passes and crops."""

    def __init__(self, models: Path, name: str, pipe=None) -> None:
        from diffusers import StableDiffusionPipeline

        self.pipe = pipe or by_hand_pipeline(StableDiffusionPipeline, models, name)
        self.xl = getattr(self.pipe, "text_encoder_2", None) is not None

    def __call__(
        self,
        prompts,
        negative_prompts,
        seeds,
        *,
        steps,
        cfg_scale=7.0,
        width=64,
        height=64,
        sampler="Euler a",
        images=None,
        masks=None,
        strength=1.0,
    ):
        import numpy as np
        import torch

        from lib_multipass.backends import rng, sampling
        from lib_multipass.backends import sigmas as S
        from lib_multipass.backends.conditioning import Conds

        pipe = self.pipe
        scale = pipe.vae.config.scaling_factor
        with torch.inference_mode():
            pooled = unpooled = time_ids = None
            if self.xl:
                cond, uncond, pooled, unpooled = pipe.encode_prompt(
                    list(prompts), None, "cpu", 1, True, list(negative_prompts)
                )
                time_ids = torch.tensor([height, width, 0, 0, height, width], dtype=torch.float32)
            else:
                cond, uncond = pipe.encode_prompt(
                    list(prompts), "cpu", 1, True, list(negative_prompts)
                )
            model = S.ModelSigmas.from_config(pipe.scheduler.config)
            xl = self.xl
            noise = rng.ImageNoise((4, height // 8, width // 8), seeds)
            init = mask = None
            if images is None:
                levels = S.sampler_sigmas(sampler, "", steps, model, xl=xl)
            else:
                levels = S.img2img_sigmas(sampler, "", steps, strength, model, xl=xl)
                means, stds = [], []
                for image in images:
                    x = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
                    x = torch.from_numpy(np.moveaxis(x, 2, 0))[None] * 2 - 1
                    dist = pipe.vae.encode(x).latent_dist
                    means.append(dist.mean)
                    stds.append(dist.std)
                # the WebUI's posterior sample: torch's global generator, seeded by the seed
                # of the batch before, which in a one-image job is the image's own
                init = torch.cat(
                    [
                        m + s * torch.randn(m.shape, generator=torch.Generator().manual_seed(k))
                        for m, s, k in zip(means, stds, seeds, strict=True)
                    ]
                )
                init = init * scale
            if masks is not None:
                rows = []
                for m in masks:
                    small = m.convert("L").convert("RGB").resize((width // 8, height // 8))
                    keep = 1 - np.around(np.asarray(small, dtype=np.float32)[:, :, 0] / 255)
                    rows.append(torch.from_numpy(keep)[None, None].repeat(1, 4, 1, 1))
                mask = torch.cat(rows)
            denoiser = sampling.Denoiser(
                pipe.unet,
                model,
                lambda k: Conds(cond, uncond, pooled, unpooled),
                cfg_scale,
                time_ids=time_ids,
                init_latent=init,
                mask=mask,
            )
            out = sampling.sample(
                sampler, denoiser, noise.next(), levels, noise.next, lambda k: None, init
            )
            made = []
            for k in range(out.shape[0]):
                x = pipe.vae.decode(out[k : k + 1] / scale).sample[0]
                x = torch.clamp((x + 1) / 2, 0, 1)
                made.append(
                    Image.fromarray((255.0 * np.moveaxis(x.numpy(), 0, 2)).astype(np.uint8))
                )
        if masks is None:
            return made
        return [_overlay(a, b, m) for a, b, m in zip(made, images, masks, strict=True)]


def _overlay(made, init, mask):
    """The WebUI's overlay (processing.py): the init image pasted into a premultiplied RGBa
    image through the inverted, doubled mask, alpha-composited over what was made."""
    import numpy as np

    doubled = np.clip(np.asarray(mask.convert("L"), dtype=np.float32) * 2, 0, 255)
    masked = Image.new("RGBa", made.size)
    masked.paste(
        init.convert("RGBA").convert("RGBa"), mask=Image.fromarray(255 - doubled.astype(np.uint8))
    )
    out = made.convert("RGBA")
    out.alpha_composite(masked.convert("RGBA"))
    return out.convert("RGB")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """The built-in tiny checkpoints, built once per test session."""
    pytest.importorskip("torch")
    from lib_multipass.tiny import ensure_tiny_models

    return ensure_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def backend(tiny_models, tmp_path):
    """A fresh diffusers backend (empty RAM cache, zero counters) over the tiny models."""
    from lib_multipass.backends.diffusers_backend import DiffusersBackend

    return DiffusersBackend([tiny_models], home=tiny_models.parent / "home")


def misshapen_copy(tiny_models, path):
    """A whole, well-formed checkpoint whose weights do not fit its architecture: it passes
    every check made before the job and fails when loaded, as a broken merge would."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_models / "tiny-toon.safetensors"), "pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open API
        meta = fh.metadata()
    key = next(k for k in tensors if k.endswith("out.2.weight"))
    tensors[key] = tensors[key][:, :2].contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
