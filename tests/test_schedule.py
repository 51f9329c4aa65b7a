"""Denoise schedules and step arithmetic, checked against the WebUI's own formulas."""

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lib_multipass.fields import MIN_STRENGTH
from lib_multipass.recipe import parse_pass
from lib_multipass.schedule import (
    curve_strengths,
    img2img_steps,
    pass_strengths,
    timestep_grid,
    txt2img_steps,
)


def webui_steps_run(strength: float, steps: int, fix_steps: bool) -> tuple[int, int]:
    """A transcription of A1111 1.10.1's k-diffusion img2img: (steps run, schedule length).

    setup_img2img_steps() in modules/sd_samplers_common.py, then sample_img2img() in
    modules/sd_samplers_kdiffusion.py samples over sigmas[steps - t_enc - 1:], a schedule of
    `steps` + 1 sigmas; the number of steps run is the slice's length minus one.
    """
    if fix_steps:
        requested = steps
        steps = int(requested / min(strength, 0.999)) if strength > 0 else 0
        t_enc = requested - 1
    else:
        t_enc = int(min(strength, 0.999) * steps)
    start = steps - t_enc - 1  # sigma_sched = sigmas[start:] of steps + 1 sigmas
    assert start >= 0
    return (steps + 1 - start) - 1, steps


# (strength, steps, steps run, schedule) worked out by hand, float traps included:
# 0.29 * 100 = 28.999999999999996 and 0.58 * 50 = 28.999999999999996 truncate to 28
PROPORTIONAL = [
    (0.04, 20, 1, 20),
    (0.05, 20, 2, 20),
    (0.3, 20, 7, 20),
    (0.5, 20, 11, 20),
    (0.55, 20, 12, 20),
    (0.75, 20, 16, 20),
    (0.99, 20, 20, 20),
    (1.0, 20, 20, 20),
    (0.5, 30, 16, 30),
    (0.7, 30, 22, 30),
    (0.29, 100, 29, 100),
    (0.58, 50, 29, 50),
    (0.33, 30, 10, 30),
    (0.35, 1, 1, 1),
]
FIXED = [
    (0.5, 20, 20, 40),
    (0.55, 20, 20, 36),
    (0.3, 20, 20, 66),
    (1.0, 20, 20, 20),
    (0.7, 30, 30, 42),
    (0.25, 8, 8, 32),
]


@pytest.mark.parametrize(("d", "steps", "run", "schedule"), PROPORTIONAL)
def test_proportional_table(d, steps, run, schedule):
    count = img2img_steps(d, steps, "proportional")
    assert (count.run, count.schedule) == (run, schedule)
    assert (count.run, count.schedule) == webui_steps_run(d, steps, fix_steps=False)
    assert count.strength == run / schedule


@pytest.mark.parametrize(("d", "steps", "run", "schedule"), FIXED)
def test_fixed_table(d, steps, run, schedule):
    count = img2img_steps(d, steps, "fixed")
    assert (count.run, count.schedule) == (run, schedule)
    assert (count.run, count.schedule) == webui_steps_run(d, steps, fix_steps=True)


@given(st.floats(MIN_STRENGTH, 1.0), st.integers(1, 150), st.booleans())
def test_matches_webui_everywhere(d, steps, fix):
    count = img2img_steps(d, steps, "fixed" if fix else "proportional")
    assert (count.run, count.schedule) == webui_steps_run(d, steps, fix)
    assert 1 <= count.run <= count.schedule
    if not fix:
        # the real strength is never below the asked one, and at most one step above
        assert d - 1e-9 <= count.strength <= d + 1 / steps + 1e-9 or d > 0.999


# (sampler, strength, steps, mode) -> steps A1111 1.10.1 ran (the callbacks counted by running its
# own CompVisSampler.sample_img2img on a toy model: tests/data/a1111_noise.py, TIMESTEP_SAMPLED)
TIMESTEP_RUNS = [
    ("DDIM", 0.6, 10, "proportional", 5),
    ("DDIM", 0.35, 8, "fixed", 6),
    ("DDIM", 0.75, 7, "proportional", 4),
    ("PLMS", 0.6, 10, "proportional", 5),
    ("UniPC", 0.6, 10, "proportional", 6),
    ("UniPC", 0.35, 8, "fixed", 7),
    ("UniPC", 0.75, 7, "proportional", 5),
]


@pytest.mark.parametrize(("sampler", "d", "steps", "mode", "run"), TIMESTEP_RUNS)
def test_timestep_samplers_run_what_the_webui_ran(sampler, d, steps, mode, run):
    assert img2img_steps(d, steps, mode, sampler).run == run


@given(
    st.sampled_from(["DDIM", "PLMS", "UniPC"]),
    st.floats(MIN_STRENGTH, 1.0),
    st.integers(1, 150),
    st.booleans(),
)
def test_timestep_samplers_run_two_or_one_fewer(sampler, d, steps, fix):
    """DDIM and PLMS take t_enc - 1 steps, UniPC t_enc: two and one fewer than k-diffusion's
    t_enc + 1 (never below 0); txt2img, one per timestep of the grid (after the first)."""
    mode = "fixed" if fix else "proportional"
    k = img2img_steps(d, steps, mode)
    t = img2img_steps(d, steps, mode, sampler)
    assert t.run == max(k.run - (1 if sampler == "UniPC" else 2), 0)
    assert t.schedule == k.schedule
    grid = len(timestep_grid(steps))
    assert txt2img_steps(steps, sampler).run == (grid if sampler == "UniPC" else grid - 1)
    assert txt2img_steps(steps, "Euler").run == steps


def test_zero_strength_is_no_sampling():
    assert img2img_steps(0.0, 20).run == 0
    assert img2img_steps(0.0, 20, "fixed").run == 0


def test_hint_text():
    assert img2img_steps(0.55, 20).describe(0.55, 20) == (
        "0.55 at 20 steps runs 12 of 20 steps (acts as 0.60)"
    )
    assert img2img_steps(0, 20).describe(0, 20) == "0 runs no sampling steps"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.5, 20, "exact"), "step mode 'exact'"),
        ((0.5, 0), "steps must be"),
        ((1.5, 20), "denoising strength must be 0 or from 0.001 to 1"),
        ((1e-300, 20, "fixed"), "denoising strength must be 0 or from 0.001 to 1"),
    ],
)
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        img2img_steps(*args)


def loopback(initial: float, final: float, loops: int, curve: str) -> list[float]:
    """A transcription of the Loopback script's calculate_denoising_strength (scripts/loopback.py):
    iteration i runs at calculate_denoising_strength(i)."""

    def calc(loop: int) -> float:
        strength = initial
        if loops == 1:
            return strength
        progress = loop / (loops - 1)
        if curve == "Aggressive":
            strength = math.sin((progress) * math.pi * 0.5)
        elif curve == "Lazy":
            strength = 1 - math.cos((progress) * math.pi * 0.5)
        else:
            strength = progress
        change = (final - initial) * strength
        return initial + change

    return [calc(i) for i in range(loops)]


CURVE_NAMES = st.sampled_from(["linear", "aggressive", "lazy"])


@given(st.floats(0, 1), st.floats(0, 1), st.integers(1, 64), CURVE_NAMES)
def test_curves_equal_loopback(start, final, runs, curve):
    assert curve_strengths(start, final, runs, curve) == loopback(start, final, runs, curve.title())


def test_curve_known_values():
    assert curve_strengths(0.8, 0.5, 4) == pytest.approx([0.8, 0.7, 0.6, 0.5])
    aggressive = curve_strengths(0.8, 0.4, 3, "aggressive")
    assert aggressive == pytest.approx([0.8, 0.8 - 0.4 * math.sin(math.pi / 4), 0.4])
    lazy = curve_strengths(0.8, 0.4, 3, "lazy")
    assert lazy == pytest.approx([0.8, 0.8 - 0.4 * (1 - math.cos(math.pi / 4)), 0.4])
    # aggressive drops early, lazy late
    assert aggressive[1] < curve_strengths(0.8, 0.4, 3)[1] < lazy[1]


def test_pass_strengths_expand_schedules_and_repeats():
    assert pass_strengths(parse_pass({"denoising_strength": 0.4, "repeats": 3})) == [0.4] * 3
    listed = parse_pass({"schedule": "list", "strengths": [0.8, 0.6], "repeats": 2})
    assert pass_strengths(listed) == [0.8, 0.8, 0.6, 0.6]
    curve = parse_pass({"schedule": "curve", "denoising_strength": 0.8, "curve_final": 0.5})
    assert pass_strengths(curve) == pytest.approx([0.8, 0.7, 0.6, 0.5])


@given(st.floats(0, 1), st.floats(0, 1), st.integers(2, 64), CURVE_NAMES)
def test_curves_are_monotone_between_ends(start, final, runs, curve):
    values = curve_strengths(start, final, runs, curve)
    assert values[0] == start and math.isclose(values[-1], final, abs_tol=1e-12)
    lo, hi = min(start, final), max(start, final)
    assert all(lo - 1e-12 <= v <= hi + 1e-12 for v in values)
    steps = [b - a for a, b in itertools.pairwise(values)]
    assert all(s * (final - start) >= -1e-12 for s in steps)
