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


def img2img_steps(strength: float, steps: int, mode: str = "proportional") -> StepCount:
    """The steps the WebUI runs for img2img at `strength` with `steps` sampling steps.

    proportional (the default): a schedule of `steps`, of which int(min(d, 0.999) * steps) + 1
    run. fixed ('do exactly the amount of steps the slider specifies', and hires fix): exactly
    `steps` run, over a schedule of int(steps / min(d, 0.999)). Strength 0 runs nothing: Multipass
    treats it as an upscale-only pass.
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
    d = min(strength, 0.999)
    if mode == "fixed":
        schedule = int(steps / d)
        return StepCount(steps, schedule, steps / schedule)
    run = int(d * steps) + 1
    return StepCount(run, steps, run / steps)


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
