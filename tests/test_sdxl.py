"""SDXL end to end on the built-in tiny-xl: written in the WebUI's SDXL single-file layout,
read by the same loader as a user's file, chained with SD1 passes, cropped at SDXL's own area,
conditioned on size as the WebUI conditions it, and v-prediction files run as v-prediction."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import ByHandWebUI
from PIL import Image

torch = pytest.importorskip("torch")

from diffusers import (  # noqa: E402
    AutoencoderKL,
    EulerAncestralDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402

from lib_multipass import tiny  # noqa: E402
from lib_multipass.backends import diffusers_backend as db  # noqa: E402
from lib_multipass.engine import Job, run_job  # noqa: E402
from lib_multipass.plan import JobContext  # noqa: E402
from lib_multipass.recipe import RecipeError, parse_recipe  # noqa: E402

CTX = JobContext(
    width=64,
    height=64,
    steps=8,
    sampler="Euler a",
    checkpoint="tiny-toon",
    prompt="a lighthouse at dusk",
    negative_prompt="blurry",
)


def arr(img):
    return np.asarray(img.convert("RGB"))


def by_hand(cls, models, name, family):
    config = tiny.write_config_dir(models.parent / f"by-hand-{family}", tiny.architecture(family))
    pipe = cls.from_single_file(
        str(models / f"{name}.safetensors"),
        config=str(config),
        local_files_only=True,
        torch_dtype=torch.float32,
    )
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_tiny_xl_is_read_back_exactly_as_it_was_built(backend, tiny_models):
    """The SDXL single-file writer is the exact inverse of diffusers' reader: every weight of
    every component (two text encoders, size-conditioned UNet, VAE) comes back bit for bit."""
    backend.load_checkpoint("tiny-xl")
    pipe = backend._cache["tiny-xl"][0]
    arch = tiny.architecture("sdxl")
    state = torch.random.get_rng_state()
    torch.manual_seed(tiny.TINY_SEEDS["tiny-xl"])
    built = {
        "unet": UNet2DConditionModel(**arch["unet"]),
        "vae": AutoencoderKL(**arch["vae"]),
        "text_encoder": CLIPTextModel(CLIPTextConfig(**arch["text_encoder"])),
        "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**arch["text_encoder_2"])),
    }
    torch.random.set_rng_state(state)
    for name, model in built.items():
        loaded = getattr(pipe, name).state_dict()
        for key, value in model.state_dict().items():
            if key.endswith("position_ids"):
                continue
            assert torch.equal(value.half().float(), loaded[key].float()), (name, key)
    assert backend.checkpoint_family("tiny-xl") == "sdxl"
    assert backend.describe_file(backend._file("tiny-xl")) == "sdxl"


def test_sd1_base_sdxl_pass_sd1_pass_equals_the_same_three_by_hand(backend, tiny_models):
    recipe = parse_recipe(
        {
            "passes": [
                {"checkpoint": "tiny-xl", "denoising_strength": 0.5},
                {"checkpoint": "tiny-toon", "denoising_strength": 0.75},
            ]
        }
    )
    result = run_job(recipe, Job(CTX, seeds=[21]), backend)
    assert result.complete, result.account()
    assert result.checkpoints_loaded == ["tiny-toon", "tiny-xl", "tiny-toon"]

    # by hand as the WebUI makes them (conftest.ByHandWebUI), the SDXL pass with the WebUI's
    # size conditioning (64, 64), crop (0, 0): 5 of 8 steps at 0.5, 7 of 8 at 0.75
    seed, prompt, negative = [21], ["a lighthouse at dusk"], ["blurry"]
    toon = ByHandWebUI(tiny_models, "tiny-toon")
    xl_pipe = by_hand(StableDiffusionXLPipeline, tiny_models, "tiny-xl", "sdxl")
    (base,) = toon(prompt, negative, seed, steps=8)
    (xl,) = ByHandWebUI(tiny_models, "tiny-xl", xl_pipe)(
        prompt, negative, seed, steps=8, images=[base], strength=0.5
    )
    (last,) = toon(prompt, negative, seed, steps=8, images=[xl], strength=0.75)
    stages = [o.image for o in result.outputs[0]]
    assert np.array_equal(arr(stages[0]), arr(base))
    assert np.array_equal(arr(stages[1]), arr(xl))
    assert np.array_equal(arr(stages[2]), arr(last))


def test_a_crop_pass_on_tiny_xl_works_at_sdxl_area_and_the_crops_aspect(backend):
    recipe = parse_recipe(
        {
            "passes": [
                {
                    "checkpoint": "tiny-xl",
                    "region": "crop",
                    "mask_source": "boxes",
                    "boxes": [[100, 60, 260, 180]],
                    "padding": 0,
                    "mask_blur": 0,
                    "denoising_strength": 0.5,
                },
                {
                    "checkpoint": "tiny-toon",
                    "region": "crop",
                    "mask_source": "boxes",
                    "boxes": [[100, 60, 260, 180]],
                    "padding": 0,
                    "mask_blur": 0,
                },
            ]
        }
    )
    sizes = []
    real = backend.generate

    def spy(requests, on_step):
        sizes.append((backend.current_checkpoint(), requests[0].width, requests[0].height))
        return real(requests, on_step)

    backend.generate = spy
    images = [Image.new("RGB", (400, 300), (90, 120, 150))]
    ctx = dataclasses.replace(CTX, width=400, height=300, steps=2)
    result = run_job(recipe, Job(ctx, images=images, seeds=[1]), backend)
    assert result.complete, result.account()
    (xl_name, w, h), (sd1_name, w1, h1) = sizes
    assert xl_name == "tiny-xl" and sd1_name == "tiny-toon"
    # SDXL: 1024^2 area at the crop's 4:3 aspect; SD1: 512^2 area
    assert abs(w * h - 1024 * 1024) / (1024 * 1024) < 0.02 and w / h == pytest.approx(4 / 3, 0.02)
    assert abs(w1 * h1 - 512 * 512) / (512 * 512) < 0.03 and w1 / h1 == pytest.approx(4 / 3, 0.02)


# A1111 1.10.1 modules/sd_models_xl.py, DiffusionEngine.get_learned_conditioning: for a batch of
# a generation of width x height, "original_size_as_tuple" and "target_size_as_tuple" are both
# [height, width], "crop_coords_top_left" is [opts.sdxl_crop_top, opts.sdxl_crop_left] (0, 0 by
# default), and the negative prompt is conditioned the same way. A detail crop is a generation
# at its working size (inpaint_full_res renders at p.width x p.height).
WEBUI_TABLE = [
    # (what, width, height) -> (original, crop, target) the WebUI passes
    ("whole img2img 1024x1024", 1024, 1024, ((1024, 1024), (0, 0), (1024, 1024))),
    ("whole img2img 832x1216", 832, 1216, ((1216, 832), (0, 0), (1216, 832))),
    ("detail crop working 1152x896", 1152, 896, ((896, 1152), (0, 0), (896, 1152))),
    ("upscaled 1536x1536", 1536, 1536, ((1536, 1536), (0, 0), (1536, 1536))),
]


@pytest.mark.parametrize(("what", "width", "height", "webui"), WEBUI_TABLE)
def test_sdxl_size_conditioning_is_what_the_webui_passes(what, width, height, webui):
    ids = db.sdxl_time_ids(width, height)
    assert (ids[:2], ids[2:4], ids[4:]) == webui


def test_the_runner_passes_that_conditioning_to_sdxl(backend, monkeypatch):
    """The UNet's size ids are the WebUI's for a 96x96 pass: original (96, 96), crop (0, 0),
    target (96, 96), for every row (prompt and negative prompt)."""
    seen = []
    real = UNet2DConditionModel.forward

    def spy(self, *args, **kwargs):
        added = kwargs.get("added_cond_kwargs")
        if added is not None:
            seen.append(added["time_ids"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", spy)
    recipe = parse_recipe({"passes": [{"checkpoint": "tiny-xl", "upscale_by": 1.5}]})
    ctx = dataclasses.replace(CTX, steps=2)
    assert run_job(recipe, Job(ctx, seeds=[3]), backend).complete
    assert seen and all(ids.tolist() == [[96, 96, 0, 0, 96, 96]] * 2 for ids in seen)


def marked_copy(tiny_models, folder, name, markers):
    """tiny-xl with a checkpoint's top-level marker tensors added (NoobAI's v_pred, ztsnr)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_models / "tiny-xl.safetensors"), "pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open API
        meta = fh.metadata()
    for key in markers:
        tensors[key] = torch.tensor([])
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / f"{name}.safetensors"), metadata=meta)


def test_a_v_pred_file_runs_as_v_prediction(tiny_models, tmp_path):
    folder = tmp_path / "more"
    marked_copy(tiny_models, folder, "noob", ["v_pred"])
    marked_copy(tiny_models, folder, "noob-zsnr", ["v_pred", "ztsnr"])
    backend = db.DiffusersBackend([tiny_models, folder], home=tiny_models.parent / "home")
    assert backend.describe_file(backend._file("noob")) == "sdxl v-pred"
    assert backend.describe_file(backend._file("noob-zsnr")) == "sdxl v-pred ztsnr"
    images = {}
    for name in ("tiny-xl", "noob", "noob-zsnr"):
        recipe = parse_recipe({"passes": []})
        ctx = dataclasses.replace(CTX, checkpoint=name, sampler="Euler", steps=4)
        images[name] = run_job(recipe, Job(ctx, seeds=[5]), backend).images[0]
        ctx = dataclasses.replace(ctx, sampler="DDIM")
        images[name, "DDIM"] = run_job(recipe, Job(ctx, seeds=[5]), backend).images[0]
        config = backend._cache[name][0].scheduler.config
        want = "epsilon" if name == "tiny-xl" else "v_prediction"
        assert config.prediction_type == want
        assert bool(config.get("rescale_betas_zero_snr")) == (name == "noob-zsnr")
    # the same weights sampled as v-prediction make another image (no silent epsilon)
    assert not np.array_equal(arr(images["tiny-xl"]), arr(images["noob"]))
    assert not np.array_equal(arr(images["noob"]), arr(images["noob-zsnr"]))
    assert not np.array_equal(arr(images["tiny-xl", "DDIM"]), arr(images["noob", "DDIM"]))


def test_every_sampler_runs_zero_snr_and_edm_is_refused_before_the_job(tiny_models, tmp_path):
    """Every sampler runs as the WebUI's (the timestep ones turn v into noise with the
    timestep's alpha bar), so a zero-terminal-SNR v-prediction file takes any; an EDM one is
    refused by name before anything loads."""
    folder = tmp_path / "more"
    marked_copy(tiny_models, folder, "noob-zsnr", ["v_pred", "ztsnr"])
    marked_copy(tiny_models, folder, "edm", ["edm_vpred.sigma_max"])
    backend = db.DiffusersBackend([tiny_models, folder], home=tiny_models.parent / "home")
    recipe = parse_recipe(
        {"passes": [{"checkpoint": "noob-zsnr", "sampler": "PLMS"}, {"checkpoint": "edm"}]}
    )
    with pytest.raises(RecipeError) as info:
        run_job(recipe, Job(CTX, seeds=[1]), backend)
    text = str(info.value)
    assert "pass 1" not in text
    assert "pass 2, field 'checkpoint'" in text and "EDM v-prediction" in text
    assert backend.disk_loads == {}


def test_sdxl_architecture_has_sdxl_base_sizes():
    """The config a user's SDXL file is read with builds SDXL 1.0's exact parameter counts."""
    arch = db.SDXL_ARCHITECTURE
    with torch.device("meta"):
        counts = {
            "unet": UNet2DConditionModel(**arch["unet"]),
            "vae": AutoencoderKL(**arch["vae"]),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**arch["text_encoder"])),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**arch["text_encoder_2"])),
        }
    numbers = {k: sum(p.numel() for p in m.parameters()) for k, m in counts.items()}
    assert numbers == {
        "unet": 2_567_463_684,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
        "text_encoder_2": 694_659_840,
    }


def test_the_cache_is_bounded_in_bytes_across_families(tiny_models, tmp_path):
    sizes = {}
    roomy = db.DiffusersBackend([tiny_models], home=tiny_models.parent / "home")
    for name in ("tiny-toon", "tiny-xl"):
        roomy.load_checkpoint(name)
        sizes[name] = roomy.cached()[name]
    assert sizes["tiny-xl"] > sizes["tiny-toon"]  # two text encoders count too
    limit = sizes["tiny-xl"] + sizes["tiny-toon"] // 2
    tight = db.DiffusersBackend([tiny_models], home=tiny_models.parent / "home", cache_bytes=limit)
    for name in ("tiny-toon", "tiny-xl", "tiny-toon", "tiny-xl"):
        tight.load_checkpoint(name)
        assert sum(tight.cached().values()) <= max(limit, max(tight.cached().values()))
    assert dict(tight.disk_loads) == {"tiny-toon": 2, "tiny-xl": 2}
