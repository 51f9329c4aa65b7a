"""The WebUI's k-diffusion samplers on a diffusers UNet: the image a WebUI's parameters make.

Facts from A1111 1.10.1 (`sd_samplers_kdiffusion.py`, `sd_samplers_cfg_denoiser.py`,
`sd_samplers_common.py`, `processing.py`) and the k-diffusion it pins (ab527a9: `sampling.py`,
`external.py`); own code:

- The denoiser is k-diffusion's CompVis wrapper: the UNet sees x / sqrt(sigma^2 + 1) at the
  continuous timestep of sigma; epsilon models give x - sigma * eps, v-prediction models
  x / (sigma^2 + 1) - v * sigma / sqrt(sigma^2 + 1).
- Classifier-free guidance as the WebUI's CFG denoiser: prompts then negative prompts in one
  batch (two calls when their lengths differ, as with "Pad prompt/negative prompt" off),
  uncond + (cond - uncond) * scale; with a mask the denoised latent keeps the init latent
  outside it after every call. The conditioning of call k (from 0) is the prompt schedule's
  at k, so prompt editing follows the WebUI's count (twice per step for second-order samplers).
- txt2img starts at noise * sigmas[0]; img2img at init latent + noise * sigmas[0] of the
  truncated schedule (lib_multipass.backends.sigmas.img2img_sigmas). Ancestral samplers take
  each step's noise from the images' own generators (lib_multipass.backends.rng), as the
  WebUI's hijack of torch.randn_like does, so an image is the same alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .sigmas import ModelSigmas

Noise = Callable[[], Any]
Callback = Callable[[int], None]  # called with the step just done (from 1)


@dataclass
class Denoiser:
    """x at sigma -> the guided, masked denoised latent, one call of the WebUI's CFG denoiser.

    `conds(k)` gives the conditioning of call k (lib_multipass.backends.conditioning.Conds);
    `extra(n)` the UNet's added conditions for a batch of n rows (SDXL: pooled text and size
    ids are added by the caller through `pooled`)."""

    unet: Any
    model: ModelSigmas
    conds: Callable[[int], Any]
    cfg_scale: float
    v_prediction: bool = False
    time_ids: Any = None  # SDXL: [6] (original size, crop, target size)
    init_latent: Any = None
    mask: Any = None  # 1 keeps the init latent (the WebUI's p.mask); nmask = 1 - mask
    step: int = 0
    calls: list[int] = field(default_factory=list)

    def __call__(self, x: Any, sigma: Any) -> Any:
        """The denoised latent for a batch x [B, 4, h, w] at noise levels sigma [B]."""
        denoised = guided(self._unet, x, sigma, self.conds(self.step), self.cfg_scale)
        if self.mask is not None:
            denoised = denoised * (1 - self.mask) + self.init_latent * self.mask
        self.step += 1
        return denoised

    def _unet(self, x: Any, sigma: Any, context: Any, pooled: Any) -> Any:
        """k-diffusion's CompVis(V)Denoiser around the UNet, for one batch."""
        sig = sigma.reshape(-1, 1, 1, 1)
        c_in = 1 / (sig**2 + 1) ** 0.5
        t = self.model.sigma_to_t(sigma.cpu())
        out = unet_call(self.unet, self.time_ids, x * c_in, t, context, pooled)
        self.calls.append(x.shape[0])
        if self.v_prediction:
            return x / (sig**2 + 1) - out * sig / (sig**2 + 1) ** 0.5
        return x - out * sig


def guided(unet: Callable[..., Any], x: Any, level: Any, c: Any, cfg_scale: float) -> Any:
    """One call of the WebUI's CFG denoiser: prompt then negative prompt in one batch (two calls
    when their lengths differ, as with "Pad prompt/negative prompt" off), then
    uncond + (cond - uncond) * scale. `unet(x, level, context, pooled)` runs one batch."""
    import torch

    n = x.shape[0]
    if c.cond.shape[1] == c.uncond.shape[1]:
        both = unet(
            torch.cat([x, x]),
            torch.cat([level, level]),
            torch.cat([c.cond, c.uncond]),
            None if c.cond_pooled is None else torch.cat([c.cond_pooled, c.uncond_pooled]),
        )
        out_cond, out_uncond = both[:n], both[n:]
    else:
        out_cond = unet(x, level, c.cond, c.cond_pooled)
        out_uncond = unet(x, level, c.uncond, c.uncond_pooled)
    out = out_uncond.clone()
    out += (out_cond - out_uncond) * cfg_scale
    return out


def unet_call(unet: Any, time_ids: Any, x: Any, t: Any, context: Any, pooled: Any) -> Any:
    """The diffusers UNet's output (float32) for a batch at timesteps t, in its own dtype, with
    SDXL's pooled text and size ids where given."""
    dtype = unet.dtype
    kwargs: dict[str, Any] = {}
    if pooled is not None:
        ids = time_ids.to(x.device, dtype).repeat(x.shape[0], 1)
        kwargs["added_cond_kwargs"] = {"text_embeds": pooled.to(dtype), "time_ids": ids}
    return unet(
        x.to(dtype), t.to(x.device), encoder_hidden_states=context.to(dtype), **kwargs
    ).sample.float()


def _to_d(x: Any, sigma: Any, denoised: Any) -> Any:
    return (x - denoised) / sigma


def _ancestral(sigma_from: Any, sigma_to: Any, eta: float = 1.0) -> tuple[Any, Any]:
    """k-diffusion's get_ancestral_step: the level to step down to and the noise to add."""
    if not eta:
        return sigma_to, 0.0
    up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    return (sigma_to**2 - up**2) ** 0.5, up


def euler(model: Denoiser, x: Any, sigmas: Any, noise: Noise, callback: Callback) -> Any:
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        d = _to_d(x, sigmas[i], denoised)
        callback(i + 1)
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def euler_ancestral(model: Denoiser, x: Any, sigmas: Any, noise: Noise, callback: Callback) -> Any:
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        down, up = _ancestral(sigmas[i], sigmas[i + 1])
        callback(i + 1)
        d = _to_d(x, sigmas[i], denoised)
        x = x + d * (down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise() * up
    return x


def heun(model: Denoiser, x: Any, sigmas: Any, noise: Noise, callback: Callback) -> Any:
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        d = _to_d(x, sigmas[i], denoised)
        callback(i + 1)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = _to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in))
            x = x + (d + d_2) / 2 * dt
    return x


def dpm_2(model: Denoiser, x: Any, sigmas: Any, noise: Noise, callback: Callback) -> Any:
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        d = _to_d(x, sigmas[i], denoised)
        callback(i + 1)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
        else:
            mid = sigmas[i].log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (mid - sigmas[i])
            d_2 = _to_d(x_2, mid, model(x_2, mid * s_in))
            x = x + d_2 * (sigmas[i + 1] - sigmas[i])
    return x


def dpm_2_ancestral(model: Denoiser, x: Any, sigmas: Any, noise: Noise, callback: Callback) -> Any:
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        down, up = _ancestral(sigmas[i], sigmas[i + 1])
        callback(i + 1)
        d = _to_d(x, sigmas[i], denoised)
        if down == 0:
            x = x + d * (down - sigmas[i])
        else:
            mid = sigmas[i].log().lerp(down.log(), 0.5).exp()
            x_2 = x + d * (mid - sigmas[i])
            d_2 = _to_d(x_2, mid, model(x_2, mid * s_in))
            x = x + d_2 * (down - sigmas[i])
            x = x + noise() * up
    return x


def _lms_coefficient(order: int, t: Any, i: int, j: int) -> float:
    from scipy import integrate

    def fn(tau: float) -> float:
        prod = 1.0
        for k in range(order):
            if j != k:
                prod *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return prod

    return float(integrate.quad(fn, t[i], t[i + 1], epsrel=1e-4)[0])


def lms(model: Denoiser, x: Any, sigmas: Any, noise: Noise, callback: Callback) -> Any:
    s_in = x.new_ones([x.shape[0]])
    levels = sigmas.detach().cpu().numpy()
    ds: list[Any] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        ds = [*ds, _to_d(x, sigmas[i], denoised)][-4:]
        callback(i + 1)
        order = min(i + 1, 4)
        coeffs = [_lms_coefficient(order, levels, i, j) for j in range(order)]
        x = x + sum(c * d for c, d in zip(coeffs, reversed(ds), strict=False))
    return x


def dpmpp_2s_ancestral(
    model: Denoiser, x: Any, sigmas: Any, noise: Noise, callback: Callback
) -> Any:
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        down, up = _ancestral(sigmas[i], sigmas[i + 1])
        callback(i + 1)
        if down == 0:
            x = x + _to_d(x, sigmas[i], denoised) * (down - sigmas[i])
        else:
            t, t_next = -sigmas[i].log(), -down.log()
            h = t_next - t
            s = t + h / 2
            x_2 = ((-s).exp() / (-t).exp()) * x - (-h / 2).expm1() * denoised
            denoised_2 = model(x_2, (-s).exp() * s_in)
            x = ((-t_next).exp() / (-t).exp()) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise() * up
    return x


def dpmpp_2m(model: Denoiser, x: Any, sigmas: Any, noise: Noise, callback: Callback) -> Any:
    s_in = x.new_ones([x.shape[0]])
    old = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        callback(i + 1)
        t, t_next = -sigmas[i].log(), -sigmas[i + 1].log()
        h = t_next - t
        ratio = (-t_next).exp() / (-t).exp()
        if old is None or sigmas[i + 1] == 0:
            x = ratio * x - (-h).expm1() * denoised
        else:
            r = (t + sigmas[i - 1].log()) / h
            blended = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            x = ratio * x - (-h).expm1() * blended
        old = denoised
    return x


def dpmpp_2m_sde(
    model: Denoiser,
    x: Any,
    sigmas: Any,
    noise: Any,
    callback: Callback,
    solver: str = "midpoint",
) -> Any:
    """DPM-Solver++(2M) SDE at eta 1; `noise(sigma, sigma_next)` is the images' Brownian
    noise between two levels (lib_multipass.backends.rng.BrownianNoise)."""
    eta = 1.0
    s_in = x.new_ones([x.shape[0]])
    old, h_last = None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        callback(i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            eta_h = eta * h
            x = (
                sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x
                + (-h - eta_h).expm1().neg() * denoised
            )
            if old is not None:
                r = h_last / h
                if solver == "heun":
                    phi = (-h - eta_h).expm1().neg()
                    x = x + (phi / (-h - eta_h) + 1) * (1 / r) * (denoised - old)
                else:
                    x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - old)
            step_noise = noise(sigmas[i], sigmas[i + 1])
            x = x + step_noise * sigmas[i + 1] * (-2 * eta_h).expm1().neg().sqrt() * 1.0
        old, h_last = denoised, h
    return x


def dpmpp_sde(model: Denoiser, x: Any, sigmas: Any, noise: Any, callback: Callback) -> Any:
    """DPM-Solver++ (stochastic) at eta 1, r 1/2: two model calls a step, Brownian noise
    (`noise(sigma, sigma_next)`) at the midpoint and the end."""
    s_in = x.new_ones([x.shape[0]])
    r = 1 / 2
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        callback(i + 1)
        if sigmas[i + 1] == 0:
            x = x + _to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        down, up = _ancestral(t.neg().exp(), s.neg().exp())
        s_ = down.log().neg()
        x_2 = (s_.neg().exp() / t.neg().exp()) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise(t.neg().exp(), s.neg().exp()) * 1.0 * up
        denoised_2 = model(x_2, s.neg().exp() * s_in)
        down, up = _ancestral(t.neg().exp(), t_next.neg().exp())
        t_next_ = down.log().neg()
        blended = (1 - fac) * denoised + fac * denoised_2
        x = (t_next_.neg().exp() / t.neg().exp()) * x - (t - t_next_).expm1() * blended
        x = x + noise(t.neg().exp(), t_next.neg().exp()) * 1.0 * up
    return x


def dpmpp_3m_sde(model: Denoiser, x: Any, sigmas: Any, noise: Any, callback: Callback) -> Any:
    """DPM-Solver++(3M) SDE at eta 1, Brownian noise (`noise(sigma, sigma_next)`)."""
    import torch

    eta = 1.0
    s_in = x.new_ones([x.shape[0]])
    denoised_1 = denoised_2 = h = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        callback(i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * ((denoised - denoised_1) / (h_1 / h))
            step_noise = noise(sigmas[i], sigmas[i + 1])
            x = x + step_noise * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * 1.0
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


def dpmpp_2m_sde_heun(model: Denoiser, x: Any, sigmas: Any, noise: Any, callback: Callback) -> Any:
    return dpmpp_2m_sde(model, x, sigmas, noise, callback, solver="heun")


Sampler = Callable[[Denoiser, Any, Any, Noise, Callback], Any]
# the WebUI's sampler names whose k-diffusion functions run here
SAMPLERS: dict[str, Sampler] = {
    "Euler": euler,
    "Euler a": euler_ancestral,
    "Heun": heun,
    "DPM2": dpm_2,
    "DPM2 a": dpm_2_ancestral,
    "LMS": lms,
    "DPM++ 2S a": dpmpp_2s_ancestral,
    "DPM++ 2M": dpmpp_2m,
    "DPM++ SDE": dpmpp_sde,
    "DPM++ 2M SDE": dpmpp_2m_sde,
    "DPM++ 2M SDE Heun": dpmpp_2m_sde_heun,
    "DPM++ 3M SDE": dpmpp_3m_sde,
}
# samplers whose noise is a Brownian tree per image seed over the whole schedule's levels (the
# WebUI's create_noise_sampler), not the images' next draws
BROWNIAN = ("DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE")


def sample(
    sampler: str,
    model: Denoiser,
    noise: Any,
    sigmas: Any,
    next_noise: Noise,
    callback: Callback,
    init_latent: Any = None,
) -> Any:
    """Run `sampler` from `noise` (the images' first draw) over `sigmas`: txt2img from
    noise * sigmas[0], img2img from init_latent + noise * sigmas[0]; masked, the result keeps
    the init latent outside the mask, as processing.py blends it. `next_noise` is the images'
    next draw, or for a Brownian sampler their noise between two levels."""
    sigmas = sigmas.to(noise.device)
    x = noise * sigmas[0] if init_latent is None else init_latent + noise * sigmas[0]
    out = SAMPLERS[sampler](model, x, sigmas, next_noise, callback)
    if model.mask is not None:
        out = out * (1 - model.mask) + model.init_latent * model.mask
    return out
