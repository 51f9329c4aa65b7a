"""The WebUI's timestep samplers (DDIM, PLMS, UniPC) on a diffusers UNet.

Facts from A1111 1.10.1 (`sd_samplers_timesteps.py`, `sd_samplers_timesteps_impl.py`,
`models/diffusion/uni_pc/uni_pc.py` with the options' defaults: UniPC variant bh1, skip type
time_uniform, order 3, lower order final; Eta DDIM 0); own code:

- These samplers walk the model's discrete timesteps, not sigmas: the grid for N steps is
  range(0, 1000, 1000 // N) + 1 (so 7 steps make 8 timesteps, 30 make 31), and the UNet is
  asked for its noise prediction at the raw latent and timestep (v-prediction models' v turned
  into noise with the timestep's alpha bar).
- txt2img starts from the images' noise as drawn; DDIM and PLMS take one step per timestep
  after the first (PLMS's first step calls the model twice), UniPC as many as there are
  timesteps.
- img2img: the strength's t_enc (the WebUI's setup_img2img_steps) noises the init latent to
  timestep grid[t_enc] with alpha bar, and samples over grid[:t_enc]: DDIM and PLMS take
  t_enc - 1 steps, UniPC t_enc from grid[t_enc - 1] + 1.
- With a mask the latent keeps the init latent outside it before every model call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..schedule import TIMESTEP_SAMPLERS, UNIPC_ORDER, setup_img2img, timestep_grid
from .sampling import Callback, guided, unet_call

SAMPLERS = TIMESTEP_SAMPLERS


@dataclass
class NoiseDenoiser:
    """x at timestep t -> the guided noise prediction, one call of the WebUI's CFG denoiser
    for timestep samplers (CFGDenoiserTimesteps: the mask is applied before the model call).

    `conds(k)` gives the conditioning of call k (lib_multipass.backends.conditioning.Conds)."""

    unet: Any
    alphas_cumprod: Any
    conds: Callable[[int], Any]
    cfg_scale: float
    v_prediction: bool = False
    time_ids: Any = None  # SDXL: [6] (original size, crop, target size)
    init_latent: Any = None
    mask: Any = None  # 1 keeps the init latent (the WebUI's p.mask)
    step: int = 0
    calls: list[int] = field(default_factory=list)

    def __call__(self, x: Any, t: Any) -> Any:
        """The guided noise prediction for a batch x [B, 4, h, w] at timesteps t [B]."""
        if self.mask is not None:
            x = x * (1 - self.mask) + self.init_latent * self.mask
        eps = guided(self._unet, x, t, self.conds(self.step), self.cfg_scale)
        self.step += 1
        return eps

    def _unet(self, x: Any, t: Any, context: Any, pooled: Any) -> Any:
        out = unet_call(self.unet, self.time_ids, x, t, context, pooled)
        self.calls.append(x.shape[0])
        if not self.v_prediction:
            return out
        a = self.alphas_cumprod.to(x.device)[t.long()].reshape(-1, 1, 1, 1)
        return a.sqrt() * out + (1 - a).sqrt() * x


Model = Callable[[Any, Any], Any]


def _ddim_step(alphas_cumprod: Any, timesteps: Any, x: Any) -> Callable[[Any, Any, int], Any]:
    """DDIM's step at eta 0 as the WebUI's DDIM and PLMS both take it: (x, noise, index) -> x at
    the timestep before timesteps[index], its alpha bar padded in as float64 and every alpha
    taken as a float, as the WebUI's `.item()` does."""
    import torch

    alphas = alphas_cumprod[timesteps]
    before = torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))
    alphas_prev = alphas_cumprod[before].to(torch.float64)
    root_one_minus = (1 - alphas).sqrt()
    s_x = x.new_ones((x.shape[0], 1, 1, 1))

    def step(x: Any, e_t: Any, index: int) -> Any:
        a_t = alphas[index].item() * s_x
        a_prev = alphas_prev[index].item() * s_x
        pred_x0 = (x - root_one_minus[index].item() * s_x * e_t) / a_t.sqrt()
        return a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e_t

    return step


def ddim(model: Model, x: Any, timesteps: Any, alphas_cumprod: Any, callback: Callback) -> Any:
    """DDIM at eta 0: from the last timestep down, each step to the timestep before it."""
    step = _ddim_step(alphas_cumprod, timesteps, x)
    s_in = x.new_ones((x.shape[0],))
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        x = step(x, model(x, timesteps[index].item() * s_in), index)
        callback(i + 1)
    return x


def plms(model: Model, x: Any, timesteps: Any, alphas_cumprod: Any, callback: Callback) -> Any:
    """PLMS: a pseudo improved Euler first step, then Adams-Bashforth on up to four noise
    predictions, each taken with DDIM's step."""
    step = _ddim_step(alphas_cumprod, timesteps, x)
    s_in = x.new_ones([x.shape[0]])
    old: list[Any] = []
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = model(x, timesteps[index].item() * s_in)
        if not old:
            t_next = timesteps[max(index - 1, 0)].item() * s_in
            e_next = model(step(x, e_t, index), t_next)
            e_prime = (e_t + e_next) / 2
        elif len(old) == 1:
            e_prime = (3 * e_t - old[-1]) / 2
        elif len(old) == 2:
            e_prime = (23 * e_t - 16 * old[-1] + 5 * old[-2]) / 12
        else:
            e_prime = (55 * e_t - 59 * old[-1] + 37 * old[-2] - 9 * old[-3]) / 24
        x = step(x, e_prime, index)
        old = [*old, e_t][-3:]
        callback(i + 1)
    return x


class _VPSchedule:
    """The discrete VP schedule UniPC runs on: log alpha interpolated linearly in t in (0, 1]."""

    def __init__(self, alphas_cumprod: Any) -> None:
        import torch

        self.log_alphas = 0.5 * torch.log(alphas_cumprod)
        self.n = len(self.log_alphas)
        self.ts = torch.linspace(0.0, 1.0, self.n + 1)[1:]

    def log_alpha(self, t: Any) -> Any:
        return _interpolate(t, self.ts, self.log_alphas)

    def alpha(self, t: Any) -> Any:
        return self.log_alpha(t).exp()

    def std(self, t: Any) -> Any:
        return (1.0 - (2.0 * self.log_alpha(t)).exp()).sqrt()

    def lamb(self, t: Any) -> Any:
        log_alpha = self.log_alpha(t)
        return log_alpha - 0.5 * (1.0 - (2.0 * log_alpha).exp()).log()


def _interpolate(x: Any, xp: Any, yp: Any) -> Any:
    """Piecewise linear through (xp, yp), extended past both ends by the outer segments."""
    import torch

    k = len(xp)
    i = torch.searchsorted(xp.to(x.device), x.contiguous(), right=False)
    i = (i - 1).clamp(0, k - 2)
    x0, x1 = xp.to(x.device)[i], xp.to(x.device)[i + 1]
    y0, y1 = yp.to(x.device)[i], yp.to(x.device)[i + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


def unipc(
    model: Model,
    x: Any,
    steps: int,
    alphas_cumprod: Any,
    callback: Callback,
    t_start: Any = None,
) -> Any:
    """UniPC (bh1, multistep, data prediction, order 3, lower order at the end) over `steps`
    steps uniform in t from t_start (1: pure noise) to 1 / 1000."""
    import torch

    order = UNIPC_ORDER
    if steps < order:
        raise ValueError(f"UniPC needs at least {order} steps, got {steps}")
    ns = _VPSchedule(alphas_cumprod)
    t_0, t_T = 1.0 / ns.n, 1.0 if t_start is None else t_start
    times = torch.linspace(t_T, t_0, steps + 1).to(x.device)

    def data(x: Any, t: Any) -> Any:
        eps = model(x, (t - 1.0 / ns.n) * 1000.0)
        return (x - ns.std(t).reshape(-1, 1, 1, 1) * eps) / ns.alpha(t).reshape(-1, 1, 1, 1)

    n = x.shape[0]
    t = times[0].expand(n)
    models, ts = [data(x, t)], [t]
    for step in range(1, steps + 1):
        t = times[step].expand(n)
        step_order = min(step, order, steps + 1 - step)
        last = step == steps
        x, model_x = _unipc_update(ns, data, x, models, ts, t, step_order, not last)
        callback(step)
        if last:
            break
        if model_x is None:
            model_x = data(x, t)
        models, ts = [*models, model_x][-order:], [*ts, t][-order:]
    return x


def _unipc_update(
    ns: _VPSchedule,
    data: Callable[[Any, Any], Any],
    x: Any,
    models: list[Any],
    ts: list[Any],
    t: Any,
    order: int,
    correct: bool,
) -> tuple[Any, Any]:
    """One UniPC bh1 step of `order` from ts[-1] to t: the predictor, then (unless last) the
    corrector with the model at the predicted point. Returns (x, model at x or None)."""
    import torch

    lambda_prev, lambda_t = ns.lamb(ts[-1]), ns.lamb(t)
    h = lambda_t - lambda_prev
    rks, d1s = [], []
    for i in range(1, order):
        rk = ((ns.lamb(ts[-(i + 1)]) - lambda_prev) / h)[0]
        rks.append(rk)
        d1s.append((models[-(i + 1)] - models[-1]) / rk)
    rks.append(1.0)
    r = torch.tensor(rks, device=x.device)
    hh = -h[0]
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    factorial = 1
    rows, b = [], []
    for i in range(1, order + 1):
        rows.append(torch.pow(r, i - 1))
        b.append(h_phi_k * factorial / hh)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    big_r = torch.stack(rows)
    b_t = torch.tensor(b, device=x.device)
    d1 = torch.stack(d1s, dim=1) if d1s else None
    alpha_t = ns.log_alpha(t).exp().reshape(-1, 1, 1, 1)
    ratio = (ns.std(t) / ns.std(ts[-1])).reshape(-1, 1, 1, 1)
    x_base = ratio * x - alpha_t * h_phi_1 * models[-1]
    if d1 is not None:
        rhos_p = (
            torch.tensor([0.5]) if order == 2 else torch.linalg.solve(big_r[:-1, :-1], b_t[:-1])
        )
        x_t = x_base - alpha_t * hh * torch.einsum("k,bkchw->bchw", rhos_p.to(x.device), d1)
    else:
        x_t = x_base
    if not correct:
        return x_t, None
    rhos_c = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(big_r, b_t)
    rhos_c = rhos_c.to(x.device)
    model_t = data(x_t, t)
    corr = torch.einsum("k,bkchw->bchw", rhos_c[:-1], d1) if d1 is not None else 0
    return x_base - alpha_t * hh * (corr + rhos_c[-1] * (model_t - models[-1])), model_t


def sample(
    sampler: str,
    model: NoiseDenoiser,
    noise: Any,
    steps: int,
    callback: Callback,
    init_latent: Any = None,
    strength: float = 1.0,
    mode: str = "proportional",
) -> Any:
    """Run `sampler` as the WebUI runs it: txt2img from `noise` over the grid for `steps`;
    img2img from `init_latent` noised to the strength's timestep. Masked, the result keeps
    the init latent outside the mask, as processing.py blends it."""
    import torch

    alphas_cumprod = model.alphas_cumprod.to(noise.device)
    if init_latent is None:
        timesteps = torch.tensor(timestep_grid(steps), device=noise.device)
        x = noise
    else:
        schedule, t_enc = setup_img2img(strength, steps, mode)
        full = torch.tensor(timestep_grid(schedule), device=noise.device)
        timesteps = full[:t_enc]
        a = alphas_cumprod[full[t_enc]]
        x = init_latent * a.sqrt() + noise * (1 - a).sqrt()
        model.init_latent = init_latent
    if sampler == "UniPC":
        # the WebUI's img2img starts UniPC just past the last timestep it keeps
        t_start = None if init_latent is None else timesteps[-1] / 1000 + 1 / 1000
        out = unipc(model, x, len(timesteps), alphas_cumprod, callback, t_start)
    elif sampler == "PLMS":
        out = plms(model, x, timesteps, alphas_cumprod, callback)
    else:
        out = ddim(model, x, timesteps, alphas_cumprod, callback)
    if model.mask is not None:
        out = out * (1 - model.mask) + model.init_latent * model.mask
    return out
