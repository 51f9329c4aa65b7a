"""The WebUI's noise levels: a checkpoint's sigmas and each schedule type's sigmas for N steps.

Facts from A1111 1.10.1 (`modules/sd_schedulers.py`, `sd_samplers_kdiffusion.py`,
`sd_models.py`) and the k-diffusion it pins (ab527a9: `external.py`'s DiscreteSchedule,
`sampling.py`'s get_sigmas_*); own code. A checkpoint's 1000 sigmas come from its training
betas (scaled linear: the square of a float64 linspace of square roots), their cumulative
product of alphas kept as float32, sigma = sqrt((1 - a) / a). Between the discrete levels
k-diffusion interpolates log sigma linearly in t. "Automatic" is the sampler's own schedule
type (Karras for DPM++ 2M, Exponential for DPM++ 2M SDE, the model's uniform one for Euler...);
some samplers drop the next-to-last sigma.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..schedule import setup_img2img

# sampler -> (its "Automatic" schedule type, drops the next-to-last sigma), as A1111 1.10.1's
# samplers_k_diffusion options say
SAMPLER_SCHEDULES: dict[str, tuple[str, bool]] = {
    "DPM++ 2M": ("Karras", False),
    "DPM++ SDE": ("Karras", False),
    "DPM++ 2M SDE": ("Exponential", False),
    "DPM++ 2M SDE Heun": ("Exponential", False),
    "DPM++ 2S a": ("Karras", False),
    "DPM++ 3M SDE": ("Exponential", True),
    "Euler a": ("Uniform", False),
    "Euler": ("Uniform", False),
    "LMS": ("Uniform", False),
    "Heun": ("Uniform", False),
    "DPM2": ("Karras", True),
    "DPM2 a": ("Karras", True),
    "Restart": ("Karras", False),
}
SDXL_AYS = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)
SD1_AYS = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
BETA_ALPHA = BETA_BETA = 0.6  # the WebUI's beta_dist_alpha / beta_dist_beta defaults


def alphas_cumprod(
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    steps: int = 1000,
    schedule: str = "scaled_linear",
    zero_terminal_snr: bool = False,
) -> Any:
    """A checkpoint's cumulative alphas as the WebUI's model holds them (float32)."""
    import torch

    if schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2
    elif schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    else:
        raise ValueError(f"beta schedule {schedule!r} is not scaled_linear or linear")
    out = torch.cumprod(1.0 - betas, dim=0).to(torch.float32)
    return rescale_zero_terminal_snr(out) if zero_terminal_snr else out


def rescale_zero_terminal_snr(alphas_bar: Any) -> Any:
    """The WebUI's "Zero Terminal SNR" noise schedule: sqrt(alpha bar) shifted so its last
    value is 0 and scaled back to its first, the last alpha bar then set to a tiny number."""
    s = alphas_bar.sqrt()
    s0, s_t = s[0].clone(), s[-1].clone()
    s = (s - s_t) * (s0 / (s0 - s_t))
    out = s**2
    out[-1] = 4.8973451890853435e-08
    return out


class ModelSigmas:
    """A checkpoint's discrete noise levels and k-diffusion's mapping between sigma and t."""

    def __init__(self, alphas_bar: Any) -> None:
        self.alphas_cumprod = alphas_bar
        self.sigmas = ((1 - alphas_bar) / alphas_bar) ** 0.5
        self.log_sigmas = self.sigmas.log()

    @classmethod
    def from_config(cls, config: Any, *, zero_terminal_snr: bool = False) -> ModelSigmas:
        """From a diffusers scheduler config (beta_start, beta_end, beta_schedule)."""

        def get(name: str, default: Any) -> Any:
            value = getattr(config, name, None)
            if value is None and isinstance(config, dict):
                value = config.get(name)
            return default if value is None else value

        return cls(
            alphas_cumprod(
                float(get("beta_start", 0.00085)),
                float(get("beta_end", 0.012)),
                int(get("num_train_timesteps", 1000)),
                str(get("beta_schedule", "scaled_linear")),
                zero_terminal_snr,
            )
        )

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0].item())

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1].item())

    def sigma_to_t(self, sigma: Any) -> Any:
        """The continuous timestep of a sigma: log sigma interpolated between its neighbours."""
        log_sigma = sigma.log()
        dists = log_sigma - self.log_sigmas[:, None]
        low = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=self.log_sigmas.shape[0] - 2)
        high = low + 1
        lo, hi = self.log_sigmas[low], self.log_sigmas[high]
        w = ((lo - log_sigma) / (lo - hi)).clamp(0, 1)
        return ((1 - w) * low + w * high).view(sigma.shape)

    def t_to_sigma(self, t: Any) -> Any:
        t = t.float()
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()

    def uniform(self, n: int) -> Any:
        """k-diffusion's get_sigmas(n): n levels evenly spaced in t, then 0."""
        import torch

        t = torch.linspace(len(self.sigmas) - 1, 0, n)
        return _append_zero(self.t_to_sigma(t))


def _append_zero(x: Any) -> Any:
    import torch

    return torch.cat([x, x.new_zeros([1])])


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Any:
    import torch

    ramp = torch.linspace(0, 1, n)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((max_inv + ramp * (min_inv - max_inv)) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float) -> Any:
    import torch

    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp())


def polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> Any:
    import torch

    ramp = torch.linspace(1, 0, n) ** rho
    lo = math.log(sigma_min)
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - lo) + lo))


def sgm_uniform(n: int, model: ModelSigmas) -> Any:
    import torch

    start = model.sigma_to_t(torch.tensor(model.sigma_max))
    end = model.sigma_to_t(torch.tensor(model.sigma_min))
    sigs = [model.t_to_sigma(ts) for ts in torch.linspace(start, end, n + 1)[:-1]]
    return torch.FloatTensor([*sigs, 0.0])


def kl_optimal(n: int, sigma_min: float, sigma_max: float) -> Any:
    import torch

    alpha_min = torch.arctan(torch.tensor(sigma_min))
    alpha_max = torch.arctan(torch.tensor(sigma_max))
    k = torch.arange(n + 1)
    return torch.tan(k / n * alpha_min + (1.0 - k / n) * alpha_max)


def align_your_steps(n: int, xl: bool) -> Any:
    """NVIDIA's Align Your Steps levels for SD1 or SDXL, log-linearly resampled to n steps."""
    import numpy as np
    import torch

    levels = list(SDXL_AYS if xl else SD1_AYS)
    if n == len(levels):
        return torch.FloatTensor([*levels, 0.0])
    xs = np.linspace(0, 1, len(levels))
    ys = np.log(levels[::-1])
    resampled = np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1].copy()
    return torch.FloatTensor(np.append(resampled, [0.0]))


def simple(n: int, model: ModelSigmas) -> Any:
    import torch

    step = len(model.sigmas) / n
    sigs = [float(model.sigmas[-(1 + int(x * step))]) for x in range(n)]
    return torch.FloatTensor([*sigs, 0.0])


def normal(n: int, model: ModelSigmas) -> Any:
    import torch

    start = model.sigma_to_t(torch.tensor(model.sigma_max))
    end = model.sigma_to_t(torch.tensor(model.sigma_min))
    sigs = [model.t_to_sigma(ts) for ts in torch.linspace(start, end, n)]
    return torch.FloatTensor([*sigs, 0.0])


def ddim(n: int, model: ModelSigmas) -> Any:
    import torch

    step = max(len(model.sigmas) // n, 1)
    sigs = [float(model.sigmas[x]) for x in range(1, len(model.sigmas), step)]
    return torch.FloatTensor([*sigs[::-1], 0.0])


def beta(
    n: int, sigma_min: float, sigma_max: float, a: float = BETA_ALPHA, b: float = BETA_BETA
) -> Any:
    """Beta sampling (Lee et al., 2024): timesteps at the beta distribution's quantiles."""
    import numpy as np
    import torch
    from scipy import stats

    quantiles = [stats.beta.ppf(x, a, b) for x in 1 - np.linspace(0, 1, n)]
    return torch.FloatTensor([*(sigma_min + x * (sigma_max - sigma_min) for x in quantiles), 0.0])


@dataclass(frozen=True)
class ScheduleType:
    """One of the WebUI's schedule types: its label and how it makes n + 1 sigmas."""

    label: str
    make: Callable[[int, ModelSigmas, bool], Any]


SCHEDULE_TYPES: dict[str, ScheduleType] = {
    t.label: t
    for t in (
        ScheduleType("Uniform", lambda n, m, xl: m.uniform(n)),
        ScheduleType("Karras", lambda n, m, xl: karras(n, m.sigma_min, m.sigma_max)),
        ScheduleType("Exponential", lambda n, m, xl: exponential(n, m.sigma_min, m.sigma_max)),
        ScheduleType(
            "Polyexponential", lambda n, m, xl: polyexponential(n, m.sigma_min, m.sigma_max)
        ),
        ScheduleType("SGM Uniform", lambda n, m, xl: sgm_uniform(n, m)),
        ScheduleType("KL Optimal", lambda n, m, xl: kl_optimal(n, m.sigma_min, m.sigma_max)),
        ScheduleType("Align Your Steps", lambda n, m, xl: align_your_steps(n, xl)),
        ScheduleType("Simple", lambda n, m, xl: simple(n, m)),
        ScheduleType("Normal", lambda n, m, xl: normal(n, m)),
        ScheduleType("DDIM", lambda n, m, xl: ddim(n, m)),
        ScheduleType("Beta", lambda n, m, xl: beta(n, m.sigma_min, m.sigma_max)),
    )
}
# the names the WebUI also accepts (sd_schedulers.py: name, label, aliases)
SCHEDULE_ALIASES = {
    "automatic": "Automatic",
    "uniform": "Uniform",
    "karras": "Karras",
    "exponential": "Exponential",
    "polyexponential": "Polyexponential",
    "sgm_uniform": "SGM Uniform",
    "SGMUniform": "SGM Uniform",
    "kl_optimal": "KL Optimal",
    "align_your_steps": "Align Your Steps",
    "simple": "Simple",
    "normal": "Normal",
    "ddim": "DDIM",
    "beta": "Beta",
}


def schedule_label(sampler: str, scheduler: str) -> str:
    """The schedule type that really runs: '' and Automatic are the sampler's own."""
    name = SCHEDULE_ALIASES.get(scheduler, scheduler)
    if name in ("", "Automatic"):
        return SAMPLER_SCHEDULES.get(sampler, ("Uniform", False))[0]
    return name


def sampler_sigmas(
    sampler: str, scheduler: str, steps: int, model: ModelSigmas, *, xl: bool = False
) -> Any:
    """The sigmas a sampler runs for `steps` steps (steps + 1 numbers ending at 0), as the
    WebUI's KDiffusionSampler.get_sigmas makes them."""
    import torch

    discard = SAMPLER_SCHEDULES.get(sampler, ("", False))[1]
    n = steps + 1 if discard else steps
    label = schedule_label(sampler, scheduler)
    if label not in SCHEDULE_TYPES:
        raise ValueError(f"schedule type {scheduler!r} is not one of {', '.join(SCHEDULE_TYPES)}")
    sigmas = SCHEDULE_TYPES[label].make(n, model, xl)
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas.cpu()


def img2img_sigmas(
    sampler: str,
    scheduler: str,
    steps: int,
    strength: float,
    model: ModelSigmas,
    *,
    fixed: bool = False,
    xl: bool = False,
) -> Any:
    """The sigmas an img2img pass runs: the schedule of the WebUI's step arithmetic
    (setup_img2img_steps) from step steps - t_enc - 1 on, so t_enc + 1 steps run."""
    mode = "fixed" if fixed else "proportional"
    return img2img_levels(sampler, scheduler, steps, strength, model, mode, xl)[1]


def img2img_levels(
    sampler: str,
    scheduler: str,
    steps: int,
    strength: float,
    model: ModelSigmas,
    mode: str = "proportional",
    xl: bool = False,
) -> tuple[Any, Any]:
    """(the whole schedule an img2img pass is cut from, the sigmas it runs): the Brownian
    samplers' noise spans the whole, as the WebUI's create_noise_sampler takes it."""
    schedule, t_enc = setup_img2img(strength, steps, mode)
    sigmas = sampler_sigmas(sampler, scheduler, schedule, model, xl=xl)
    return sigmas, sigmas[schedule - t_enc - 1 :]
