"""The WebUI's noise and sigmas headless: initial noise per seed (CPU and NV sources, variation
seeds, batches), the checkpoint's sigmas and every schedule type, against numbers taken from
A1111 1.10.1's own code (tests/data/a1111_noise.py says how), and their shape as properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_multipass.backends import rng, sampling, timesteps
from lib_multipass.backends import sigmas as S
from lib_multipass.backends.rng import encode_seeds
from lib_multipass.schedule import img2img_steps, timestep_grid
from tests.data.a1111_noise import REF, SAMPLED, TIMESTEP_SAMPLED


def flat(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.flatten().tolist()]


def close(got: list[float], want: list[float], tol: float = 1e-6) -> bool:
    return len(got) == len(want) and all(abs(a - b) <= tol for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_initial_and_sampler_noise_are_the_webuis(source: str) -> None:
    noise = rng.ImageNoise((4, 8, 8), [1234, 1235], source=source)
    first, second = noise.next(), noise.next()
    assert first.shape == (2, 4, 8, 8) and first.dtype == torch.float32
    assert close(flat(first[:, :, 0, :4]), REF[f"{source}_first"])
    assert close(flat(second[:, :, 0, :4]), REF[f"{source}_second"])


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_variation_seeds_are_the_webuis(source: str) -> None:
    noise = rng.ImageNoise(
        (4, 8, 8), [77, 77], subseeds=[5, 6], subseed_strength=0.3, source=source
    )
    assert close(flat(noise.next()[:, :, 0, :4]), REF[f"{source}_subseed"])


def test_nv_source_is_cudas_numbers() -> None:
    """rng_philox.py's own example: Generator(0).randn((3, 4)) is CUDA's torch.randn for seed 0
    (the example's numbers, within float32's last digits)."""
    want = [-0.92466259, -0.42534415, -2.6438457, 0.14518388]
    assert close([float(v) for v in rng.PhiloxNormal(0).randn((3, 4))[0]], want, 1e-6)


def test_an_image_is_the_same_alone_or_in_a_batch() -> None:
    batch = rng.ImageNoise((4, 6, 5), [10, 11, 12])
    alone = rng.ImageNoise((4, 6, 5), [11])
    assert torch.equal(batch.next()[1], alone.next()[0])
    assert torch.equal(batch.next()[1], alone.next()[0])  # the ancestral noise too


def test_gpu_source_on_the_cpu_is_the_cpu_numbers() -> None:
    """As in the WebUI on a machine without a GPU: "GPU" draws on the model's device."""
    a = rng.ImageNoise((4, 8, 8), [3], source="GPU", device="cpu").next()
    assert torch.equal(a, rng.ImageNoise((4, 8, 8), [3], source="CPU").next())


def test_seeds_per_image_follow_processing_py() -> None:
    assert rng.image_seeds(100, 3) == [100, 101, 102]
    assert rng.image_seeds(100, 3, subseed=7, strength=0.5) == [100, 100, 100]
    assert rng.image_subseeds(7, 3) == [7, 8, 9]


def test_an_unknown_source_is_named() -> None:
    with pytest.raises(ValueError, match="'TPU' is not one of CPU, GPU, NV"):
        rng.Generator(1, "TPU")


MODEL = S.ModelSigmas(S.alphas_cumprod())


def test_the_models_sigmas_are_the_webuis() -> None:
    assert MODEL.sigma_min == pytest.approx(REF["sigma_min"], abs=1e-7)
    assert MODEL.sigma_max == pytest.approx(REF["sigma_max"], abs=1e-6)
    t = MODEL.sigma_to_t(torch.tensor([0.03, 0.5, 1.0, 3.3, 14.6]))
    assert close(flat(t), REF["sigma_to_t"], 1e-4)
    for n in (7, 20):
        assert close(flat(MODEL.uniform(n)), REF[f"Automatic_{n}"])


@pytest.mark.parametrize("label", list(S.SCHEDULE_TYPES))
@pytest.mark.parametrize("n", [1, 2, 7, 20])
def test_every_schedule_type_is_the_webuis(label: str, n: int) -> None:
    got = flat(S.SCHEDULE_TYPES[label].make(n, MODEL, False))
    assert close(got, REF[f"{label}_{n}"], 1e-5), (label, n)


def test_automatic_is_the_samplers_own_and_some_drop_the_next_to_last_sigma() -> None:
    assert S.schedule_label("DPM++ 2M", "Automatic") == "Karras"
    assert S.schedule_label("DPM++ 2M", "") == "Karras"
    assert S.schedule_label("Euler a", "") == "Uniform"
    assert S.schedule_label("Euler a", "karras") == "Karras"  # the WebUI's name works too
    dpm2 = S.sampler_sigmas("DPM2", "", 7, MODEL)
    full = S.karras(8, MODEL.sigma_min, MODEL.sigma_max)
    assert torch.equal(dpm2, torch.cat([full[:-2], full[-1:]]))


SAMPLERS = sorted(S.SAMPLER_SCHEDULES)
ENDING_AT_ZERO = [label for label in S.SCHEDULE_TYPES if label != "KL Optimal"]


@settings(max_examples=60, deadline=None)
@given(
    sampler=st.sampled_from(SAMPLERS),
    label=st.sampled_from(ENDING_AT_ZERO),
    steps=st.integers(1, 60),
    xl=st.booleans(),
)
def test_schedules_have_steps_plus_one_levels_falling_to_zero(
    sampler: str, label: str, steps: int, xl: bool
) -> None:
    sigmas = S.sampler_sigmas(sampler, label, steps, MODEL, xl=xl)
    if label == "DDIM":  # the WebUI's DDIM type steps by 1000 // n levels: n + 1 or a few more
        n = steps + 1 if S.SAMPLER_SCHEDULES[sampler][1] else steps
        discarded = 1 if S.SAMPLER_SCHEDULES[sampler][1] else 0
        assert len(sigmas) == len(range(1, 1000, max(1000 // n, 1))) + 1 - discarded
    else:
        assert len(sigmas) == steps + 1
    assert float(sigmas[-1]) == 0.0
    assert all(float(a) >= float(b) for a, b in itertools.pairwise(sigmas))


def test_kl_optimal_ends_at_the_smallest_sigma_as_in_the_webui() -> None:
    """A1111 1.10.1's kl_optimal appends no zero: its last level is the model's sigma_min."""
    sigmas = S.sampler_sigmas("Euler", "KL Optimal", 5, MODEL)
    assert len(sigmas) == 6 and float(sigmas[-1]) == pytest.approx(MODEL.sigma_min)


@settings(max_examples=80, deadline=None)
@given(
    strength=st.floats(0.01, 1.0),
    steps=st.integers(1, 50),
    fixed=st.booleans(),
    sampler=st.sampled_from(["Euler", "Euler a", "DPM++ 2M", "DPM2"]),
)
def test_img2img_runs_the_steps_schedule_py_says(
    strength: float, steps: int, fixed: bool, sampler: str
) -> None:
    """The README's "Denoising strength is discrete" table is what the sampler runs: the
    sigma slice has one level more than the steps schedule.py counts, and its first level is
    the schedule's at the step where the pass starts."""
    count = img2img_steps(strength, steps, "fixed" if fixed else "proportional")
    sliced = S.img2img_sigmas(sampler, "", steps, strength, MODEL, fixed=fixed)
    full = S.sampler_sigmas(sampler, "", count.schedule, MODEL)
    assert len(sliced) == count.run + 1
    assert torch.equal(sliced, full[count.schedule - count.run :])


def toy_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The toy denoiser the reference numbers were made with (tests/data/a1111_noise.py)."""
    s = sigma.reshape(-1, 1, 1, 1)
    return 0.9 * x / (s**2 + 1) ** 0.5 + 0.1 * torch.tanh(x)


@pytest.mark.parametrize("key", list(SAMPLED))
def test_samplers_step_as_the_webuis_k_diffusion(key: str) -> None:
    """Each sampler from the WebUI's initial noise over the WebUI's sigmas, its ancestral noise
    from the images' own generators, ends where k-diffusion's does in the WebUI."""
    name, label = key.split("|")
    noise = rng.ImageNoise((4, 4, 4), [3, 4])
    levels = S.sampler_sigmas(name, label, 6, MODEL)
    steps: list[int] = []
    x = sampling.SAMPLERS[name](
        toy_denoiser, noise.next() * levels[0], levels, noise.next, steps.append
    )
    got = [*flat(x[:, :, 0, :2]), float(x.sum())]
    assert close(got[:-1], SAMPLED[key][:-1], 2e-6) and abs(got[-1] - SAMPLED[key][-1]) < 1e-3
    assert steps == [1, 2, 3, 4, 5, 6]


class ToyNoiseModel:
    """The toy noise model TIMESTEP_SAMPLED was made with, recording the timesteps asked for."""

    def __init__(self) -> None:
        self.alphas_cumprod = S.alphas_cumprod()
        self.init_latent = self.mask = None
        self.ts: list[float] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.ts.append(round(float(t[0]), 4))
        return 0.7 * x * (t / 1000).reshape(-1, 1, 1, 1) + 0.3 * torch.tanh(x)


def seeded(seed: int) -> torch.Tensor:
    return torch.randn((4, 4, 4), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "key", [k for k in TIMESTEP_SAMPLED if "|txt2img|" in k or "|img2img|" in k]
)
def test_timestep_samplers_step_as_the_webuis(key: str) -> None:
    """DDIM, PLMS and UniPC over the WebUI's timestep grid, txt2img and img2img (its t_enc and
    noising), end where A1111's own functions do, asking the model for the same timesteps."""
    name, kind, *rest = key.split("|")
    want = TIMESTEP_SAMPLED[key]
    model = ToyNoiseModel()
    steps: list[int] = []
    noise = rng.ImageNoise((4, 4, 4), [3, 4]).next()
    if kind == "txt2img":
        x = timesteps.sample(name, model, noise, int(rest[0]), steps.append)
    else:
        init = 0.5 * seeded(9).expand(2, 4, 4, 4) + torch.linspace(-1, 1, 4).reshape(1, 1, 1, 4)
        strength, n, mode = float(rest[0]), int(rest[1]), rest[2]
        x = timesteps.sample(name, model, noise, n, steps.append, init, strength, mode)
    got = [*flat(x[:, :, 0, :2]), float(x.sum())]
    assert close(got[:-1], want["x"][:-1], 2e-6) and abs(got[-1] - want["x"][-1]) < 1e-3
    assert model.ts == pytest.approx(want["calls"], abs=1e-3)
    assert steps == list(range(1, want["steps"] + 1))


@pytest.mark.parametrize("key", [k for k in TIMESTEP_SAMPLED if k.startswith("DPM++")])
def test_sde_samplers_draw_the_webuis_brownian_noise(key: str) -> None:
    """DPM++ SDE, DPM++ 2M SDE (midpoint and Heun) and DPM++ 3M SDE on their Automatic levels,
    their noise from a Brownian tree per image seed over the whole schedule even when an img2img
    pass runs only its tail, end where k-diffusion's do in the WebUI."""
    name, solver, n, run = key.split("|")
    name += " Heun" if solver == "heun" else ""
    full = S.sampler_sigmas(name, "", int(n), MODEL)
    levels = full[int(n) - int(run) :]
    first = rng.ImageNoise((4, 4, 4), [3, 4]).next()
    brownian = rng.BrownianNoise(first, full, [3, 4])
    steps: list[int] = []
    x = sampling.SAMPLERS[name](toy_denoiser, first * levels[0], levels, brownian, steps.append)
    want = TIMESTEP_SAMPLED[key]["x"]
    got = [*flat(x[:, :, 0, :2]), float(x.sum())]
    assert close(got[:-1], want[:-1], 2e-6) and abs(got[-1] - want[-1]) < 1e-3
    assert steps == list(range(1, int(run) + 1))


def test_brownian_noise_is_the_webuis_and_an_image_is_the_same_alone() -> None:
    first = rng.ImageNoise((4, 4, 4), [3, 4]).next()
    levels = torch.tensor([10.0, 0.5, 0.0])
    w = rng.BrownianNoise(first, levels, [3, 4])(torch.tensor(8.0), torch.tensor(4.0))
    assert close(flat(w[:, :, 0, :2]), TIMESTEP_SAMPLED["brownian|3,4|8->4"]["x"], 2e-6)
    alone = rng.BrownianNoise(first[1:], levels, [4])(torch.tensor(8.0), torch.tensor(4.0))
    assert torch.equal(alone[0], w[1])


@given(st.integers(1, 150))
def test_the_timestep_grid_is_the_webuis(steps: int) -> None:
    """range(0, 1000, 1000 // steps) + 1 clipped to 999: rising from 1 by 1000 // steps (the
    last gap shorter where the clip bites), at least `steps` long."""
    g = timestep_grid(steps)
    gaps = [b - a for a, b in itertools.pairwise(g)]
    assert g[0] == 1 and len(g) >= steps and g[-1] <= 999
    assert all(gap == 1000 // steps for gap in gaps[:-1])
    assert not gaps or 0 < gaps[-1] <= 1000 // steps


def test_timestep_samplers_keep_the_init_latent_outside_the_mask() -> None:
    """The WebUI's timestep denoiser blends before each model call (mask_before_denoising), and
    the result is blended once more: outside the mask the init latent comes back exactly."""
    from types import SimpleNamespace

    seen: list[torch.Tensor] = []

    class UNet:
        dtype = torch.float32

        def __call__(self, x: torch.Tensor, t: torch.Tensor, **_: object) -> SimpleNamespace:
            seen.append(x)
            return SimpleNamespace(sample=0.7 * x * (t / 1000).reshape(-1, 1, 1, 1))

    c = SimpleNamespace(cond=torch.ones(1, 2, 8), uncond=torch.zeros(1, 2, 8), cond_pooled=None)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1
    model = timesteps.NoiseDenoiser(UNet(), S.alphas_cumprod(), lambda k: c, 7.0, mask=mask)
    init = seeded(9)[None]
    out = timesteps.sample("DDIM", model, seeded(3)[None], 8, lambda _: None, init, 0.7)
    assert torch.equal(out[..., :2], init[..., :2]) and not torch.equal(out, init)
    assert seen and all(torch.equal(x[:, :, :, :2], init.expand_as(x)[..., :2]) for x in seen)


# -- on the tiny models ---------------------------------------------------------------------


def test_variation_strength_1_is_the_variation_seeds_image(backend):
    """slerp at 1 is the variation seed's noise: with Euler (no noise after the first) the
    image is the variation seed's own; half way it is neither."""
    from lib_multipass.protocol import SampleRequest

    backend.load_checkpoint("tiny-toon")

    def image(seed, subseed=-1, strength=0.0, source="CPU"):
        r = SampleRequest(
            "a fox", "", "Euler", "", 3, 7.0, seed, 64, 64, subseed=subseed,
            subseed_strength=strength, rng=source,
        )  # fmt: skip
        return np.asarray(backend.generate([r], lambda s, n: None)[0], dtype=int)

    mixed = image(5, subseed=9, strength=1.0)
    assert np.array_equal(mixed, image(9))
    half = image(5, subseed=9, strength=0.5)
    assert np.abs(half - image(5)).mean() > 1 and np.abs(half - image(9)).mean() > 1
    nv = image(5, source="NV")
    assert np.array_equal(nv, image(5, source="NV")) and np.abs(nv - image(5)).mean() > 1


def test_variation_seeds_per_image_and_infotext_as_the_webui_writes_them():
    from lib_multipass.recipe import parse_recipe
    from lib_multipass.runner import base_params, make_job

    base = {"seed": 100, "subseed": 7, "subseed_strength": 0.3, "images": 3}
    recipe = parse_recipe({"base": base, "passes": [{"denoising_strength": 0.5}]})
    job = make_job(recipe, default_checkpoint="tiny-toon")
    assert list(job.seeds) == [100, 100, 100]  # every image the seed, the variation seeds + i
    params = base_params(job.ctx, 100, 2)
    assert params["Variation seed"] == "9" and params["Variation seed strength"] == "0.3"
    assert params["RNG"] == "CPU"
    one_pass = parse_recipe({"passes": [{"denoising_strength": 0.5}]})
    plain = make_job(one_pass, default_checkpoint="x")
    assert "Variation seed" not in base_params(plain.ctx, 1)
    gpu = make_job(recipe, default_checkpoint="tiny-toon", rng="GPU")
    assert "RNG" not in base_params(gpu.ctx, 100)  # the WebUI's default goes unsaid


def test_a_pass_encode_samples_the_posterior_as_the_webui_draws_it():
    """The WebUI's img2img encode: mean + std x torch.randn(mean.shape) from torch's global
    generator, which drawing the image's noise left seeded with its seed (modules/rng.py
    randn -> torch.manual_seed); each image of a batch from its own seed; NV: the mean."""
    import torch

    from lib_multipass.backends.rng import posterior_sample

    mean = torch.linspace(-1, 1, 2 * 4 * 5 * 6).reshape(2, 4, 5, 6)
    std = torch.full_like(mean, 0.3)
    got = posterior_sample(mean, std, [7, 9])
    for k, seed in enumerate((7, 9)):
        torch.manual_seed(seed)  # as the WebUI's rng.randn leaves the global generator
        want = mean[k : k + 1] + std[k : k + 1] * torch.randn(mean[k : k + 1].shape)
        assert torch.equal(got[k : k + 1], want)
    assert torch.equal(posterior_sample(mean, std, [7, 9], "NV"), mean)


def test_upsamplers_meet_odd_sizes_as_a1111s_unet_does():
    """Off a multiple of 64 px a feature map's side is odd on the way down; A1111's UNet
    doubles it, convolves, and its torch.cat hijack (sd_hijack_unet.py) resizes the result to
    the skip connection's size, nearest; diffusers would interpolate to that size first."""
    import torch
    import torch.nn.functional as F
    from diffusers.models.upsampling import Upsample2D

    from lib_multipass.backends.diffusers_backend import upsample_as, upsample_as_the_webui

    torch.manual_seed(0)
    up = Upsample2D(4, use_conv=True)
    x = torch.randn(1, 4, 5, 5)
    diffusers_way = up(x, (9, 9))
    a1111_way = F.interpolate(up.conv(F.interpolate(x, scale_factor=2.0)), (9, 9))
    holder = torch.nn.Sequential(up)
    upsample_as_the_webui(holder)
    upsample_as_the_webui(holder)  # once is enough: a second call changes nothing
    assert torch.allclose(up(x, (9, 9)), a1111_way, atol=1e-6)
    assert not torch.allclose(diffusers_way, a1111_way, atol=1e-3)
    assert torch.allclose(up(x), up.conv(F.interpolate(x, scale_factor=2.0)), atol=1e-6)
    # Forge's rules (Forge 2, reForge, Neo): diffusers' way, and back again
    upsample_as(holder, "Forge")
    assert torch.equal(up(x, (9, 9)), diffusers_way)
    upsample_as(holder, "A1111")
    assert torch.allclose(up(x, (9, 9)), a1111_way, atol=1e-6)


def test_forge_encodes_from_the_seed_plus_100000():
    """Forge 2, reForge and Neo seed torch's global generator with (seed + 100000) % 65536
    when an image's noise has its own generator (their modules/rng.py randn), and their VAE
    encode draws the pass's latent from it; A1111 leaves it at the image's seed."""
    assert encode_seeds([1234, 4000000000], "A1111") == [1234, 4000000000]
    assert encode_seeds([1234, 4000000000], "Forge") == [101234 % 65536, 4000100000 % 65536]


def test_image_rules_reach_the_encode_and_the_infotext(backend, monkeypatch):
    """A job under Forge's rules draws each pass's latent from Forge's seed, and its images say
    so; under A1111's, from the image's seed, unsaid."""
    import dataclasses

    from lib_multipass.backends import rng as rng_module
    from lib_multipass.engine import run_job
    from lib_multipass.recipe import parse_recipe
    from lib_multipass.runner import infotext, make_job

    seen: list[list[int]] = []
    real = rng_module.posterior_sample

    def spy(mean, std, seeds, source="CPU"):
        seen.append(list(seeds))
        return real(mean, std, seeds, source)

    monkeypatch.setattr(rng_module, "posterior_sample", spy)
    base = {"steps": 2, "width": 64, "height": 64, "seed": 7, "sampler": "Euler"}
    recipe = parse_recipe({"base": base, "passes": [{"denoising_strength": 0.5}]})
    for rules in ("A1111", "Forge"):
        job = make_job(recipe, default_checkpoint="tiny-toon", image_rules=rules)
        assert run_job(recipe, job, backend).complete
        text = infotext(recipe, job.ctx, 7, [0], "complete")
        assert ("Multipass image rules: Forge" in text) == (rules == "Forge")
    assert seen == [[7], [(7 + 100000) % 65536]]
    forge = parse_recipe({"base": {**base, "image_rules": "Forge"}, "passes": []})
    assert make_job(forge, default_checkpoint="tiny-toon").ctx.image_rules == "Forge"
    assert dataclasses.is_dataclass(forge.base)
