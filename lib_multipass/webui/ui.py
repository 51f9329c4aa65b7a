"""The Multipass accordion, built from the field table (gradio 3.41 and 4.x).

`ui()` returns two components, the enable switch and one state holding the recipe dict, so the
UI and the API share one argument shape: `[enabled, {"passes": [...]}]`. The visible widgets
keep that dict up to date; they are also the paste targets of the infotext keys.
"""

from __future__ import annotations

import base64
import copy
import html
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..fields import CONTROLNET_UNITS, PASS_FIELDS, RECIPE_FIELDS, Field
from ..infotext import KEY_PASSES, has_recipe, recipe_from_params
from ..recipe import RecipeError, coerce, plain, record_to_dict
from ..schedule import img2img_steps, pass_strengths

SAME = {
    "checkpoint": "Use same checkpoint",
    "vae": "Use same VAE",
    "sampler": "Use same sampler",
    "scheduler": "Use same scheduler",
}
# empty ControlNet fields as their dropdowns show them
for _n in range(1, CONTROLNET_UNITS + 1):
    SAME[f"controlnet_{_n}_model"] = "None (no unit)"
    SAME[f"controlnet_{_n}_module"] = "None (no preprocessor)"
DETECT_SECTION = "Detect (used when region is crop and mask source is detect)"
CONTROLNET_SECTION = (
    "ControlNet: units for this pass, each given the pass's own image (the whole image, "
    "each crop or each tile)"
)
# where each field goes: rows of the pass's main part, then rows of its folded sections
LAYOUT: tuple[tuple[str | None, tuple[tuple[str, ...], ...]], ...] = (
    (
        None,
        (
            ("enabled", "checkpoint", "denoising_strength"),
            ("prompt", "prompt_mode"),
            ("upscale_by", "upscaler"),
        ),
    ),
    (
        "Sampling and schedule",
        (
            ("negative_prompt", "negative_prompt_mode"),
            ("sampler", "scheduler", "steps", "cfg_scale"),
            ("schedule", "strengths", "repeats", "converge_below"),
            ("curve", "curve_final", "curve_passes"),
            ("seed", "seed_offset", "name"),
            ("vae", "text_encoders", "clip_skip"),
        ),
    ),
    (
        "Region: whole image, detail crop (inpaint only the mask) or tiles",
        (
            ("region", "mask_source", "boxes"),
            ("padding", "padding_unit", "padding_sides"),
            ("working_width", "working_height", "mask_blur"),
            ("mask_image", "mask_split"),
        ),
    ),
    (
        DETECT_SECTION,
        (
            ("detector", "detect_threshold", "detect_max"),
            ("detect_order", "detect_mask", "detect_merge"),
            ("detect_min_area", "detect_max_area", "detect_dilate"),
        ),
    ),
    (
        "Tiles (used when region is tiles; ultimate-style tiles also take padding and mask blur)",
        (
            ("tile_style", "tile_order", "tile_seed"),
            ("tile_width", "tile_height", "tile_overlap"),
            ("seams_fix", "seams_fix_strength"),
            ("seams_fix_width", "seams_fix_padding", "seams_fix_blur"),
        ),
    ),
)
LAYOUT += (
    (
        CONTROLNET_SECTION,
        tuple(
            row
            for n in range(1, CONTROLNET_UNITS + 1)
            for row in (
                (f"controlnet_{n}_model", f"controlnet_{n}_module", f"controlnet_{n}_weight"),
                (
                    f"controlnet_{n}_guidance_start",
                    f"controlnet_{n}_guidance_end",
                    f"controlnet_{n}_control_mode",
                ),
            )
        ),
    ),
)
PREVIEW_SECTION = DETECT_SECTION


@dataclass
class Choices:
    """The host's lists for the dropdowns."""

    checkpoints: list[str] = field(default_factory=list)
    vaes: list[str] = field(default_factory=list)
    samplers: list[str] = field(default_factory=list)
    schedulers: list[str] = field(default_factory=list)
    upscalers: list[str] = field(default_factory=list)
    text_encoders: list[str] | None = None  # None: the host cannot change them per pass
    detectors: list[str] = field(default_factory=list)
    controlnet_models: list[str] | None = None  # None: the host has no ControlNet
    controlnet_modules: list[str] = field(default_factory=list)


def elem_id(tab: str, index: int | None, name: str) -> str:
    """The elem_id of a pass widget, e.g. 'multipass_txt2img_p1_checkpoint', or of a
    job-wide one (index None), e.g. 'multipass_img2img_from_pass'."""
    if index is None:
        return f"multipass_{tab}_{name}"
    return f"multipass_{tab}_p{index + 1}_{name}"


# where a job starts and stops in its chain: job-wide widgets above the passes
CHAIN_FIELDS = tuple(f for f in RECIPE_FIELDS if f.name in ("from_pass", "stop_after"))


def zero_means(f: Field) -> str:
    """The words under a slider whose special value means something of its own."""
    means = f.special_means
    if means == "the base generation's value":
        means = "the base's"
    return f"{f.special:g} = {means}"


def default_pass(index: int, padding_unit: str = "px") -> dict[str, Any]:
    """A pass as the UI starts it: every field at its default, only the first enabled."""
    out = {
        f.name: list(f.default) if isinstance(f.default, tuple) else f.default for f in PASS_FIELDS
    }
    out["enabled"] = index == 0
    out["padding_unit"] = padding_unit
    return out


def default_state(n_passes: int, padding_unit: str = "px") -> dict[str, Any]:
    return {"passes": [default_pass(i, padding_unit) for i in range(n_passes)]}


def to_widget(f: Field, value: Any) -> Any:
    """A recipe value as its widget shows it."""
    if f.name in SAME and value == "":
        return SAME[f.name]
    if f.kind in ("floats", "sides"):
        return ", ".join(f"{x:g}" for x in value)
    if f.kind == "boxes":
        return "; ".join(" ".join(str(c) for c in b) for b in value)
    if f.kind == "names":
        return list(value)
    return value


def from_widget(f: Field, value: Any) -> Any:
    """A widget's value as the recipe holds it (raises _Bad for a value it cannot take)."""
    if f.name in SAME and value == SAME[f.name]:
        return ""
    if f.name == "mask_image" and value is not None and not isinstance(value, str):
        buf = io.BytesIO()
        value.save(buf, "PNG")
        return base64.b64encode(buf.getvalue()).decode()
    return plain(coerce(f, value, lenient=True))


def hint(
    values: dict[str, Any],
    base_steps: int | None,
    step_mode: str = "proportional",
    index: int = 0,
) -> str:
    """What the pass will really run, e.g. '0.55 at 20 steps runs 12 of 20 steps (acts as 0.60)',
    or what is wrong with it, naming every bad field."""
    from ..recipe import parse_pass

    try:
        p = parse_pass(values, index)
    except RecipeError as e:
        return "⚠ " + "; ".join(str(problem) for problem in e.problems)
    steps = p.steps or base_steps or 20
    where = "" if p.steps or base_steps else " (base steps assumed 20)"
    parts = []
    for s in dict.fromkeys(pass_strengths(p)):
        parts.append(img2img_steps(s, steps, step_mode, p.sampler).describe(s, steps))
    runs = len(pass_strengths(p))
    head = f"{runs} runs: " if runs > 1 else ""
    return head + "; ".join(parts) + where + _region_hint(p, steps, step_mode)


def _region_hint(p: Any, steps: int, step_mode: str) -> str:
    """What a tile pass samples, as far as the pass alone says (the canvas comes with the job)."""
    if p.region != "tiles":
        return ""
    size = f"{p.tile_width}x{p.tile_height}" if p.tile_width else "the checkpoint's size"
    text = f"; tiles of {size}"
    if p.tile_style == "sd-upscale":
        text += f", overlapping by {p.tile_overlap} px, blended (SD upscale)"
    else:
        text += f" with {p.padding:g} {p.padding_unit} of context, {p.tile_order} order"
        if p.seams_fix != "none":
            seams = img2img_steps(p.seams_fix_strength, steps, step_mode, p.sampler)
            text += f"; seams fix {p.seams_fix}: {seams.describe(p.seams_fix_strength, steps)}"
    return text


def hint_html(
    values: dict[str, Any], base_steps: int | None, step_mode: str = "proportional", index: int = 0
) -> str:
    """The hint as the pass's HTML box shows it (escaped: pasted text may hold markup)."""
    return html.escape(hint(values, base_steps, step_mode, index))


def steps_value(component: Any) -> int | None:
    """The steps slider's current value, if it has a usable one."""
    try:
        value = int(getattr(component, "value", None) or 0)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def _first_hint(
    values: dict[str, Any], index: int, base_steps: Any, step_mode: Callable[[], str]
) -> Callable[[], str]:
    def first() -> str:
        return hint_html(values, steps_value(base_steps), step_mode(), index)

    return first


def collect_state(
    slots: list[tuple[int | None, Field]], values: list[Any], previous: dict[str, Any] | None
) -> dict[str, Any]:
    """The state dict from every widget's value at once (a new dict; `previous` is untouched).

    Deriving the whole recipe from all widgets on every change means two quick edits can
    never overwrite each other, as a read-modify-write of one field at a time could. A value
    that does not parse is kept as typed, never replaced by an older one: the pass's hint
    names it, and a job started with it generates nothing and says why, as the API does.
    """
    n = 1 + max((i for i, _ in slots if i is not None), default=-1)
    new: dict[str, Any] = {"passes": [default_pass(i) for i in range(n)]}
    for (i, f), value in zip(slots, values, strict=True):
        into = new if i is None else new["passes"][i]  # None: a job-wide field
        try:
            into[f.name] = from_widget(f, value)
        except Exception:
            into[f.name] = copy.deepcopy(value)
    return new


def _pasted_recipe(params: dict[str, Any]) -> Any:
    """The recipe in pasted infotext, or None where it holds none or one that does not parse
    (a paste callback then changes nothing)."""
    if not has_recipe(params):
        return None
    try:
        return recipe_from_params(params)
    except RecipeError:
        return None


def paste_value(
    index: int, f: Field, checkpoint_entry: Callable[[str], str] = lambda name: name
) -> Callable[[dict[str, Any]], Any]:
    """A paste callback: the field's value from pasted infotext, its default where the recipe
    leaves it out, and no change at all when the text holds no Multipass recipe.

    A checkpoint becomes the entry this host's dropdown lists for it (a text from another
    WebUI may name it by title, with or without a hash).
    """

    def read(params: dict[str, Any]) -> Any:
        recipe = _pasted_recipe(params)
        if recipe is None:
            return None
        if index >= len(recipe.passes):
            return False if f.name == "enabled" else to_widget(f, f.default)
        value = getattr(recipe.passes[index], f.name)
        if f.name == "checkpoint" and value:
            value = checkpoint_entry(value)
        return to_widget(f, value)

    return read


def chain_start(recipe: Any, continuing: bool) -> dict[str, int]:
    """Where a pasted chain starts and stops. Pasted into img2img (`continuing`), the image
    of a chain stopped after pass K goes on at pass K + 1 to the end; elsewhere (txt2img, to
    make it again) the chain starts and stops where its infotext says."""
    if continuing and recipe.stop_after:
        return {"from_pass": recipe.stop_after + 1, "stop_after": 0}
    return {"from_pass": recipe.from_pass, "stop_after": recipe.stop_after}


def chain_paste(f: Field, continuing: bool) -> Callable[[dict[str, Any]], Any]:
    """A paste callback of a job-wide chain widget (start, stop), as chain_start says."""

    def read(params: dict[str, Any]) -> Any:
        recipe = _pasted_recipe(params)
        return None if recipe is None else chain_start(recipe, continuing)[f.name]

    return read


def recipe_state_from_params(
    params: dict[str, Any], n_passes: int, continuing: bool = False
) -> dict[str, Any] | None:
    """The state dict for pasted infotext (None when it holds no recipe); `continuing`: pasted
    into img2img, where a stopped chain goes on (chain_start)."""
    if not has_recipe(params):
        return None
    recipe = recipe_from_params(params)
    passes = [record_to_dict(p, PASS_FIELDS) for p in recipe.passes]
    while len(passes) < n_passes:
        extra = default_pass(len(passes))
        extra["enabled"] = False
        passes.append(extra)
    return {"passes": passes, **chain_start(recipe, continuing)}


def build(
    gr: Any,
    input_accordion: Any,
    tab: str,
    n_passes: int,
    choices: Choices,
    padding_unit: str = "px",
    base_steps: Any = None,
    step_mode: Callable[[], str] = lambda: "proportional",
    refresh_checkpoints: Callable[[], list[str]] | None = None,
    no_progress: Any = False,
    checkpoint_entry: Callable[[str], str] = lambda name: name,
    preview: Callable[[dict[str, Any], Any], tuple[Any, str]] | None = None,
) -> tuple[Any, Any, list[tuple[Any, Any]], dict[str, Any]]:
    """Build the accordion; returns (enable switch, state, paste fields, widgets by elem_id)."""
    state_value = default_state(n_passes, padding_unit)
    widgets: dict[str, Any] = {}
    paste: list[tuple[Any, Any]] = []
    slots: list[tuple[int | None, Field]] = []
    hints: list[Any] = []
    continuing = tab == "img2img"
    with input_accordion(False, label="Multipass", elem_id=f"multipass_{tab}") as enabled:
        state = gr.State(value=state_value)
        gr.HTML(
            "<p class='multipass-note'>Passes run after the generation, each on the output of "
            "the one before, over every image of the job.</p>"
        )
        with gr.Row():
            for f in CHAIN_FIELDS:
                widget = _chain_widget(gr, f, tab, continuing)
                widgets[elem_id(tab, None, f.name)] = widget
                slots.append((None, f))
                paste.append((widget, chain_paste(f, continuing)))
        for i in range(n_passes):
            with gr.Accordion(
                label=f"Pass {i + 1}", open=i == 0, elem_id=f"multipass_{tab}_p{i + 1}"
            ):
                hint_box = gr.HTML(
                    # a function: gradio calls it on every page load, when the tab's steps
                    # slider holds its real value (the WebUI applies ui-config.json after ui())
                    value=_first_hint(state_value["passes"][i], i, base_steps, step_mode),
                    elem_id=elem_id(tab, i, "hint"),
                    elem_classes=["multipass-hint"],
                )
                made: dict[str, Any] = {}
                wire_preview = None
                for section, rows in LAYOUT:
                    values = state_value["passes"][i]
                    if section is None:
                        _rows(gr, rows, made, tab, i, values, choices, refresh_checkpoints)
                        continue
                    with gr.Accordion(label=section, open=False):
                        _rows(gr, rows, made, tab, i, values, choices, refresh_checkpoints)
                        if section == PREVIEW_SECTION and preview is not None:
                            wire_preview = _preview_row(gr, tab, i, preview)
                if wire_preview is not None:  # once every widget of the pass is made
                    wire_preview([made[f.name] for f in PASS_FIELDS])
                hints.append(hint_box)
                for f in PASS_FIELDS:
                    widgets[elem_id(tab, i, f.name)] = made[f.name]
                    slots.append((i, f))
                    if f.infotext is not None:
                        paste.append((made[f.name], paste_value(i, f, checkpoint_entry)))
        _wire(gr, tab, slots, widgets, state, hints, base_steps, step_mode, no_progress)

    paste.append((enabled, lambda params: True if KEY_PASSES in params else None))
    # the state too: the API's "infotext" field fills script args only from paste targets
    # that are script inputs, which the visible widgets are not
    paste.append((state, lambda params: _state_or_none(params, n_passes, continuing)))
    return enabled, state, paste, widgets


def chain_hint(state: dict[str, Any], index: int) -> str:
    """What a pass's hint says first when the job does not run it: a pass before the start
    made the image this job goes on from; a pass after the stop is for a later job."""
    try:
        start = int(state.get("from_pass", 1) or 1)
        stop = int(state.get("stop_after", 0) or 0)
    except (TypeError, ValueError):
        return ""
    if index + 1 < start:
        return f"Ran before: this job starts at pass {start}, from the image it is given. "
    if stop and index + 1 > stop:
        return f"After the stop: this job stops after pass {stop}; a later job goes on here. "
    return ""


def _chain_widget(gr: Any, f: Field, tab: str, continuing: bool) -> Any:
    """A job-wide chain widget: where the job starts (in img2img, from the image sent there)
    and where it stops."""
    info = (
        "The image sent here is the output of the pass before this one"
        if f.name == "from_pass" and continuing
        else "Stop here, pick the best image, Send to img2img: it goes on at the next pass"
        if f.name == "stop_after"
        else "Passes before this one are skipped"
    )
    lo = f.special if f.special is not None else f.minimum
    widget = gr.Slider(
        minimum=lo,
        maximum=f.maximum,
        step=1,
        value=f.default,
        label=f.label + (" (0: the last)" if f.special is not None else ""),
        info=info,
        elem_id=elem_id(tab, None, f.name),
    )
    widget.do_not_save_to_config = True
    return widget


def _preview_row(gr: Any, tab: str, index: int, preview: Callable) -> Callable[[list[Any]], None]:
    """A button that shows what this pass's detector finds, as its settings stand, on an image
    given here or else the last image this tab made: chosen ones green and numbered in their
    order, the rest red, each with its confidence. Returns the function that wires it to the
    pass's widgets."""
    with gr.Row():
        source = gr.Image(
            label="Preview on (empty: the last image made here)",
            type="pil",
            elem_id=elem_id(tab, index, "preview_source"),
        )
        shown = gr.Image(
            label="Detections", interactive=False, elem_id=elem_id(tab, index, "preview")
        )
    note = gr.HTML(elem_id=elem_id(tab, index, "preview_note"))
    button = gr.Button(
        "Preview detections", elem_id=elem_id(tab, index, "preview_button"), size="sm"
    )
    for widget in (source, shown, button):
        widget.do_not_save_to_config = True

    def on_click(image, *widget_values):
        slots = [(index, f) for f in PASS_FIELDS]
        values = collect_state(slots, list(widget_values), None)["passes"][index]
        drawn, text = preview(values, image)
        return drawn, html.escape(text)

    def wire(pass_widgets: list[Any]) -> None:
        button.click(
            fn=on_click,
            inputs=[source, *pass_widgets],
            outputs=[shown, note],
            api_name=api_name(elem_id(tab, index, "preview"), "click"),
        )

    return wire


def _state_or_none(
    params: dict[str, Any], n_passes: int, continuing: bool = False
) -> dict[str, Any] | None:
    try:
        return recipe_state_from_params(params, n_passes, continuing)
    except RecipeError:
        return None


def _rows(gr, rows, made, tab, i, values, choices, refresh) -> None:
    by_name = {f.name: f for f in PASS_FIELDS}
    for row in rows:
        with gr.Row():
            for name in row:
                made[name] = _widget(gr, by_name[name], tab, i, values, choices)
                if name == "checkpoint" and refresh is not None:
                    _refresh_button(gr, made[name], tab, i, refresh)


def _refresh_button(gr, dropdown, tab, index, refresh) -> None:
    button = gr.Button(
        value="\u21bb",
        elem_id=elem_id(tab, index, "refresh"),
        elem_classes=["multipass-refresh"],
        size="sm",
        scale=0,
        min_width=40,
    )

    button.do_not_save_to_config = True  # the same "↻" in every pass: see _widget

    def on_click():
        return gr.update(choices=[SAME["checkpoint"], *refresh()])

    name = api_name(elem_id(tab, index, "refresh"), "click")
    button.click(fn=on_click, inputs=[], outputs=[dropdown], api_name=name)


def api_name(widget_id: str, event: str) -> str:
    """The api_name of one of Multipass's events, e.g. 'multipass_txt2img_p1_steps_change':
    javascript/multipass.js describes every event whose name starts with "multipass_" to
    gradio 4.40's page, whose client otherwise warns "Too many arguments provided for the
    endpoint" each time one sends its values (it finds no description of an event sent by
    number); unique names, as gradio 3.41 warns of a repeated one."""
    return f"{widget_id}_{event}"


def _wire(gr, tab, slots, widgets, state, hints, base_steps, step_mode, no_progress) -> None:
    """Every widget's change recomputes the state (and hints) from all widgets (the state is
    an output only: every value in it comes from the widgets)."""
    names = [elem_id(tab, i, f.name) for i, f in slots]
    inputs = [widgets[name] for name in names]
    extra = [base_steps] if base_steps is not None else []
    if extra:
        names.append(elem_id(tab, None, "base_steps"))

    def on_change(*values):
        widget_values = list(values[: len(slots)])
        steps = values[len(slots)] if extra else None
        new = collect_state(slots, widget_values, None)
        base = int(steps) if steps else None
        hints = (
            chain_hint(new, i) + hint_html(p, base, step_mode(), i)
            for i, p in enumerate(new["passes"])
        )
        return [new, *hints]

    options: dict[str, Any] = {"show_progress": no_progress}
    if no_progress == "hidden":  # gradio 4: one queue for the accordion keeps events in order
        options["concurrency_id"] = f"multipass_{tab}"
    for name, widget in zip(names, [*inputs, *extra], strict=True):
        widget.change(
            fn=on_change,
            inputs=[*inputs, *extra],
            outputs=[state, *hints],
            api_name=api_name(name, "change"),
            **options,
        )


def _widget(gr, f: Field, tab: str, i: int, values: dict[str, Any], choices: Choices) -> Any:
    widget = _make_widget(gr, f, tab, i, values, choices)
    # The WebUI's ui-config.json keys saved defaults by tab and label: every pass has a
    # "Checkpoint" and an "Enable pass", so pass 1's saved values would become every pass's
    # defaults after a restart. The field table and the settings hold Multipass's defaults.
    widget.do_not_save_to_config = True
    return widget


def _make_widget(gr, f: Field, tab: str, i: int, values: dict[str, Any], choices: Choices) -> Any:
    eid = elem_id(tab, i, f.name)
    value = to_widget(f, values[f.name])
    lists = {
        "checkpoint": choices.checkpoints,
        "vae": choices.vaes,
        "sampler": choices.samplers,
        "scheduler": choices.schedulers,
    }
    common: dict[str, Any] = {"label": f.label, "elem_id": eid}
    if f.name in ("prompt", "padding"):
        common["info"] = f.help
    elif f.special is not None and f.kind in ("int", "float"):
        common["info"] = zero_means(f)  # a bare 0 says nothing
    if f.name.startswith("controlnet_") and f.name.endswith(("_model", "_module")):
        offered = (
            choices.controlnet_models if f.name.endswith("_model") else (choices.controlnet_modules)
        )
        return gr.Dropdown(
            choices=[SAME[f.name], *(offered or [])],
            value=value,
            allow_custom_value=True,  # a pasted name from another WebUI stays as typed
            **common,
        )
    if f.name in lists:
        return gr.Dropdown(choices=[SAME[f.name], *lists[f.name]], value=value, **common)
    if f.name == "text_encoders":
        offered = choices.text_encoders
        return gr.Dropdown(
            choices=offered or [],
            value=value,
            multiselect=True,
            visible=offered is not None,
            **common,
        )
    if f.name == "detector":
        offered = list(choices.detectors) or [f.default]
        return gr.Dropdown(choices=offered, value=value, allow_custom_value=True, **common)
    if f.name == "upscaler":
        opts = choices.upscalers or [f.default]
        return gr.Dropdown(choices=opts, value=value if value in opts else opts[0], **common)
    if f.name == "mask_image":
        return gr.Image(label=f.label, type="pil", image_mode="L", elem_id=eid)
    if f.kind == "bool":
        return gr.Checkbox(value=value, **common)
    if f.kind == "choice":
        return gr.Radio(choices=list(f.choices), value=value, **common)
    if f.kind in ("int", "float"):
        lo = f.special if f.special is not None else f.minimum
        if f.name == "padding" or f.maximum - lo > 5000:
            return gr.Number(value=value, precision=0 if f.kind == "int" else None, **common)
        return gr.Slider(minimum=lo, maximum=f.maximum, step=f.step or 1, value=value, **common)
    lines = 2 if f.name in ("prompt", "negative_prompt") else 1
    return gr.Textbox(value=value, lines=lines, **common)
