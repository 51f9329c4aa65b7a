"""Denoise schedules and the img2img step arithmetic of the WebUI.

Denoising strength is discrete: at N steps the WebUI can only start at a step boundary. These
functions say which steps really run, so users see what a strength does before they wait for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .fields import CURVES, MIN_STRENGTH, STEP_MODES


@dataclass(frozen=True)
class StepCount:
    """What an img2img run at a strength really does.

    run: sampling steps executed; schedule: length of the noise schedule they are taken from;
    strength: the fraction of the schedule that runs, i.e. the strength that really is.
    """

    run: int
    schedule: int
    strength: float

    def describe(self, asked: float, steps: int) -> str:
        """A one-line hint such as '0.55 at 20 steps runs 12 of 20 steps (acts as 0.60)'."""
        if self.run == 0:
            return f"{asked:g} runs no sampling steps"
        return (
            f"{asked:g} at {steps} steps runs {self.run} of {self.schedule} steps "
            f"(acts as {self.strength:.2f})"
        )


# the WebUI's samplers that walk the model's timesteps (sd_samplers_timesteps.py), not sigmas
TIMESTEP_SAMPLERS = ("DDIM", "PLMS", "UniPC")
UNIPC_ORDER = 3  # UniPC needs at least this many steps (the WebUI's "UniPC order" default)


def least_steps(sampler: str) -> int:
    """The fewest steps a run of `sampler` may take: UniPC its order (the WebUI stops with
    "UniPC order must be < sampling steps"), the others one (a timestep sampler's img2img that
    takes none gives back the image noised, undenoised)."""
    return UNIPC_ORDER if sampler == "UniPC" else 1


def timestep_grid(steps: int) -> list[int]:
    """The WebUI's timesteps for `steps` steps: range(0, 1000, 1000 // steps) + 1, clipped to
    999 (CompVisSampler.get_timesteps), so 7 steps make 8 timesteps and 30 make 31."""
    return [min(t + 1, 999) for t in range(0, 1000, max(1000 // steps, 1))]


def timestep_steps(sampler: str, timesteps: int) -> int:
    """The steps a timestep sampler takes over `timesteps` timesteps: DDIM and PLMS one per
    timestep after the first, UniPC one per timestep."""
    return timesteps if sampler == "UniPC" else max(timesteps - 1, 0)


def setup_img2img(strength: float, steps: int, mode: str = "proportional") -> tuple[int, int]:
    """(schedule steps, t_enc) of the WebUI's setup_img2img_steps for a strength above 0."""
    d = min(strength, 0.999)
    if mode == "fixed":
        return int(steps / d), steps - 1
    return steps, int(d * steps)


def txt2img_steps(steps: int, sampler: str = "") -> StepCount:
    """The steps the WebUI runs for txt2img with `steps` steps: all of them, but for the
    timestep samplers, which take as many as their grid gives."""
    if sampler in TIMESTEP_SAMPLERS:
        return StepCount(timestep_steps(sampler, len(timestep_grid(steps))), steps, 1.0)
    return StepCount(steps, steps, 1.0)


def img2img_steps(
    strength: float, steps: int, mode: str = "proportional", sampler: str = ""
) -> StepCount:
    """The steps the WebUI runs for img2img at `strength` with `steps` sampling steps.

    proportional (the default): a schedule of `steps`, of which int(min(d, 0.999) * steps) + 1
    run. fixed ('do exactly the amount of steps the slider specifies', and hires fix): exactly
    `steps` run, over a schedule of int(steps / min(d, 0.999)). Strength 0 runs nothing: Multipass
    treats it as an upscale-only pass. The timestep samplers (DDIM, PLMS, UniPC) noise the image
    to the grid's timestep t_enc and take their steps over the t_enc timesteps below it: DDIM and
    PLMS one fewer, so two fewer than the others.
    """
    if mode not in STEP_MODES:
        raise ValueError(f"step mode {mode!r} is not one of {', '.join(STEP_MODES)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number of at least 1, got {steps!r}")
    if not (strength == 0 or MIN_STRENGTH <= strength <= 1.0):
        raise ValueError(
            f"denoising strength must be 0 or from {MIN_STRENGTH} to 1, got {strength!r}"
        )
    if strength == 0:
        return StepCount(0, steps, 0.0)
    schedule, t_enc = setup_img2img(strength, steps, mode)
    if sampler in TIMESTEP_SAMPLERS:
        return StepCount(timestep_steps(sampler, t_enc), schedule, t_enc / schedule)
    return StepCount(t_enc + 1, schedule, (t_enc + 1) / schedule)


def curve_strengths(start: float, final: float, runs: int, curve: str = "linear") -> list[float]:
    """Strengths of a curve schedule, with the Loopback script's formulas.

    Run i of n has progress t = i / (n - 1); linear uses t, aggressive sin(t * pi / 2), lazy
    1 - cos(t * pi / 2); strength = start + (final - start) * curve(t). One run is `start`.
    """
    if curve not in CURVES:
        raise ValueError(f"curve {curve!r} is not one of {', '.join(CURVES)}")
    if runs < 1:
        raise ValueError(f"a curve needs at least 1 run, got {runs!r}")
    if runs == 1:
        return [start]
    out = []
    for i in range(runs):
        t = i / (runs - 1)
        if curve == "aggressive":
            k = math.sin(t * math.pi * 0.5)
        elif curve == "lazy":
            k = 1 - math.cos(t * math.pi * 0.5)
        else:
            k = t
        out.append(start + (final - start) * k)
    return out


def pass_strengths(p: Any) -> list[float]:
    """Every run's strength for one pass: its schedule expanded, each strength repeated."""
    if p.schedule == "list":
        base = list(p.strengths)
    elif p.schedule == "curve":
        base = curve_strengths(p.denoising_strength, p.curve_final, p.curve_passes, p.curve)
    else:
        base = [p.denoising_strength]
    return [s for s in base for _ in range(p.repeats)]
