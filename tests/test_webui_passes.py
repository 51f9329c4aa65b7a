"""What passes keep of the WebUI's other tools, on every stand-in flavour: ControlNet units per
pass (the host's ControlNet: sd-webui-controlnet on A1111, built in on reForge, Forge 2 and
Neo) and the job's always-on scripts chosen in the settings."""

import json
import sys

import numpy as np
import pytest
import test_webui
from test_webui import asgi_call, make_p, txt2img

webui = test_webui.webui  # the stand-in WebUI fixture, on every flavour

TILE = {
    "controlnet_1_model": "control_sd15_tile",
    "controlnet_1_module": "tile_resample",
    "controlnet_1_weight": 0.6,
    "controlnet_1_guidance_start": 0.1,
    "controlnet_1_guidance_end": 0.8,
    "controlnet_1_control_mode": "controlnet",
}


@pytest.fixture
def no_controlnet(monkeypatch):
    """A host without ControlNet (A1111 without the extension); before `webui` in a test's
    arguments, so the stand-in starts without it."""
    monkeypatch.setenv("MULTIPASS_STUB_CONTROLNET", "0")


def _passes(webui):
    return [c for c in webui.processing.calls if c["kind"] == "img2img"]


def _model(webui, name):
    """The name the host lists a model under (sd-webui-controlnet adds ' [hash]')."""
    from lib_multipass.webui import compat

    return compat.controlnet_host().find_model(name)


def test_a_unit_reaches_the_hosts_controlnet_with_the_pass_image_and_settings(webui):
    recipe = {"passes": [{"denoising_strength": 0.4, **TILE}, {"denoising_strength": 0.3}]}
    _p, processed = txt2img(webui, recipe=recipe, batch_size=2)
    first, second = _passes(webui)[:2], _passes(webui)[2:]
    # one image per nested job (the host's ControlNet takes one control image a job)
    assert [c["batch"] for c in first] == [1, 1]
    for call in first:
        (unit,) = call["controlnet"]
        assert unit["model"] == _model(webui, "control_sd15_tile")
        assert unit["module"] == "tile_resample"
        assert (unit["weight"], unit["guidance_start"], unit["guidance_end"]) == (0.6, 0.1, 0.8)
        assert unit["control_mode"] == "ControlNet is more important"
        # the control image is the pass's own input
        assert np.array_equal(np.asarray(unit["image"]), np.asarray(call["init"]))
    # a pass without units: nothing reaches ControlNet, which is not even among its scripts
    assert [c["controlnet"] for c in second] == [[], []]
    assert all(webui.controlnet not in c["scripts"].alwayson_scripts for c in second)
    assert [c["batch"] for c in second] == [2, 2]  # one job for both images
    assert "Multipass 1 controlnet 1 model: control_sd15_tile" in processed.infotexts[-1]
    assert "Multipass 2 controlnet" not in processed.infotexts[-1]


def test_a_tile_pass_gives_each_tile_to_controlnet(webui):
    tiles = {
        "region": "tiles",
        "tile_style": "sd-upscale",
        "tile_width": 64,
        "tile_height": 64,
        "tile_overlap": 16,
        "upscale_by": 2,
        "denoising_strength": 0.4,
        **TILE,
    }
    txt2img(webui, recipe={"passes": [tiles]})
    calls = _passes(webui)
    assert len(calls) == 9 and {c["size"] for c in calls} == {(64, 64)}
    for call in calls:
        (unit,) = call["controlnet"]
        assert unit["image"].size == (64, 64)  # the tile, never the 128x128 canvas
        assert np.array_equal(np.asarray(unit["image"]), np.asarray(call["init"]))


def test_a_crop_pass_gives_its_crop_and_two_units_go_together(webui):
    crop = {
        "region": "crop",
        "mask_source": "boxes",
        "boxes": [[8, 8, 40, 40]],
        "working_width": 64,
        "working_height": 64,
        **TILE,
        "controlnet_2_model": "control_sd15_tile",
        "controlnet_2_weight": 1.5,
    }
    txt2img(webui, recipe={"passes": [crop]})
    (call,) = _passes(webui)
    one, two = call["controlnet"]
    assert np.array_equal(np.asarray(one["image"]), np.asarray(call["init"]))
    assert one["image"].size == (64, 64)
    assert two["weight"] == 1.5 and two["module"] in ("None", "none")  # '' : no preprocessor
    assert two["control_mode"] == "Balanced"


def test_a_host_without_controlnet_refuses_a_unit_before_anything_runs(no_controlnet, webui):
    assert webui.controlnet is None
    _p, processed = txt2img(webui, recipe={"passes": [TILE]})
    assert webui.processing.calls == []
    assert "nothing was generated" in processed.comments
    assert "field 'controlnet_1_model'" in processed.comments
    assert "this WebUI has no ControlNet" in processed.comments
    webui.processing.calls.clear()
    txt2img(webui, recipe={"passes": [{"denoising_strength": 0.3}]})  # passes without run
    assert len(_passes(webui)) == 1


def test_a_model_of_another_family_is_refused_by_name(webui):
    recipe = {"passes": [{"checkpoint": "xl", **TILE}]}
    _p, processed = txt2img(webui, recipe=recipe)
    assert webui.processing.calls == []
    assert "field 'controlnet_1_model'" in processed.comments
    assert "a ControlNet model for sdxl checkpoints" in processed.comments
    assert "is for sd1" in processed.comments
    webui.processing.calls.clear()
    canny = {"controlnet_1_model": "control_sdxl_canny", "controlnet_1_module": "canny"}
    txt2img(webui, recipe={"passes": [{"checkpoint": "xl", **canny}]})
    assert _passes(webui)[0]["controlnet"][0]["module"] == "canny"


def test_the_api_names_bad_controlnet_settings_before_the_job(webui):
    from lib_multipass.webui import api, job

    check = api.RecipeCheck(lambda *a: None, job.validate_request)
    bad = {
        "controlnet_1_model": "nope",
        "controlnet_1_module": "sharpen",
        "controlnet_2_model": "control_sd15_tile",
        "controlnet_2_guidance_start": 0.5,
        "controlnet_2_guidance_end": 0.5,
    }
    body = {"alwayson_scripts": {"multipass": {"args": [True, {"passes": [bad]}]}}}
    sent = asgi_call(check, body)
    assert sent[0]["status"] == 422
    detail = json.loads(sent[1]["body"])["detail"]
    # every problem at once: the unit's own rule and the host's lists
    assert [(d["field"], d["value"]) for d in detail] == [
        ("controlnet_2_guidance_end", 0.5),
        ("controlnet_1_model", "nope"),
        ("controlnet_1_module", "sharpen"),
    ]
    assert "an ending step after the starting step (0.5)" in detail[0]["allowed"]
    assert "control_sd15_tile" in detail[1]["allowed"]
    assert "tile_resample" in detail[2]["allowed"]
    weight = {"controlnet_1_model": "control_sd15_tile", "controlnet_1_weight": 3}
    body = {"alwayson_scripts": {"multipass": {"args": [True, {"passes": [weight]}]}}}
    detail = json.loads(asgi_call(check, body)[1]["body"])["detail"]
    assert [d["field"] for d in detail] == ["controlnet_1_weight"]
    assert "from 0 to 2" in detail[0]["allowed"]
    mode = {"controlnet_1_model": "control_sd15_tile", "controlnet_1_control_mode": "Balanced"}
    body = {"alwayson_scripts": {"multipass": {"args": [True, {"passes": [mode]}]}}}
    detail = json.loads(asgi_call(check, body)[1]["body"])["detail"]
    assert "'balanced', 'prompt', 'controlnet'" in detail[0]["allowed"]


# -- the job's scripts in passes -------------------------------------------------------------


def _recording_script(title):
    from modules import scripts

    class Recording(scripts.Script):
        def __init__(self):
            self.seen = []

        def title(self):
            return title

        def show(self, is_img2img):
            return scripts.AlwaysVisible

        def process(self, p, *args):
            self.seen.append((type(p).__name__, args))

    return Recording()


def _job_with_scripts(webui, recipe):
    """A job whose runner also holds Soft Inpainting and another script, each with args."""
    soft, other = _recording_script("Soft Inpainting"), _recording_script("Other Script")
    webui.runner.add_alwayson(soft, 2)
    webui.runner.add_alwayson(other, 1)
    p = make_p(webui, recipe=recipe)
    args = list(p.script_args)
    args[soft.args_from : soft.args_to] = [True, 0.5]
    args[other.args_from : other.args_to] = ["x"]
    p.script_args = tuple(args)
    webui.processing.process_images(p)
    return soft, other


def test_a_chosen_script_runs_in_passes_with_the_jobs_args(webui):
    soft, other = _job_with_scripts(webui, {"passes": [{"denoising_strength": 0.3}]})
    # soft inpainting is among the default choices: it runs in the job and in the pass
    assert soft.seen == [
        ("StableDiffusionProcessingTxt2Img", (True, 0.5)),
        ("StableDiffusionProcessingImg2Img", (True, 0.5)),
    ]
    assert other.seen == [("StableDiffusionProcessingTxt2Img", ("x",))]
    (call,) = _passes(webui)
    names = [s.title() for s in call["scripts"].alwayson_scripts]
    assert names == ["Soft Inpainting"]  # never Multipass, never the job's ControlNet


def test_the_setting_chooses_which_scripts_run_in_passes(webui):
    webui.shared.opts.data["multipass_pass_scripts"] = ["other script"]
    soft, other = _job_with_scripts(webui, {"passes": [{"denoising_strength": 0.3}]})
    assert [kind for kind, _ in soft.seen] == ["StableDiffusionProcessingTxt2Img"]
    assert other.seen[1:] == [("StableDiffusionProcessingImg2Img", ("x",))]
    webui.shared.opts.data["multipass_pass_scripts"] = []
    soft.seen.clear(), other.seen.clear()
    webui.processing.calls.clear()
    p = make_p(webui, recipe={"passes": [{"denoising_strength": 0.3}]})
    webui.processing.process_images(p)
    assert _passes(webui)[0]["scripts"].alwayson_scripts == []


def test_a_pass_with_units_and_chosen_scripts_gets_both(webui):
    soft, _ = _job_with_scripts(webui, {"passes": [TILE]})
    (call,) = _passes(webui)
    assert [s.title() for s in call["scripts"].alwayson_scripts] == [
        "ControlNet",
        "Soft Inpainting",
    ]
    assert call["controlnet"][0]["model"] == _model(webui, "control_sd15_tile")
    assert soft.seen[-1] == ("StableDiffusionProcessingImg2Img", (True, 0.5))


def test_the_ui_hint_names_a_bad_unit_as_the_job_would():
    from lib_multipass.webui import ui

    text = ui.hint({"controlnet_1_module": "canny"}, 20)
    assert text.startswith("⚠") and "field 'controlnet_1_model'" in text
    text = ui.hint({"controlnet_2_model": "t", "controlnet_2_guidance_end": 0.0}, 20)
    assert "field 'controlnet_2_guidance_end': got 0" in text


def test_an_xyz_axis_sets_a_units_weight_per_cell(webui):
    from copy import copy

    from lib_multipass.webui import xyz

    class AxisOption:
        def __init__(self, label, type, apply, **kwargs):
            self.label, self.apply = label, apply

    xyz_module = type("XYZ", (), {"AxisOption": AxisOption})
    options = {o.label: o for o in xyz.axis_options(xyz_module, 1)}
    apply = options["[Multipass] Pass 1 controlnet 1 weight"].apply
    p = make_p(webui, recipe={"passes": [TILE]})
    cells = []
    for w in (0.5, 1.5):
        pc = copy(p)
        apply(pc, w, [0.5, 1.5])
        cells.append(pc.script_args[webui.script.args_from + 1]["passes"][0])
    assert [c["controlnet_1_weight"] for c in cells] == [0.5, 1.5]
    assert all(c["controlnet_1_model"] == "control_sd15_tile" for c in cells)


# -- the host's progress ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "recipe",
    [
        {"passes": [{"denoising_strength": 0.5}, {"denoising_strength": 0.3, **TILE}]},
        {
            "passes": [
                {
                    "region": "tiles",
                    "tile_style": "sd-upscale",
                    "tile_width": 64,
                    "tile_height": 64,
                    "tile_overlap": 16,
                    "upscale_by": 2,
                    "denoising_strength": 0.4,
                },
                {"region": "crop", "mask_source": "boxes", "boxes": [[8, 8, 40, 40]]},
            ]
        },
    ],
    ids=["whole", "tiles and crop"],
)
def test_the_hosts_bar_and_console_total_cover_the_passes(webui, recipe):
    """The WebUI's bar is job_no / job_count (+ the job's step fraction): while the passes run
    it never passes the end, and it ends at the jobs run; the console's total bar counts the
    passes' steps, so it ends at its total (it ran to 13 of 8 before)."""
    console = getattr(webui.shared, "total_tqdm", None)  # the newest Neo has none
    totals = []
    if console is not None:
        console.clear()
        webui.processing.on_call.append(
            lambda call: call["kind"] == "img2img" and totals.append(console._tqdm.total)
        )
    txt2img(webui, recipe=recipe, batch_size=2, n_iter=2)
    calls = webui.processing.calls
    state = webui.shared.state
    assert all(c["job_no"] < c["job_count"] for c in calls)
    passes = [c for c in calls if c["kind"] == "img2img"]
    # the count was right from the passes' first job: it never had to grow on the way
    assert len({c["job_count"] for c in passes}) == 1
    assert state.job_no == state.job_count
    if console is not None:
        assert set(totals) == {console._tqdm.n}  # known from the passes' first step, and right


@pytest.mark.parametrize(
    "recipe",
    [
        {"passes": [{"denoising_strength": 0.6}, {"upscale_by": 1.5, "denoising_strength": 0.5}]},
        {
            "passes": [
                {
                    "region": "tiles",
                    "tile_width": 64,
                    "tile_height": 64,
                    "tile_overlap": 16,
                    "upscale_by": 2,
                    "denoising_strength": 0.4,
                }
            ]
        },
    ],
    ids=["whole", "tiles"],
)
def test_the_hosts_bar_counts_the_passes_from_the_jobs_start_and_never_runs_back(webui, recipe):
    """A real Forge 2 showed the bar at 93% when its base images were done and 34% when the
    passes started (job_count grew from 2 to 6 then), its ETA 4 s before two minutes of passes:
    the count and the console's total include the passes from the job's first batch on, so
    the base's jobs already see them and the bar only moves forward."""
    console = getattr(webui.shared, "total_tqdm", None)
    seen = []

    def record(call):
        total = console._tqdm.total if console is not None else None
        seen.append((call["kind"], call["job_no"], call["job_count"], total))

    if console is not None:
        console.clear()
    webui.processing.on_call.append(record)
    txt2img(webui, recipe=recipe, batch_size=1, n_iter=2)
    state = webui.shared.state
    assert [k for k, *_ in seen[:2]] == ["txt2img", "txt2img"]
    assert len({count for _, _, count, _ in seen}) == 1, seen  # known before the first image
    assert state.job_no == state.job_count == seen[0][2]
    if console is not None:
        assert len({total for *_, total in seen}) == 1, seen
        assert console._tqdm.n == console._tqdm.total == seen[0][3]


def test_the_text_under_the_bar_names_the_pass_and_image_being_sampled(webui):
    """A real Forge 2 showed "pass 1, image 1 of 2" while image 2 of pass 1 sampled, and no
    text at all during the first: the text was set when a nested job had finished."""
    seen = []
    webui.processing.on_call.append(
        lambda call: call["kind"] == "img2img" and seen.append(webui.shared.state.textinfo)
    )
    recipe = {"passes": [{"denoising_strength": 0.6}, {"denoising_strength": 0.5}]}
    txt2img(webui, recipe=recipe, batch_size=1, n_iter=2)
    assert seen == [
        "Multipass: pass 1, image 1 of 2",
        "Multipass: pass 1, image 2 of 2",
        "Multipass: pass 2, image 1 of 2",
        "Multipass: pass 2, image 2 of 2",
    ]


def test_the_text_under_the_bar_names_every_image_of_a_batch_sampled_together(webui):
    """A real Forge 2 said "image 1 of 2" while a pass sampled the job's batch of two."""
    seen = []
    webui.processing.on_call.append(
        lambda call: call["kind"] == "img2img" and seen.append(webui.shared.state.textinfo)
    )
    txt2img(webui, recipe={"passes": [{"denoising_strength": 0.5}]}, batch_size=2, n_iter=1)
    assert seen == ["Multipass: pass 1, images 1-2 of 2"] * 2  # one nested job of two


def test_a_pass_on_another_checkpoint_keeps_no_other_model_alive(webui):
    """A real Forge 2 held three SD1.5 models (18.8 GB) during pass 2 of an A->B->A job: the
    base's, kept by the job's own sampler, and the one before the pass, kept by the nested
    job's arguments while the pass's model loaded and sampled. Forge frees the model it
    replaces only when nothing else holds it."""
    import gc
    import weakref

    models = []
    alive = []

    def record(call):
        models.append(weakref.ref(webui.shared.sd_model))
        if call["kind"] == "img2img":
            gc.collect()
            alive.append(len({id(m()) for m in models if m() is not None}))

    webui.processing.on_call.append(record)
    recipe = {
        "passes": [
            {"checkpoint": "photo", "denoising_strength": 0.5},
            {"checkpoint": "toon.safetensors [aaaa]", "denoising_strength": 0.3},
            {"checkpoint": "photo", "denoising_strength": 0.3},
        ]
    }
    txt2img(webui, recipe=recipe)
    assert alive == [1, 1, 1]


def test_an_img2img_jobs_console_total_counts_its_own_steps_and_the_passes_from_the_start(webui):
    """An img2img job samples t_enc + 1 steps an image (0.6 of 20: 13), which the console's
    total made at the first batch counts as the host would have."""
    console = getattr(webui.shared, "total_tqdm", None)
    if console is None:
        pytest.skip("the newest Neo has no console total")
    console.clear()
    totals = []
    webui.processing.on_call.append(lambda call: totals.append(console._tqdm.total))
    p = _img2img_p(webui, {"passes": [{"denoising_strength": 0.5}]})
    webui.processing.process_images(p)
    assert totals == [13 + 11, 13 + 11]  # the base's 13 steps and the pass's 11, from the start
    assert console._tqdm.n == 24


def test_the_count_follows_a_detect_pass_and_never_falls_behind(webui):
    """Faces are found per image, so a detect pass is counted one crop an image: here none is
    found, and both bars still end where they are; a job the count did not foresee grows it
    before it runs."""
    from lib_multipass.webui import compat

    detect = {"region": "crop", "mask_source": "detect", "detector": "opencv-face"}
    console = getattr(webui.shared, "total_tqdm", None)
    if console is not None:
        console.clear()
    txt2img(webui, recipe={"passes": [detect, {"denoising_strength": 0.3}]}, n_iter=2)
    state = webui.shared.state
    assert all(c["job_no"] < c["job_count"] for c in webui.processing.calls)
    assert state.job_no == state.job_count == 4  # 2 base jobs, 2 whole-image pass jobs
    if console is not None:
        assert console._tqdm.n == console._tqdm.total
    state.job_no, state.job_count = 7, 7
    compat.before_nested_job()
    assert state.job_count == 8


def _bar(state):
    """The host's bar as its progress API computes it (A1111 1.10.1 modules/progress.py:
    104-110, the same in Forge 2 and Neo): job_no / job_count plus the job's step fraction."""
    progress = 0.0
    if state.job_count > 0:
        progress += state.job_no / state.job_count
        if state.sampling_steps > 0:
            progress += state.sampling_step / state.sampling_steps / state.job_count
    return min(progress, 1.0)


def _img2img_p(webui, recipe, **kw):
    """An img2img job with Multipass's args set, as the UI and API build one."""
    from PIL import Image

    webui.shared.state.begin()
    fields = {
        "prompt": "a castle",
        "negative_prompt": "",
        "seed": 5,
        "steps": 20,
        "sampler_name": "Euler",
        "width": 64,
        "height": 64,
        "init_images": [Image.new("RGB", (64, 64), (90, 120, 150))],
        "denoising_strength": 0.6,
        "outpath_samples": "out",
        "outpath_grids": "grids",
    }
    p = webui.processing.StableDiffusionProcessingImg2Img(**(fields | kw))
    return test_webui.with_args(webui, p, True, recipe)


def _polled(webui):
    """What a poll of the host's progress sees after every sampling step: (bar, job_no,
    job_count, console total, console steps done)."""
    state, console = webui.shared.state, getattr(webui.shared, "total_tqdm", None)
    seen = []

    def poll():
        inner = getattr(console, "_tqdm", None)
        total, done = (inner.total, inner.n) if inner is not None else (None, None)
        seen.append((_bar(state), state.job_no, state.job_count, total, done))

    if console is not None:
        console.clear()
    webui.processing.on_step.append(poll)
    return seen


@pytest.mark.parametrize("sampler", ["Euler", "DDIM"])
@pytest.mark.parametrize("kind", ["txt2img", "hires", "img2img"])
def test_an_xyz_plots_bar_never_runs_back_across_its_cells(webui, kind, sampler):
    """A real Forge 2 ran its bar from 0.95 back to 0.76 once per further cell of an XYZ plot:
    the plot counts every cell's jobs before the first (cells * n_iter), Multipass counted a
    cell's passes at that cell's first batch, and its end of the passes set the count to the
    jobs run, dropping the cells still to come. The count covers every cell's passes from the
    first cell's first batch on, and the bar only moves forward."""
    import xyz_grid

    from lib_multipass.webui import xyz

    recipe = {"passes": [{"denoising_strength": 0.5}, {"denoising_strength": 0.4}]}
    common = {"steps": 8, "n_iter": 2, "batch_size": 1, "sampler_name": sampler}
    if kind == "img2img":
        p = _img2img_p(webui, recipe, **common)
    else:
        p = test_webui.make_p(webui, recipe=recipe, **common, enable_hr=kind == "hires")
    seen = _polled(webui)
    cells = [lambda pc, x=x: xyz.apply_value(pc, 0, "denoising_strength", x) for x in (0.3, 0.7)]
    results = xyz_grid.run(p, cells * 2 if kind == "txt2img" else cells)
    state = webui.shared.state
    assert all("Multipass result: complete" in r.infotexts[-1] for r in results)
    bars = [bar for bar, *_ in seen]
    back = next((k for k in range(1, len(bars)) if bars[k] < bars[k - 1]), None)
    assert back is None, f"the bar ran back from {bars[back - 1]:.2f} to {bars[back]:.2f}"
    assert len({count for _, _, count, *_ in seen}) == 1, seen  # every cell's, from the start
    assert state.job_no == state.job_count == seen[0][2]  # and it ends full
    if seen[0][3] is not None:  # the console's total: never passed, and met at the end
        assert all(done <= total for *_, total, done in seen)
        assert webui.shared.total_tqdm._tqdm.n == webui.shared.total_tqdm._tqdm.total


def test_an_xyz_cell_without_passes_lets_go_of_what_was_counted_for_it(webui):
    """The first cell counts every cell's passes; a later cell whose axis turns Multipass off
    runs none, so its share goes (the bar moves forward) and the bar still ends full."""
    import xyz_grid

    def off(pc):
        args = list(pc.script_args)
        args[webui.script.args_from] = False
        pc.script_args = tuple(args)

    recipe = {"passes": [{"denoising_strength": 0.5}, {"denoising_strength": 0.4}]}
    p = test_webui.make_p(webui, recipe=recipe, steps=8, n_iter=2)
    seen = _polled(webui)
    xyz_grid.run(p, [lambda pc: None, off, lambda pc: None])
    state = webui.shared.state
    bars = [bar for bar, *_ in seen]
    assert bars == sorted(bars)
    assert seen[0][2] == 6 + 3 * 4  # 3 cells of 2 jobs, 4 passes
    assert state.job_no == state.job_count == 6 + 2 * 4
    if seen[0][3] is not None:
        assert webui.shared.total_tqdm._tqdm.n == webui.shared.total_tqdm._tqdm.total


@pytest.mark.parametrize("sampler", ["DDIM", "UniPC"])
@pytest.mark.parametrize("kind", ["txt2img", "img2img"])
def test_the_console_total_counts_the_steps_the_sampler_really_runs(webui, kind, sampler):
    """DDIM and PLMS take two steps fewer than k-diffusion's samplers at an img2img strength,
    UniPC one fewer (and at 20 steps txt2img DDIM takes 19): the total counted at the first
    batch, base and passes, is what runs, from the first step on."""
    recipe = {"passes": [{"denoising_strength": 0.5}]}
    if kind == "img2img":
        p = _img2img_p(webui, recipe, sampler_name=sampler)
    else:
        p = test_webui.make_p(webui, recipe=recipe, sampler_name=sampler, n_iter=2)
    if getattr(webui.shared, "total_tqdm", None) is None:
        pytest.skip("the newest Neo has no console total")
    seen = _polled(webui)
    webui.processing.process_images(p)
    done = webui.shared.total_tqdm._tqdm.n
    assert {total for *_, total, _ in seen} == {done}, (done, seen[0])


# -- the newest Forge Neo (mid-2026) ----------------------------------------------------------


def _checkpoint(webui, name, keys):
    from pathlib import Path

    from layout import header_only

    header_only(Path(webui.sd_models.model_path) / f"{name}.safetensors", keys)
    webui.sd_models.list_models()


def test_the_newest_neo_stand_in_has_its_sources_signatures(webui):
    """Neo's newest sources: modules/sd_models.py has no reload_model_weights / load_model
    stubs; modules_forge/main_entry.py's refresh_model_loading_parameters(*, refresh=True) and
    checkpoint_change(ckpt_name, preset, save=True, refresh=True); processing.opt_f follows the
    loaded VAE. Multipass starts on it (check_host asks Forge for neither stub)."""
    import inspect

    if webui.flavour != "neo2026":
        pytest.skip("the newest Neo's own signatures")
    from modules_forge import main_entry

    from lib_multipass.webui import compat

    assert not hasattr(webui.sd_models, "reload_model_weights")
    assert not hasattr(webui.sd_models, "load_model")
    params = inspect.signature(main_entry.refresh_model_loading_parameters).parameters
    assert params["refresh"].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(inspect.signature(main_entry.checkpoint_change).parameters) == [
        "ckpt_name",
        "preset",
        "save",
        "refresh",
    ]
    assert not hasattr(webui.shared, "total_tqdm")
    compat.check_host()  # no HostError


D = "model.diffusion_model."
NEW_FAMILIES = {  # tensor names and shapes as the families' single files have them
    "klein": {
        D + "double_blocks.0.img_attn.qkv.weight": [9216, 3072],
        D + "double_stream_modulation_img.lin.weight": [18432, 3072],
    },
    "zimage": {D + "cap_embedder.1.weight": [3840, 2560]},  # Qwen3 4B captions
    "neta": {D + "cap_embedder.1.weight": [2304, 2304]},  # Lumina-2: Gemma-2 2B captions
}


@pytest.mark.parametrize("name", NEW_FAMILIES)
def test_a_crop_pass_sizes_itself_for_the_newest_neos_families(webui, name):
    if webui.flavour != "neo2026":
        pytest.skip("families of the newest Neo")
    _checkpoint(webui, name, NEW_FAMILIES[name])
    crop = {"checkpoint": name, "region": "crop", "mask_source": "boxes", "boxes": [[8, 8, 40, 40]]}
    _p, processed = txt2img(webui, recipe={"passes": [crop]})
    (call,) = _passes(webui)
    assert call["file"] == f"{name}.safetensors"
    assert call["size"] == (1024, 1024)  # the family's native area, as for SDXL and Flux
    assert "Multipass result: complete" in processed.infotexts[-1]


def test_a_pass_on_a_16x_vae_is_sampled_on_its_latent_grid(webui):
    """Wan 2.2's TI2V VAE makes the newest Neo's opt_f 16: a 72x72 pass (on the 8-pixel grid,
    not on 16) is sampled at 80x80 and comes back at 72x72; elsewhere nothing changes."""
    if webui.flavour != "neo2026":
        pytest.skip("opt_f follows the VAE on the newest Neo only")
    wan22 = {D + "head.modulation": [1, 6, 3072], D + "patch_embedding.weight": [3072, 48, 1, 2, 2]}
    _checkpoint(webui, "wan22", wan22)
    recipe = {"passes": [{"checkpoint": "wan22", "upscale_by": 1.125, "denoising_strength": 0.4}]}
    _p, processed = txt2img(webui, recipe=recipe)
    (call,) = _passes(webui)
    assert call["size"] == (80, 80) and call["file"] == "wan22.safetensors"
    first = processed.index_of_first_image
    assert processed.images[first].size == (72, 72)
    webui.processing.calls.clear()
    crop = {
        "checkpoint": "wan22",
        "region": "crop",
        "mask_source": "boxes",
        "boxes": [[8, 8, 40, 40]],
    }
    _p, processed = txt2img(webui, recipe={"passes": [crop]})
    assert webui.processing.calls == []
    assert "field 'working_width'" in processed.comments
    assert "a video model (Wan), with no one native frame size" in processed.comments


@pytest.mark.parametrize("height", [256, 768, 1536])
def test_detection_preview_labels_are_readable(height):
    """The confidence labels were the 11 px bitmap font: now at least 16 px tall, on a dark
    box, and growing with the image (previews are shown shrunk)."""
    from PIL import Image

    from lib_multipass.webui import job

    image = Image.new("RGB", (height, height), (200, 200, 200))
    job.label(image, (10, 10), "1: 0.87", (40, 220, 90))
    rows = [
        y
        for y in range(height)
        if any(image.getpixel((x, y)) != (200, 200, 200) for x in range(0, 200))
    ]
    ink = [y for y in rows if any(image.getpixel((x, y)) == (40, 220, 90) for x in range(200))]
    size = job.label_size(image)
    assert size >= max(16, height // 32)
    assert rows and max(rows) - min(rows) + 1 >= max(16, 0.75 * size)  # digits' height
    assert max(ink) - min(ink) + 1 >= 0.5 * size  # the glyphs, not just a box


def test_the_setting_offers_the_hosts_always_on_scripts(webui, monkeypatch):
    """The setting's choices are the host's always-on scripts by name, Multipass and ControlNet
    left out (a pass's ControlNet comes from its own units), with the defaults it lacks."""
    from lib_multipass.webui import settings

    webui.runner.add_alwayson(_recording_script("Soft Inpainting"), 2)
    webui.runner.add_alwayson(_recording_script("Regional Prompter"), 1)
    monkeypatch.setattr(sys.modules["modules.scripts"], "scripts_txt2img", webui.runner, False)
    choices = settings._pass_script_choices()["choices"]
    assert choices[:2] == ["soft inpainting", "regional prompter"]
    assert "multipass" not in choices and "controlnet" not in choices
    assert set(settings.DEFAULT_PASS_SCRIPTS) <= set(choices)
    assert settings.pass_scripts() == settings.DEFAULT_PASS_SCRIPTS  # not set: the defaults
    webui.shared.opts.data["multipass_pass_scripts"] = ["Soft Inpainting", ""]
    assert settings.pass_scripts() == ("soft inpainting",)


@pytest.mark.parametrize("spelling", ["none", "None", "NONE"])
def test_no_preprocessor_is_none_in_any_case_on_every_host(webui, spelling):
    """A1111's sd-webui-controlnet lists 'none', Forge's built-in 'None' (seen in a real Neo,
    which refused a recipe written on A1111): a recipe's 'none' means no preprocessor on both."""
    unit = {**TILE, "controlnet_1_module": spelling}
    txt2img(webui, recipe={"passes": [{"denoising_strength": 0.4, **unit}]})
    (call,) = _passes(webui)
    (sent,) = call["controlnet"]
    from lib_multipass.webui import compat

    assert sent["module"] == compat.controlnet_host().no_module
