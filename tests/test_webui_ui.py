"""The accordion's layout and its value conversions, without a browser."""

from lib_multipass.fields import PASS_FIELDS
from lib_multipass.webui import ui


def test_layout_places_every_field_once():
    placed = [name for _, rows in ui.LAYOUT for row in rows for name in row]
    assert sorted(placed) == sorted(f.name for f in PASS_FIELDS)
    assert len(placed) == len(set(placed))


def test_widget_values_round_trip():
    by = {f.name: f for f in PASS_FIELDS}
    assert ui.to_widget(by["checkpoint"], "") == "Use same checkpoint"
    assert ui.from_widget(by["checkpoint"], "Use same checkpoint") == ""
    assert ui.from_widget(by["strengths"], ui.to_widget(by["strengths"], (0.8, 0.6))) == [0.8, 0.6]
    boxes = ((1, 2, 3, 4), (5, 6, 7, 8))
    assert ui.from_widget(by["boxes"], ui.to_widget(by["boxes"], boxes)) == [list(b) for b in boxes]
    assert ui.from_widget(by["steps"], 25.0) == 25


def slots_and_values(state):
    slots = [(i, f) for i in range(len(state["passes"])) for f in PASS_FIELDS]
    values = [ui.to_widget(f, state["passes"][i][f.name]) for i, f in slots]
    return slots, values


def test_state_comes_from_every_widget_and_never_mutates_the_old():
    old = ui.default_state(2)
    slots, values = slots_and_values(old)
    assert ui.collect_state(slots, values, None) == old
    k = slots.index((1, next(f for f in PASS_FIELDS if f.name == "denoising_strength")))
    values[k] = 0.3
    new = ui.collect_state(slots, values, old)
    assert old["passes"][1]["denoising_strength"] == 0.5
    assert new["passes"][1]["denoising_strength"] == 0.3
    # a value that does not parse is kept as typed (the hint names it), never an older one
    j = slots.index((1, next(f for f in PASS_FIELDS if f.name == "strengths")))
    good = ui.collect_state(slots, [*values[:j], "0.8, 0.6", *values[j + 1 :]], new)
    assert good["passes"][1]["strengths"] == [0.8, 0.6]
    half = ui.collect_state(slots, [*values[:j], "0.8, x", *values[j + 1 :]], good)
    assert half["passes"][1]["strengths"] == "0.8, x"
    assert "('x' is not a number)" in ui.hint(half["passes"][1], 20, index=1)


def test_hints_show_the_real_steps():
    values = ui.default_pass(0)
    assert ui.hint(values | {"denoising_strength": 0.55}, 20) == (
        "0.55 at 20 steps runs 12 of 20 steps (acts as 0.60)"
    )
    chain = values | {"schedule": "list", "strengths": [0.8, 0.6], "repeats": 2}
    assert ui.hint(chain, 20).startswith("4 runs: 0.8 at 20 steps runs 17 of 20")
    assert ui.hint(values, 30, "fixed") == "0.5 at 30 steps runs 30 of 60 steps (acts as 0.50)"
    assert ui.hint(values | {"denoising_strength": 3}, 20).startswith(
        "⚠ pass 1, field 'denoising_strength'"
    )


def test_a_tile_pass_hint_says_what_its_tiles_do():
    values = ui.default_pass(0) | {"region": "tiles", "seams_fix": "half-tile"}
    text = ui.hint(values, 20)
    assert "tiles of the checkpoint's size with 32 px of context, chess order" in text
    assert "seams fix half-tile: 0.35 at 20 steps runs 8 of 20 steps" in text
    sd = values | {"tile_style": "sd-upscale", "seams_fix": "none", "tile_width": 768}
    assert ui.hint(sd, 20).startswith("⚠ pass 1, field 'tile_height'")
    sd["tile_height"] = 768
    assert "tiles of 768x768, overlapping by 64 px, blended (SD upscale)" in ui.hint(sd, 20)


def test_first_hint_uses_the_steps_slider_as_the_page_loads():
    """The hint box's value is a function gradio calls at every page load, when the steps
    slider holds its real value (the WebUI applies ui-config.json after the scripts' ui())."""
    from types import SimpleNamespace

    slider = SimpleNamespace(value=20)
    first = ui._first_hint(ui.default_pass(0), 0, slider, lambda: "proportional")
    slider.value = 30  # ui-config.json says 30
    assert first() == "0.5 at 30 steps runs 16 of 30 steps (acts as 0.53)"
    assert "assumed" not in first()
    none = ui._first_hint(ui.default_pass(0), 0, None, lambda: "proportional")
    assert none().endswith("(base steps assumed 20)")


def test_hints_escape_markup():
    values = ui.default_pass(0) | {"schedule": "list", "strengths": "<img src=x onerror=alert(1)>"}
    assert "<img" not in ui.hint_html(values, 20) and "&lt;img" in ui.hint_html(values, 20)


def test_no_widget_is_saved_to_ui_config():
    """ui-config.json keys defaults by label, which repeats in every pass: keep out of it."""
    from types import SimpleNamespace

    class Component(SimpleNamespace):
        def __init__(self, **kwargs):
            super().__init__(kwargs=kwargs)

    gr = SimpleNamespace(
        **{
            n: Component
            for n in ("Dropdown", "Image", "Checkbox", "Radio", "Number", "Slider", "Textbox")
        }
    )
    values = ui.default_pass(1)
    for f in PASS_FIELDS:
        widget = ui._widget(gr, f, "txt2img", 1, values, ui.Choices(upscalers=["Lanczos"]))
        assert widget.do_not_save_to_config is True, f.name
        assert widget.kwargs["elem_id"] == f"multipass_txt2img_p2_{f.name}"
