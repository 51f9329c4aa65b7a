"""The WebUI's initial noise and sampler noise for a seed, drawn as A1111 1.10.1 draws them.

Facts from A1111's `modules/rng.py`, `modules/rng_philox.py` and `processing.py` (own code):

- The "Random number generator source" setting (`randn_source`, infotext "RNG"): "CPU" draws with
  a CPU torch generator seeded with the seed (the same numbers on any machine), "GPU" with a
  generator on the device the model runs on (on a CPU-only machine that is the CPU's numbers; on
  CUDA, CUDA's), "NV" with a Philox 4x32-10 counter generator and Box-Muller in NumPy that gives
  CUDA's numbers on any machine.
- Each image of a batch has its own generator seeded with its seed; its first draw is the image's
  initial noise [4, h/8, w/8], and every later draw (an ancestral sampler's noise, as the WebUI's
  k-diffusion hijack asks `randn_like` of it) continues that generator. So an image is the same
  alone or in a batch.
- A variation seed (subseed) with a strength s: the noise is the spherical interpolation of the
  seed's noise and the subseed's (`slerp(s, noise, subnoise)`), the subseed's drawn fresh.
- Seeds per image: seed + i, unless a variation strength is set, when every image has the seed and
  the subseeds go + i.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..fields import RNG_SOURCES

SOURCES = RNG_SOURCES  # the WebUI's randn_source choices
DEFAULT_SOURCE = "CPU"

# Philox 4x32 constants (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011)
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_U32 = np.uint64(0xFFFFFFFF)
# 2**-32 and 2**-32 * 2pi as float32 numbers, as CUDA's curand Box-Muller scales them
_INV_2_32 = np.array([2.3283064e-10], dtype=np.float32)
_INV_2_32_2PI = np.array([2.3283064e-10 * 6.2831855], dtype=np.float32)


def image_seeds(seed: int, count: int, subseed: int = -1, strength: float = 0.0) -> list[int]:
    """Each image's seed, as processing.py gives them: seed + i, or the seed for all when a
    variation strength is set."""
    return [int(seed) + (i if strength == 0 else 0) for i in range(count)]


def image_subseeds(subseed: int, count: int) -> list[int]:
    """Each image's variation seed: subseed + i."""
    return [int(subseed) + i for i in range(count)]


def philox(counter: np.ndarray, key: np.ndarray, rounds: int = 10) -> np.ndarray:
    """Philox 4x32 on columns: counter [4, n] and key [2, n] uint32 arrays; returns [4, n]."""
    c = [counter[k].astype(np.uint64) for k in range(4)]
    k0, k1 = key[0].astype(np.uint64), key[1].astype(np.uint64)
    for r in range(rounds):
        if r:
            k0 = (k0 + _PHILOX_W[0]) & _U32
            k1 = (k1 + _PHILOX_W[1]) & _U32
        p0 = c[0] * _PHILOX_M[0]
        p1 = c[2] * _PHILOX_M[1]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & _U32, (p0 >> 32) ^ c[3] ^ k1, p0 & _U32]
    return np.stack([x.astype(np.uint32) for x in c])


class PhiloxNormal:
    """CUDA's torch.randn numbers, computed on any machine (the WebUI's "NV" source): Philox
    keyed with the seed, one counter offset per draw, the element index in the third word,
    and the first of Box-Muller's two numbers from the first two words."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.offset = 0

    def randn(self, shape: Sequence[int]) -> np.ndarray:
        n = int(np.prod(shape))
        counter = np.zeros((4, n), dtype=np.uint32)
        counter[0] = self.offset
        counter[2] = np.arange(n, dtype=np.uint32)
        self.offset += 1
        seed = np.uint64(self.seed)
        key = np.stack(
            [
                np.full(n, seed & _U32, dtype=np.uint64).astype(np.uint32),
                np.full(n, seed >> np.uint64(32), dtype=np.uint64).astype(np.uint32),
            ]
        )
        out = philox(counter, key)
        # uint32 with float32 promotes to float64, as in the WebUI's NumPy code
        u = out[0] * _INV_2_32 + _INV_2_32 / 2
        v = out[1] * _INV_2_32_2PI + _INV_2_32_2PI / 2
        return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32).reshape(shape)


def _torch_device(source: str, device: str) -> str:
    """Where a source draws: CPU always on the CPU; GPU on the model's device (MPS draws on the
    CPU, as in the WebUI)."""
    if source == "CPU" or device.startswith("mps"):
        return "cpu"
    return device


class Generator:
    """One image's random numbers from one source: the first draw and every later one."""

    def __init__(self, seed: int, source: str = DEFAULT_SOURCE, device: str = "cpu") -> None:
        import torch

        if source not in SOURCES:
            raise ValueError(f"rng source {source!r} is not one of {', '.join(SOURCES)}")
        self.source = source
        self.device = device
        if source == "NV":
            self._nv: PhiloxNormal | None = PhiloxNormal(seed)
            self._torch = None
        else:
            self._nv = None
            where = _torch_device(source, device)
            self._torch = torch.Generator(where).manual_seed(int(seed))
            self._where = where

    def randn(self, shape: Sequence[int]) -> Any:
        """The next standard normal numbers of this shape, float32 on the model's device."""
        import torch

        if self._nv is not None:
            return torch.asarray(self._nv.randn(tuple(shape)), device=self.device)
        x = torch.randn(tuple(shape), generator=self._torch, device=self._where)
        return x.to(self.device)


def slerp(val: float, low: Any, high: Any) -> Any:
    """Spherical interpolation of two noises along dim 1 (the WebUI's: a straight mix when they
    are nearly parallel)."""
    import torch

    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (
        torch.sin(val * omega) / so
    ).unsqueeze(1) * high


class ImageNoise:
    """A batch's noise, one generator per image: `next()` first gives the initial noise
    [batch, 4, h/8, w/8] (with variation seeds mixed in), then each sampler noise."""

    def __init__(
        self,
        shape: Sequence[int],
        seeds: Sequence[int],
        *,
        subseeds: Sequence[int] | None = None,
        subseed_strength: float = 0.0,
        source: str = DEFAULT_SOURCE,
        device: str = "cpu",
        eta_noise_seed_delta: int = 0,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.seeds = [int(s) for s in seeds]
        self.subseeds = list(subseeds) if subseeds is not None else None
        self.subseed_strength = float(subseed_strength)
        self.source = source
        self.device = device
        self.eta_noise_seed_delta = int(eta_noise_seed_delta)
        self.generators = [Generator(s, source, device) for s in self.seeds]
        self._first = True

    def first(self) -> Any:
        import torch

        xs = []
        for i, generator in enumerate(self.generators):
            subnoise = None
            if self.subseeds is not None and self.subseed_strength != 0:
                subseed = self.subseeds[i] if i < len(self.subseeds) else 0
                subnoise = Generator(subseed, self.source, self.device).randn(self.shape)
            noise = generator.randn(self.shape)
            if subnoise is not None:
                noise = slerp(self.subseed_strength, noise, subnoise)
            xs.append(noise)
        if self.eta_noise_seed_delta:
            delta = self.eta_noise_seed_delta
            self.generators = [Generator(s + delta, self.source, self.device) for s in self.seeds]
        return torch.stack(xs)

    def next(self) -> Any:
        """The initial noise the first time, then each image's next draw."""
        import torch

        if self._first:
            self._first = False
            return self.first()
        return torch.stack([g.randn(self.shape) for g in self.generators])


def encode_seeds(seeds: Sequence[int], rules: str = "A1111") -> list[int]:
    """The seed each image's VAE encode draws from (posterior_sample): its own under A1111's
    rules; under Forge's (Forge 2, reForge and Neo), (seed + 100000) % 65536, the number their
    rng.randn seeds torch's global generator with when an image's noise comes from its own
    generator, "to avoid global torch.rand to get same noise again"."""
    if rules == "Forge":
        return [(int(s) + 100000) % 65536 for s in seeds]
    return [int(s) for s in seeds]


def posterior_sample(
    mean: Any, std: Any, seeds: Sequence[int], source: str = DEFAULT_SOURCE
) -> Any:
    """A batch's latents drawn from the VAE's posterior [B, 4, h, w] as the WebUI's img2img
    encode draws them, each image from its own seed's numbers.

    The WebUI samples them (ldm's and sgm's DiagonalGaussianDistribution.sample: mean + std x
    torch.randn(mean.shape) on the CPU) from torch's global generator, which the seed of the
    batch sampled just before has freshly seeded (its rng.randn calls torch.manual_seed for each
    image's noise, CPU and GPU sources). In a job of one image, that is the image's own seed,
    pass after pass, and so it is for the WebUI re-running one image's parameters: the numbers
    here, which keep an image the same alone or in a batch and a continued chain the same as the
    whole. Under NV the WebUI seeds its Philox generator, not torch's, and draws whatever the
    process left: there the posterior's mean is taken."""
    import torch

    if source == "NV":
        return mean
    rows = []
    for seed in seeds:
        generator = torch.Generator("cpu").manual_seed(int(seed))
        rows.append(torch.randn(tuple(mean.shape[1:]), generator=generator)[None])
    return mean + std * torch.cat(rows).to(mean.device)


class BrownianNoise:
    """The noise DPM++ 2M SDE adds between two levels, as the WebUI draws it (its
    create_noise_sampler: k-diffusion's BrownianTreeNoiseSampler over the whole schedule's
    smallest and largest nonzero sigma, one torchsde Brownian tree per image seed), so an image
    is the same alone or in a batch. Needs torchsde (the `run` extra)."""

    def __init__(self, latent: Any, sigmas: Any, seeds: Sequence[int]) -> None:
        import torch
        import torchsde

        low, high = sigmas[sigmas > 0].min(), sigmas.max()
        w0 = torch.zeros_like(latent[0])
        self.trees = [torchsde.BrownianTree(low, w0, high, entropy=int(s)) for s in seeds]

    def __call__(self, sigma: Any, sigma_next: Any) -> Any:
        """Each image's Brownian increment from sigma to sigma_next, scaled to unit variance."""
        import torch

        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        low, high, sign = (t0, t1, 1) if t0 < t1 else (t1, t0, -1)
        with warnings.catch_warnings():
            # torchsde warns when an end level is a rounding off its own float32 copy
            warnings.filterwarnings("ignore", "Should have", UserWarning)
            w = torch.stack([tree(low, high) for tree in self.trees]) * sign
        return w / (t1 - t0).abs().sqrt()
