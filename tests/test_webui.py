"""The WebUI extension's real code, run against a thin stand-in of the WebUI's `modules`
(tests/webui_stub), in four flavours faithful to A1111 1.10.1, reForge, Forge 2 and Forge Neo."""

import asyncio
import importlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from PIL import Image

STUB = ROOT / "tests" / "webui_stub"
FLAVOURS = ["a1111", "reforge", "forge", "neo", "neo2026"]
RECIPE = {
    "passes": [
        {"checkpoint": "photo", "denoising_strength": 0.5},
        {
            "checkpoint": "toon.safetensors [aaaa]",
            "denoising_strength": 0.3,
            "prompt": "detailed",
            "prompt_mode": "append",
        },
    ]
}


def _purge():
    for name in list(sys.modules):
        if name.split(".")[0] in (
            "modules",
            "modules_forge",
            "multipass_script",
            "lib_controlnet",
            "extensions",
        ) or name.startswith("lib_multipass.webui"):
            del sys.modules[name]


@pytest.fixture(params=FLAVOURS)
def webui(request, monkeypatch, tmp_path):
    """A fresh stand-in WebUI with the Multipass script loaded as the host loads it."""
    monkeypatch.setenv("MULTIPASS_STUB_FLAVOUR", request.param)
    monkeypatch.setenv("MULTIPASS_STUB_MODELS", str(tmp_path / "models"))
    monkeypatch.syspath_prepend(str(STUB))
    from layout import lay_out_models  # tests/webui_stub/layout.py

    lay_out_models(tmp_path / "models")
    _purge()
    from modules import processing, scripts, sd_models, sd_vae, shared

    sd_models.list_models()
    sd_vae.refresh_vae_list()
    if request.param in ("forge", "neo", "neo2026"):
        from modules_forge import main_entry

        main_entry.refresh_models()
        main_entry.refresh_model_loading_parameters()
        sd_models.forge_model_reload()
    else:
        sd_models.reload_model_weights()
    sd_models.loads.clear()
    shared.opts.data.writes.clear()
    shared.sd_upscalers = [type("U", (), {"name": n})() for n in ("Lanczos", "R-ESRGAN 4x+")]
    spec = importlib.util.spec_from_file_location(
        "multipass_script", ROOT / "scripts" / "multipass.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    script = module.MultipassScript()
    runner = scripts.ScriptRunner()
    controlnet = host_controlnet()
    if controlnet is not None:  # loaded before Multipass, as its sorting priority says
        runner.add_alwayson(controlnet, 3)
    runner.add_alwayson(script, 2)
    scripts.scripts_data.append(
        scripts.ScriptClassData(type(script), "scripts/multipass.py", str(ROOT), module)
    )
    yield type(
        "WebUI",
        (),
        {
            "flavour": request.param,
            "forge": request.param in ("forge", "neo", "neo2026"),
            "user": shared.opts.sd_model_checkpoint,
            "runner": runner,
            "script": script,
            "module": module,
            "processing": processing,
            "shared": shared,
            "sd_models": sd_models,
            "controlnet": controlnet,
        },
    )
    # the user's settings were never written, not even for a moment, and never saved
    assert [k for k, _ in shared.opts.data.writes if k == "sd_model_checkpoint"] == []
    assert shared.opts.saved == []
    processing.calls.clear()
    processing.on_call.clear()
    processing.on_step.clear()
    _purge()


def host_controlnet():
    """The host's ControlNet script, as the host loads it (None where it has none): A1111's
    from the sd-webui-controlnet extension, the others' built in."""
    import os

    if os.environ.get("MULTIPASS_STUB_CONTROLNET") == "0":
        return None
    if os.environ["MULTIPASS_STUB_FLAVOUR"] == "a1111":
        ext = importlib.import_module("extensions.sd-webui-controlnet.scripts.external_code")
        return ext.ControlNetScript()
    return importlib.import_module("lib_controlnet.external_code").ControlNetForForgeOfficial()


def disabled_units(webui):
    """The ControlNet args of a job whose units are all off, as the UI sends them."""
    cn = webui.controlnet
    if webui.flavour == "a1111":
        return [{"enabled": False}] * (cn.args_to - cn.args_from)
    unit = importlib.import_module("lib_controlnet.external_code").ControlNetUnit
    return [unit(enabled=False) for _ in range(cn.args_to - cn.args_from)]


def with_args(webui, p, enabled, recipe):
    """`p` run by the host's scripts with Multipass's args set (ControlNet's units off)."""
    p.scripts = webui.runner
    args = [None] * len(webui.runner.inputs)
    args[webui.script.args_from] = enabled
    args[webui.script.args_from + 1] = recipe
    if webui.controlnet is not None:
        cn = webui.controlnet
        args[cn.args_from : cn.args_to] = disabled_units(webui)
    p.script_args = tuple(args)
    return p


def make_p(webui, enabled=True, recipe=RECIPE, **kw):
    """A txt2img job with Multipass's args set, as the UI and API build one."""
    webui.shared.state.begin()  # as the UI and API do before the job's args are set
    fields = {
        "prompt": "a castle",
        "negative_prompt": "blurry",
        "seed": 100,
        "steps": 20,
        "sampler_name": "Euler a",
        "width": 64,
        "height": 64,
        "outpath_samples": "out",
        "outpath_grids": "grids",
    }
    p = webui.processing.StableDiffusionProcessingTxt2Img(**(fields | kw))
    return with_args(webui, p, enabled, recipe)


def txt2img(webui, enabled=True, recipe=RECIPE, **kw):
    p = make_p(webui, enabled, recipe, **kw)
    return p, webui.processing.process_images(p)


def errors_reported():
    from modules import errors

    return [str(e) for _, e in errors.reported]


def test_title_is_the_api_key(webui):
    assert webui.script.title().lower() == "multipass"
    assert webui.script.show(False) is sys.modules["modules.scripts"].AlwaysVisible


def test_a_pass_clip_skip_is_an_override_and_the_users_setting_stays(webui):
    """A pass's clip skip reaches its nested job as the host's own XYZ "Clip skip" axis sets it
    (override_settings CLIP_stop_at_last_layers, the same name in A1111, reForge, Forge 2 and
    Neo); a pass with 0 keeps the user's; the user's setting is back after the job, never
    saved; the infotext says it."""
    webui.shared.opts.data["CLIP_stop_at_last_layers"] = 2  # the user's own setting
    recipe = {
        "passes": [
            {"denoising_strength": 0.3, "clip_skip": 1},
            {"denoising_strength": 0.3},
            {"denoising_strength": 0.3, "clip_skip": 3},
        ]
    }
    _p, processed = txt2img(webui, recipe=recipe)
    calls = webui.processing.calls
    assert [c["clip_skip"] for c in calls] == [2, 1, 2, 3]
    assert [c["override"] for c in calls[1:]] == [
        {"CLIP_stop_at_last_layers": 1},
        {},
        {"CLIP_stop_at_last_layers": 3},
    ]
    assert webui.shared.opts.CLIP_stop_at_last_layers == 2
    assert "Multipass 1 clip skip: 1" in processed.infotexts[-1]
    assert "Multipass 3 clip skip: 3" in processed.infotexts[-1]


def test_disabled_does_nothing(webui):
    _p, processed = txt2img(webui, enabled=False)
    assert [c["kind"] for c in webui.processing.calls] == ["txt2img"]
    assert "Multipass passes" not in processed.infotexts[0]


def test_passes_run_grouped_by_checkpoint_across_the_job(webui):
    _p, _processed = txt2img(webui, n_iter=3, batch_size=2)
    calls = webui.processing.calls
    kinds = [(c["kind"], c["checkpoint"]) for c in calls]
    assert kinds[:6] == [("txt2img", "toon.safetensors [aaaa]")] * 6
    assert kinds[6:12] == [("img2img", "photo.safetensors [bbbb]")] * 6
    assert kinds[12:] == [("img2img", "toon.safetensors [aaaa]")] * 6
    # two switches for six images, as for one; the user's checkpoint is loaded afterwards
    assert webui.sd_models.loads == ["photo.safetensors", "toon.safetensors"]
    assert webui.shared.sd_model.sd_checkpoint_info.title == "toon.safetensors [aaaa]"
    assert webui.shared.opts.sd_model_checkpoint == webui.user
    # the setting was the user's while every pass ran, on every host
    assert {c["setting"] for c in calls} == {webui.user}
    # the seeds follow the images, the prompts the recipe, the strengths the passes
    assert [c["seed"] for c in calls[6:12]] == [100, 101, 102, 103, 104, 105]
    assert {c["prompt"] for c in calls[12:]} == {"a castle, detailed"}
    assert [c["strength"] for c in calls[6:]] == [0.5] * 6 + [0.3] * 6
    # nested passes: no scripts, no saving, no host crop (Multipass crops itself)
    assert all(len(c["scripts"].alwayson_scripts) == 0 for c in calls[6:])


def test_gallery_and_saved_files_are_the_finished_images(webui):
    from modules import images

    images.saved.clear()
    _p, processed = txt2img(webui, batch_size=2)
    finals = processed.images[processed.index_of_first_image :]
    calls = webui.processing.calls
    assert len(finals) == 2
    # the last pass's outputs, not the base images
    base = [c for c in calls if c["kind"] == "txt2img"]
    assert base and finals[0].getpixel((0, 0)) != Image.new("RGB", (1, 1)).getpixel((0, 0))
    saved = [s for s in images.saved if not s["grid"]]
    assert [s["seed"] for s in saved] == [100, 101]
    assert all(s["image"] is finals[i] for i, s in enumerate(saved))
    assert (
        "Multipass passes: 2" in saved[0]["info"]
        and "Multipass 1 checkpoint: photo" in saved[0]["info"]
    )
    assert processed.index_of_first_image == 1 and [s for s in images.saved if s["grid"]]


def test_intermediates_saved_when_asked(webui):
    from modules import images

    images.saved.clear()
    webui.shared.opts.data["multipass_save_intermediates"] = True
    txt2img(webui)
    suffixes = [s["suffix"] for s in images.saved]
    # in the order they were made, so their file numbers are too; the final last
    assert suffixes == ["-multipass-base", "-multipass-1", ""]
    base, first, final = (s["info"] for s in images.saved)
    assert "Multipass" not in base  # the base image's own infotext, as the host wrote it
    assert 'Multipass result: "intermediate, after pass 1 (pass 1)"' in first
    assert "Multipass 2" not in first and "Multipass 1 checkpoint: photo" in first
    assert "Multipass result: complete" in final and "Multipass 2 checkpoint" in final


def test_bad_recipe_generates_nothing_and_says_why(webui):
    bad = {"passes": [{"checkpoint": "nope", "denoising_strength": 2}]}
    _p, processed = txt2img(webui, recipe=bad)
    assert webui.processing.calls == []
    assert "Multipass: nothing was generated" in processed.comments
    assert "field 'denoising_strength'" in processed.comments


def test_unknown_checkpoint_sampler_upscaler_named_before_anything_runs(webui):
    bad = {
        "passes": [
            {"checkpoint": "photoreal", "sampler": "Euler z", "upscale_by": 2, "upscaler": "ESRGAN"}
        ]
    }
    _p, processed = txt2img(webui, recipe=bad)
    assert webui.processing.calls == []
    for field in (
        "'checkpoint': got 'photoreal'",
        "'sampler': got 'Euler z'",
        "'upscaler': got 'ESRGAN'",
    ):
        assert field in processed.comments


def test_pickle_checkpoints_need_the_opt_in(webui):
    _p, processed = txt2img(webui, recipe={"passes": [{"checkpoint": "old"}]})
    assert "--multipass-allow-ckpt" in processed.comments and webui.processing.calls == []
    webui.shared.cmd_opts.multipass_allow_ckpt = True
    try:
        webui.processing.calls.clear()
        _p, processed = txt2img(webui, recipe={"passes": [{"checkpoint": "old"}]})
        assert [c["checkpoint"] for c in webui.processing.calls][-1] == "old.ckpt [dddd]"
    finally:
        webui.shared.cmd_opts.multipass_allow_ckpt = False


def test_error_in_a_pass_keeps_finished_images_and_restores_the_checkpoint(webui):
    def boom(call):
        if call["checkpoint"].startswith("toon") and call["kind"] == "img2img":
            raise RuntimeError("out of memory")

    webui.processing.on_call.append(boom)
    _p, processed = txt2img(webui, batch_size=2)
    assert "failed (out of memory) at pass 2, image 1 of 2" in processed.comments
    finals = processed.images[processed.index_of_first_image :]
    photo_calls = [c for c in webui.processing.calls if c["checkpoint"].startswith("photo")]
    assert len(photo_calls) == 2 and len(finals) == 2
    assert webui.shared.sd_model.sd_checkpoint_info.title == "toon.safetensors [aaaa]"


def test_interrupt_keeps_finished_images_and_restores_the_checkpoint(webui):
    def interrupt(call):
        if call["kind"] == "img2img":
            webui.shared.state.interrupted = True

    webui.processing.on_call.append(interrupt)
    _p, processed = txt2img(webui, batch_size=2)
    assert "cancelled at pass 1, image 1 of 2" in processed.comments
    finals = processed.images[processed.index_of_first_image :]
    base = [c for c in webui.processing.calls if c["kind"] == "txt2img"]
    assert len(finals) == 2 and len(base) == 2
    assert_users_checkpoint_is_back(webui)


def assert_users_checkpoint_is_back(webui):
    """The user's checkpoint is loaded again: at once on A1111 and reForge; on Forge and Neo
    it is selected again and their next job loads it (as after their own hires fix)."""
    webui.processing.on_call.clear()
    webui.processing.calls.clear()
    if not webui.forge:
        assert webui.shared.sd_model.sd_checkpoint_info.name == "toon.safetensors"
    txt2img(webui, enabled=False)
    assert [c["file"] for c in webui.processing.calls] == ["toon.safetensors"]


def test_skip_abandons_only_the_current_image_pass(webui):
    seen = []

    def skip_first(call):
        if call["kind"] == "img2img" and not seen:
            seen.append(call)
            webui.shared.state.skipped = True

    webui.processing.on_call.append(skip_first)
    _p, _processed = txt2img(webui, batch_size=2)
    img2img = [c for c in webui.processing.calls if c["kind"] == "img2img"]
    assert len(img2img) == 4  # every image still ran every pass
    assert webui.shared.state.skipped is False


def test_detail_crop_pass_goes_to_the_host_as_a_masked_crop(webui):
    recipe = {
        "passes": [
            {
                "region": "crop",
                "mask_source": "boxes",
                "boxes": [[16, 16, 32, 32]],
                "padding": 8,
                "working_width": 128,
                "working_height": 128,
            }
        ]
    }
    _p, _processed = txt2img(webui, recipe=recipe)
    (call,) = [c for c in webui.processing.calls if c["kind"] == "img2img"]
    assert call["size"] == (128, 128) and call["mask"] is not None
    assert call["inpaint_full_res"] is False


def test_nested_passes_carry_no_settings_overrides(webui):
    """The pass's checkpoint is loaded by Multipass, never through the user's settings."""
    txt2img(webui)
    calls = [c for c in webui.processing.calls if c["kind"] == "img2img"]
    assert [c["file"] for c in calls] == ["photo.safetensors", "toon.safetensors"]
    assert all(c["override"] == {} for c in calls)


def test_infotext_pastes_back_into_every_field(webui):
    from lib_multipass.infotext import parse_params_line
    from lib_multipass.recipe import parse_recipe
    from lib_multipass.webui import ui

    _p, processed = txt2img(webui)
    params = parse_params_line(processed.infotexts[0].splitlines()[-1])
    state = ui.recipe_state_from_params(params, 3)
    want = parse_recipe(RECIPE, allow_base=False)
    got = parse_recipe({"passes": state["passes"][:2]}, allow_base=False)
    assert got == want and state["passes"][2]["enabled"] is False
    # the paste callbacks give each widget its value, defaults included
    from lib_multipass.fields import PASS_FIELDS

    f = next(f for f in PASS_FIELDS if f.name == "denoising_strength")
    assert ui.paste_value(1, f)(params) == 0.3
    g = next(f for f in PASS_FIELDS if f.name == "mask_blur")
    assert ui.paste_value(0, g)(params) == 4
    assert ui.paste_value(0, f)({"Steps": "20"}) is None  # no recipe: leave widgets alone


def test_xyz_axes_without_shared_state(webui):
    from copy import copy

    xyz = type("XYZ", (), {})()
    xyz.axis_options = []

    class AxisOption:
        def __init__(
            self,
            label,
            type,
            apply,
            format_value=None,
            confirm=None,
            cost=0.0,
            choices=None,
            prepare=None,
        ):
            self.label, self.type, self.apply, self.choices = label, type, apply, choices

    xyz.AxisOption = AxisOption
    scripts = sys.modules["modules.scripts"]
    scripts.scripts_data.append(
        scripts.ScriptClassData(
            type("S", (), {"__module__": "xyz_grid.py"}), "scripts/xyz_grid.py", "", xyz
        )
    )
    webui.module.on_before_ui()
    webui.module.on_before_ui()  # registering twice adds nothing twice
    labels = [o.label for o in xyz.axis_options]
    assert (
        "[Multipass] Pass 1 checkpoint" in labels
        and "[Multipass] Pass 3 denoising strength" in labels
    )
    assert len(labels) == len(set(labels))
    p = webui.processing.StableDiffusionProcessingTxt2Img(prompt="x")
    p.scripts = webui.runner
    shared_recipe = {"passes": [{"denoising_strength": 0.5}]}
    k = webui.script.args_from
    p.script_args_value = (None,) * k + (False, shared_recipe)
    opt = next(o for o in xyz.axis_options if o.label == "[Multipass] Pass 1 denoising strength")
    cells = []
    for x in (0.3, 0.7):
        pc = copy(p)
        opt.apply(pc, x, [0.3, 0.7])
        cells.append(pc.script_args)
    assert [c[k + 1]["passes"][0]["denoising_strength"] for c in cells] == [0.3, 0.7]
    assert all(c[k] is True for c in cells)
    assert shared_recipe == {"passes": [{"denoising_strength": 0.5}]} and p.script_args[k] is False


def test_settings_section(webui):
    from types import SimpleNamespace

    from lib_multipass.webui import settings

    settings.register(
        webui.shared, SimpleNamespace(Slider="Slider", Radio="Radio", Dropdown="Dropdown")
    )
    labels = webui.shared.opts.data_labels
    assert {"multipass_passes", "multipass_save_intermediates", "multipass_padding_unit"} <= set(
        labels
    )
    assert labels["multipass_passes"].section == ("multipass", "Multipass")
    assert settings.passes_shown() == 3 and settings.padding_unit() == "px"
    webui.shared.opts.data["multipass_passes"] = 40
    assert settings.passes_shown() == 16


def test_too_old_a_webui_is_named(webui, monkeypatch):
    from lib_multipass.webui import compat

    monkeypatch.delattr(sys.modules["modules.sd_models"], "checkpoint_aliases")
    with pytest.raises(compat.HostError, match=r"needs AUTOMATIC1111 WebUI 1\.6"):
        compat.check_host()


def asgi_call(app, body):
    sent = []

    async def receive():
        return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/sdapi/v1/txt2img"}
    asyncio.run(app(scope, receive, send))
    return sent


def test_api_rejects_a_bad_recipe_before_the_job(webui):
    from lib_multipass.webui import api, job

    reached = []

    async def downstream(scope, receive, send):
        reached.append(json.loads((await receive())["body"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    check = api.RecipeCheck(downstream, job.validate_request)
    bad = {
        "prompt": "x",
        "alwayson_scripts": {
            "Multipass": {"args": [True, {"passes": [{"steps": 500, "checkpoint": "nope"}]}]}
        },
    }
    sent = asgi_call(check, bad)
    assert sent[0]["status"] == 422 and not reached
    detail = json.loads(sent[1]["body"])["detail"]
    # every problem at once: the bad field and the name the host does not list
    assert [(d["where"], d["field"]) for d in detail] == [
        ("pass 1", "steps"),
        ("pass 1", "checkpoint"),
    ]
    assert "a whole number from 1 to 150" in detail[0]["message"]
    # a well-formed recipe is then checked against the host's lists
    unknown = {
        "alwayson_scripts": {"multipass": {"args": [True, {"passes": [{"checkpoint": "nope"}]}]}}
    }
    detail = json.loads(asgi_call(check, unknown)[1]["body"])["detail"]
    assert [d["field"] for d in detail] == ["checkpoint"]
    assert "'toon.safetensors" in detail[0]["message"]  # the host's list, as its dropdown shows it

    good = {"prompt": "x", "alwayson_scripts": {"multipass": {"args": [True, RECIPE]}}}
    sent = asgi_call(check, good)
    assert sent[0]["status"] == 200 and reached == [good]  # the body reaches the WebUI intact
    off = {"alwayson_scripts": {"multipass": {"args": [False, {"passes": [{"steps": 500}]}]}}}
    assert asgi_call(check, off)[0]["status"] == 200


def test_api_endpoints_in_a_real_fastapi_app(webui):
    fastapi = pytest.importorskip("fastapi")
    testclient = pytest.importorskip("fastapi.testclient")
    app = fastapi.FastAPI()

    @app.post("/sdapi/v1/txt2img")
    def txt2img_route(body: dict):
        return {"images": [], "got": body}

    webui.module.on_app_started(None, app)
    client = testclient.TestClient(app)
    assert client.get("/multipass/v1/version").json()["version"]
    assert client.get("/multipass/v1/schema").json()["title"] == "Multipass recipe"
    bad = {"alwayson_scripts": {"multipass": {"args": [True, {"passes": [{"denoise": 1}]}]}}}
    response = client.post("/sdapi/v1/txt2img", json=bad)
    assert response.status_code == 422
    assert "did you mean 'denoising_strength'" in response.json()["detail"][0]["message"]
    ok = {"alwayson_scripts": {"multipass": {"args": [True, RECIPE]}}}
    assert client.post("/sdapi/v1/txt2img", json=ok).json()["got"] == ok


def test_xyz_cells_run_with_their_own_args(webui):
    """XYZ sets each cell's args after the job was set up: the cell's values must be used."""
    from copy import copy

    from lib_multipass.webui import xyz

    # Multipass off in the UI; the axis switches it on
    p = make_p(webui, enabled=False, recipe={"passes": [{"denoising_strength": 0.5}]})
    strengths = []
    for x in (0.3, 0.7):
        pc = copy(p)
        xyz.apply_value(pc, 0, "denoising_strength", x)
        webui.processing.calls.clear()
        webui.processing.process_images(pc)
        strengths.append([c["strength"] for c in webui.processing.calls if c["kind"] == "img2img"])
    assert strengths == [[0.3], [0.7]]


def test_each_image_keeps_its_own_prompt(webui):
    recipe = {"passes": [{"prompt": "sharp", "prompt_mode": "append"}]}
    p = make_p(webui, recipe=recipe, prompt="castle {n}", batch_size=3)
    webui.processing.process_images(p)
    prompts = [c["prompt"] for c in webui.processing.calls if c["kind"] == "img2img"]
    assert prompts == ["castle 0, sharp", "castle 1, sharp", "castle 2, sharp"]


def test_job_mask_follows_inpaint_not_masked(webui):
    from lib_multipass.webui import job

    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (0, 0, 4, 8))
    p = webui.processing.StableDiffusionProcessingImg2Img(mask=mask, inpainting_mask_invert=1)
    assert job.job_mask(p).getbbox() == (4, 0, 8, 8)
    p = webui.processing.StableDiffusionProcessingImg2Img(mask=mask)
    assert job.job_mask(p).getbbox() == (0, 0, 4, 8)


def test_per_pass_vae_is_loaded_and_the_users_put_back(webui):
    recipe = {"passes": [{"checkpoint": "photo", "vae": "vae-ft-mse.safetensors"}, {}]}
    _p, processed = txt2img(webui, recipe=recipe)
    assert "Multipass result: complete" in processed.infotexts[0]
    calls = [c for c in webui.processing.calls if c["kind"] == "img2img"]
    from modules import paths

    vae_file = str(paths.models_path) + "/VAE/vae-ft-mse.safetensors"
    if webui.forge:  # an additional module of the model, with the user's (none) put back
        assert [c["vae"] for c in calls] == [(vae_file,), (vae_file,)]
        params = webui.sd_models.model_data.forge_loading_parameters
        assert (
            params["additional_modules"] == []
            and params["checkpoint_info"].name == "toon.safetensors"
        )
    else:
        assert [c["vae"] for c in calls] == ["vae-ft-mse.safetensors"] * 2
        assert webui.shared.opts.sd_vae == "Automatic"
        from modules import sd_vae

        assert sd_vae.loaded_vae_file is None  # the user's (Automatic: the checkpoint's own)
    assert [k for k, _ in webui.shared.opts.data.writes if "vae" in k or "module" in k] == []
    assert_users_checkpoint_is_back(webui)


def test_vae_choices_are_the_hosts(webui):
    from lib_multipass.webui import compat

    if webui.forge:
        assert compat.vae_names() == ["None", "vae-ft-mse.safetensors"]
        assert compat.text_encoder_names() == ["t5xxl.safetensors"]
    else:
        assert compat.vae_names() == ["Automatic", "None", "vae-ft-mse.safetensors"]
        assert compat.text_encoder_names() is None
        _p, processed = txt2img(
            webui, recipe={"passes": [{"text_encoders": ["t5xxl.safetensors"]}]}
        )
        assert "Forge 2 and Neo only" in processed.comments and not webui.processing.calls


def test_state_paste_target_gives_the_recipe(webui):
    from lib_multipass.infotext import parse_params_line
    from lib_multipass.recipe import parse_recipe
    from lib_multipass.webui import ui

    _p, processed = txt2img(webui)
    params = parse_params_line(processed.infotexts[0].splitlines()[-1])
    state = ui._state_or_none(params, 3)
    assert parse_recipe({"passes": state["passes"][:2]}) == parse_recipe(RECIPE)
    assert ui._state_or_none({"Multipass passes": "x"}, 3) is None
    assert ui._state_or_none({"Steps": "20"}, 3) is None


def test_forge_text_encoders_per_pass(webui):
    if not webui.forge:
        pytest.skip("text encoders are additional modules on Forge 2 and Neo only")
    from modules import paths

    recipe = {"passes": [{"checkpoint": "flux", "text_encoders": ["t5xxl.safetensors"]}]}
    _p, processed = txt2img(webui, recipe=recipe)
    (call,) = [c for c in webui.processing.calls if c["kind"] == "img2img"]
    assert call["file"] == "flux.safetensors"
    assert call["vae"] == (str(paths.models_path) + "/text_encoder/t5xxl.safetensors",)
    from lib_multipass.infotext import recipe_from_infotext

    pasted = recipe_from_infotext(processed.infotexts[0])
    assert pasted.passes[0].text_encoders == ("t5xxl.safetensors",)
    assert_users_checkpoint_is_back(webui)


@pytest.mark.parametrize("name", ["toon.safetensors [aaaa]", "toon", "toon.safetensors"])
def test_another_name_of_the_loaded_checkpoint_does_not_switch(webui, name):
    """Neo adds ' [hash]' to a title once the file is hashed: names, not text, decide."""
    txt2img(webui, recipe={"passes": [{"checkpoint": name}]})
    assert webui.sd_models.loads == []


def test_a_title_hashed_differently_still_finds_its_file(webui):
    """A recipe from another WebUI names 'photo.safetensors [bbbb]'; Neo has not hashed it yet."""
    txt2img(webui, recipe={"passes": [{"checkpoint": "photo.safetensors [bbbb]"}]})
    assert webui.sd_models.loads[0] == "photo.safetensors"


def test_a_cancel_between_passes_loads_nothing_more(webui):
    def interrupt(call):
        if (
            call["kind"] == "img2img"
            and call["file"] == "photo.safetensors"
            and call["seed"] == 101
        ):
            webui.shared.state.interrupted = True  # during pass 1's last image

    webui.processing.on_call.append(interrupt)
    recipe = {"passes": [{"checkpoint": "photo"}, {"checkpoint": "xl"}]}
    _p, _processed = txt2img(webui, batch_size=2, recipe=recipe)
    assert "xl.safetensors" not in webui.sd_models.loads
    assert webui.sd_models.loads[0] == "photo.safetensors"
    assert_users_checkpoint_is_back(webui)


def api_txt2img(webui, recipe, **body):
    """POST /sdapi/v1/txt2img as the host's API runs it; returns (response, parsed info)."""
    from modules.api import api as host_api

    defaults = [None] * len(webui.runner.inputs)
    defaults[webui.script.args_from] = False
    defaults[webui.script.args_from + 1] = {"passes": []}
    request = {
        "prompt": "a castle",
        "seed": 100,
        "steps": 20,
        "sampler_name": "Euler a",
        "width": 64,
        "height": 64,
        **body,
        "alwayson_scripts": {"Multipass": {"args": [True, recipe]}},
    }
    response = host_api.text2imgapi(request, webui.runner, defaults)
    return response, json.loads(response["info"])


THREE = {"passes": [{"checkpoint": "photo"}, {"denoising_strength": 0.3}, {"checkpoint": "toon"}]}


@pytest.mark.parametrize("stop", ["cancel", "fail"])
@pytest.mark.parametrize("at", [1, 2, 3])
def test_api_info_names_where_a_job_stopped(webui, stop, at):
    """A cancel or a failure at pass k: every image's infotext keeps the passes that ran on it
    and says where it stopped; info.extra_generation_params says how the job ended."""
    seen = []

    def stop_at(call):
        if call["kind"] == "img2img":
            seen.append(call)
            if len(seen) == 2 * (at - 1) + 1:  # pass `at`, image 1 of 2
                if stop == "fail":
                    raise RuntimeError("CUDA out of memory, tried to allocate 2 GiB")
                webui.shared.state.interrupted = True

    webui.processing.on_call.append(stop_at)
    response, info = api_txt2img(webui, THREE, batch_size=2)
    why = "cancelled" if stop == "cancel" else "failed: CUDA out of memory, tried to allocate 2 GiB"
    assert info["extra_generation_params"]["Multipass result"] == (
        f"stopped at pass {at}, image 1 of 2: {why}"
    )
    texts = info["infotexts"][info["index_of_first_image"] :]
    assert len(texts) == 2 and len(response["images"]) == 2
    from lib_multipass.infotext import parse_params_line, recipe_from_params

    for text in texts:
        # the run that was cut short is not kept: the image is as the pass before left it
        params = parse_params_line(text.splitlines()[-1])
        assert params["Multipass passes"] == str(at - 1)
        assert params["Multipass result"] == f"stopped at pass {at}: {why}"
        assert len(recipe_from_params(params).passes) == at - 1
    assert_users_checkpoint_is_back(webui)


def test_api_info_says_complete(webui):
    _response, info = api_txt2img(webui, THREE, batch_size=2)
    assert info["extra_generation_params"]["Multipass result"] == "complete"
    for text in info["infotexts"]:
        assert text.endswith("Multipass result: complete")
        assert "Multipass passes: 3" in text


def test_disabled_passes_are_not_written(webui):
    recipe = {"passes": [{"enabled": False, "checkpoint": "photo"}, {"denoising_strength": 0.3}]}
    _p, processed = txt2img(webui, recipe=recipe)
    text = processed.infotexts[0]
    assert "Multipass passes: 1" in text and "enabled" not in text and "photo" not in text
    assert "Multipass 1 denoising: 0.3" in text


def test_a_recipe_with_no_enabled_pass_leaves_the_job_alone(webui):
    _p, processed = txt2img(webui, recipe={"passes": [{"enabled": False}]})
    assert "Multipass" not in processed.infotexts[0]
    assert [c["kind"] for c in webui.processing.calls] == ["txt2img"]


def test_a_bad_widget_value_generates_nothing_and_names_it(webui):
    """What the UI sends when a strength list is mistyped: the text as typed."""
    from lib_multipass.fields import PASS_FIELDS
    from lib_multipass.webui import ui

    slots = [(0, f) for f in PASS_FIELDS]
    values = [ui.to_widget(f, ui.default_pass(0)[f.name]) for _, f in slots]
    values[[f.name for f in PASS_FIELDS].index("schedule")] = "list"
    values[[f.name for f in PASS_FIELDS].index("strengths")] = "0.7, 0.3x"
    state = ui.collect_state(slots, values, None)
    assert state["passes"][0]["strengths"] == "0.7, 0.3x"  # kept as typed, never an older value
    hint = ui.hint(state["passes"][0], 20)
    assert hint.startswith("⚠ pass 1, field 'strengths': got '0.7, 0.3x'")
    assert "('0.3x' is not a number)" in hint
    _p, processed = txt2img(webui, recipe=state)
    assert webui.processing.calls == []
    assert "nothing was generated" in processed.comments and "'0.3x' is not a number" in (
        processed.comments
    )


def test_a_crop_pass_on_sdxl_works_at_a_1024_area(webui):
    """The family comes from the checkpoint (its header; the host's flags once loaded)."""
    crop = {"region": "crop", "mask_source": "boxes", "boxes": [[16, 16, 48, 48]], "padding": 0}
    recipe = {"passes": [{"checkpoint": "xl", **crop}, {"checkpoint": "toon", **crop}]}
    txt2img(webui, recipe=recipe, width=512, height=512)
    calls = [c for c in webui.processing.calls if c["kind"] == "img2img"]
    assert [(c["file"], c["size"]) for c in calls] == [
        ("xl.safetensors", (1024, 1024)),
        ("toon.safetensors", (512, 512)),
    ]
    from lib_multipass.webui import compat

    assert compat.loaded_family() == "sd1"  # toon, as the host says


def test_a_crop_pass_on_a_family_without_a_known_size_is_refused_before_anything_runs(webui):
    crop = {"region": "crop", "mask_source": "boxes", "boxes": [[16, 16, 48, 48]]}
    from pathlib import Path

    from layout import header_only

    wan = Path(webui.sd_models.model_path) / "wan.safetensors"
    header_only(wan, ["model.diffusion_model.head.modulation"])
    webui.sd_models.list_models()
    _p, processed = txt2img(webui, recipe={"passes": [{"checkpoint": "wan", **crop}]})
    assert webui.processing.calls == []
    assert (
        "field 'working_width'" in processed.comments and "a wan checkpoint" in processed.comments
    )
    sized = {"checkpoint": "wan", **crop, "working_width": 832, "working_height": 480}
    webui.processing.calls.clear()
    txt2img(webui, recipe={"passes": [sized]}, width=512, height=512)
    assert [c["size"] for c in webui.processing.calls if c["kind"] == "img2img"] == [(832, 480)]


def test_forge_passes_keep_the_jobs_distilled_cfg(webui):
    if not webui.forge:
        pytest.skip("distilled CFG (Flux) exists on Forge 2 and Neo")
    seen = []
    webui.processing.on_call.append(lambda call: seen.append(call))
    real = webui.processing.StableDiffusionProcessingImg2Img.__post_init__

    def spy(self):
        real(self)
        seen.append(self.distilled_cfg_scale)

    webui.processing.StableDiffusionProcessingImg2Img.__post_init__ = spy
    try:
        txt2img(webui, recipe={"passes": [{"checkpoint": "flux"}]}, distilled_cfg_scale=2.5)
    finally:
        webui.processing.StableDiffusionProcessingImg2Img.__post_init__ = real
    assert 2.5 in seen


def asgi_raw(app, raw: bytes):
    sent = []

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/sdapi/v1/txt2img"}
    asyncio.run(app(scope, receive, send))
    return sent


API_BAD = [
    (b'{"passes": [{"steps": 20, "steps": 30}]}', "pass 1", "steps", "given once"),
    (b'{"passes": [{"seed_offset": ' + b"9" * 3000 + b"}]}", "pass 1", "seed_offset", "whole"),
    (b'{"passes": [{"denoising_strength": NaN}]}', "pass 1", "denoising_strength", "finite"),
    (b'{"passes": {"checkpoint": "photo"}}', "recipe", "passes", "a list of at most 16"),
    (b'{"base": {"steps": 4}, "passes": []}', "recipe", "base", "no such field"),
    (
        b'{"passes": [{"boxes": [[0, 0, 8]], "region": "crop", "mask_source": "boxes"}]}',
        "pass 1",
        "boxes",
        "box 1 (0 0 8) is not four numbers",
    ),
    (
        b'{"passes": [{"region": "crop", "mask_source": "boxes", '
        b'"boxes": [[100, 100, 120, 120]]}]}',
        "pass 1",
        "boxes",
        "lies wholly outside",
    ),
]


@pytest.mark.parametrize(("recipe_json", "where", "field", "says"), API_BAD)
def test_api_reads_the_recipe_as_recipe_files_are_read(webui, recipe_json, where, field, says):
    """The request body's recipe: duplicate keys, huge numbers, NaN, misplaced sections."""
    from lib_multipass.webui import api, job

    reached = []

    async def downstream(scope, receive, send):
        reached.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    check = api.RecipeCheck(downstream, job.validate_request)
    body = (
        b'{"prompt": "x", "width": 64, "height": 64, '
        b'"alwayson_scripts": {"multipass": {"args": [true, ' + recipe_json + b"]}}}"
    )
    sent = asgi_raw(check, body)
    assert sent[0]["status"] == 422 and not reached
    detail = json.loads(sent[1]["body"])["detail"]
    assert (detail[0]["where"], detail[0]["field"]) == (where, field), detail
    assert says in detail[0]["message"]


def test_api_names_bad_script_args(webui):
    from lib_multipass.webui import api, job

    check = api.RecipeCheck(lambda *a: None, job.validate_request)
    for args, field in (('"yes"', "args"), ('["yes", {}]', "enabled")):
        body = b'{"alwayson_scripts": {"multipass": {"args": ' + args.encode() + b"}}}"
        sent = asgi_raw(check, body)
        assert sent[0]["status"] == 422
        assert json.loads(sent[1]["body"])["detail"][0]["field"] == field
    # a body that is not JSON at all is the WebUI's to answer, not Multipass's
    reached = []

    async def downstream(scope, receive, send):
        reached.append(True)

    asgi_raw(api.RecipeCheck(downstream, job.validate_request), b"{nope")
    assert reached


def test_a_checkpoint_that_fails_to_load_leaves_the_host_working(webui):
    """Forge frees the loaded model before it loads the next; Neo deletes it. When the pass's
    load fails, the job says so, and the host's next job runs on the user's checkpoint."""
    recipe = {"passes": [{"checkpoint": "photo"}, {"checkpoint": "corrupt"}]}
    _response, info = api_txt2img(webui, recipe)
    assert info["extra_generation_params"]["Multipass result"].startswith(
        "stopped at pass 2, image 1 of 1: failed: Failed to recognize model type!"
    )
    assert_users_checkpoint_is_back(webui)


def test_a_truncated_checkpoint_is_named_before_the_job(webui):
    from pathlib import Path

    from lib_multipass.webui import api, job

    good = Path(webui.sd_models.model_path) / "toon.safetensors"
    (Path(webui.sd_models.model_path) / "cut.safetensors").write_bytes(good.read_bytes()[:40])
    webui.sd_models.list_models()
    check = api.RecipeCheck(lambda *a: None, job.validate_request)
    body = {
        "alwayson_scripts": {"multipass": {"args": [True, {"passes": [{"checkpoint": "cut"}]}]}}
    }
    sent = asgi_call(check, body)
    assert sent[0]["status"] == 422
    message = json.loads(sent[1]["body"])["detail"][0]["message"]
    assert (
        "pass 1, field 'checkpoint': got 'cut'" in message
        and "cut.safetensors: truncated" in message
    )


def test_passes_sample_a_batch_per_nested_img2img(webui):
    """As the host's own batched img2img: one nested job per batch of the job's batch size,
    each image with its own seed and prompt."""
    recipe = {"passes": [{"prompt": "sharp", "prompt_mode": "append"}]}
    p = make_p(webui, recipe=recipe, prompt="castle {n}", batch_size=2, n_iter=2)
    webui.processing.process_images(p)
    img2img = [c for c in webui.processing.calls if c["kind"] == "img2img"]
    assert [c["batch"] for c in img2img] == [2, 2, 2, 2]  # two nested jobs of two images
    assert [c["seed"] for c in img2img] == [100, 101, 102, 103]
    assert [c["prompt"] for c in img2img] == [f"castle {n}, sharp" for n in range(4)]


def test_the_job_lets_go_of_its_model_while_passes_run(webui):
    """A switch must not hold two models: the job's p.sd_model is dropped for the passes."""
    held = []
    webui.processing.on_call.append(lambda call: held.append(current_p[0].sd_model))
    current_p = [None]
    p = make_p(webui, recipe={"passes": [{"checkpoint": "photo"}]})
    current_p[0] = p
    webui.processing.process_images(p)
    if webui.forge:  # the job's own attribute (A1111's is a view of shared.sd_model)
        assert held[0] is not None and held[1] is None
        assert p.sd_model is webui.shared.sd_model  # given back afterwards


def test_a_file_that_is_no_checkpoint_is_named_before_the_job(webui):
    """Found in a real A1111: a VAE copied among the checkpoints 'loads' (strict=False) and the
    previous weights run on under its name, reported complete. Named before the job instead."""
    from pathlib import Path

    from layout import header_only

    from lib_multipass.webui import api, job

    header_only(
        Path(webui.sd_models.model_path) / "notamodel.safetensors", ["decoder.conv_in.weight"]
    )
    webui.sd_models.list_models()
    check = api.RecipeCheck(lambda *a: None, job.validate_request)
    recipe = {"passes": [{"checkpoint": "notamodel"}]}
    sent = asgi_call(check, {"alwayson_scripts": {"multipass": {"args": [True, recipe]}}})
    assert sent[0]["status"] == 422
    message = json.loads(sent[1]["body"])["detail"][0]["message"]
    assert "notamodel.safetensors: holds no model.diffusion_model tensors" in message


def test_detectors_are_the_hosts_in_the_dropdown_and_the_schema(webui):
    pytest.importorskip("cv2")
    fastapi = pytest.importorskip("fastapi")
    testclient = pytest.importorskip("fastapi.testclient")
    from lib_multipass.webui import compat

    names = compat.detector_names()
    assert "opencv-face" in names
    app = fastapi.FastAPI()
    webui.module.on_app_started(None, app)
    schema = testclient.TestClient(app).get("/multipass/v1/schema").json()
    detector = schema["properties"]["passes"]["items"]["properties"]["detector"]
    assert detector["enum"] == names
    bad = {
        "alwayson_scripts": {
            "multipass": {
                "args": [
                    True,
                    {
                        "passes": [
                            {
                                "region": "crop",
                                "mask_source": "detect",
                                "detector": "face_yolov8n.pt",
                            }
                        ]
                    },
                ]
            }
        }
    }
    response = testclient.TestClient(app).post("/sdapi/v1/txt2img", json=bad)
    assert response.status_code == 422
    assert "field 'detector': got 'face_yolov8n.pt'" in response.json()["detail"][0]["message"]


def astronaut_img2img(webui, recipe, mask=None):
    """An img2img job on scikit-image's astronaut, with Multipass's args, as the host runs it."""
    skimage_data = pytest.importorskip("skimage.data")
    photo = Image.fromarray(skimage_data.astronaut())
    webui.shared.state.begin()
    p = webui.processing.StableDiffusionProcessingImg2Img(
        prompt="an astronaut",
        negative_prompt="",
        seed=5,
        steps=20,
        sampler_name="Euler a",
        width=512,
        height=512,
        init_images=[photo],
        denoising_strength=0.05,
        outpath_samples="out",
        outpath_grids="grids",
        mask=mask,
    )
    p.scripts = webui.runner

    args = [None] * len(webui.runner.inputs)
    args[webui.script.args_from] = True
    args[webui.script.args_from + 1] = recipe
    p.script_args = tuple(args)
    return p, webui.processing.process_images(p)


def test_a_detect_pass_inpaints_the_face_through_the_host(webui):
    pytest.importorskip("cv2")
    recipe = {
        "passes": [
            {
                "region": "crop",
                "mask_source": "detect",
                "detector": "opencv-face",
                "working_width": 128,
                "working_height": 128,
            }
        ]
    }
    _p, processed = astronaut_img2img(webui, recipe)
    crops = [c for c in webui.processing.calls if c["mask"] is not None]
    assert len(crops) == 1 and crops[0]["size"] == (128, 128)
    assert 'Multipass 1 found: "1 face, 1 inpainted"' in processed.infotexts[0]
    from lib_multipass.infotext import recipe_from_infotext

    pasted = recipe_from_infotext(processed.infotexts[0])
    assert pasted.passes[0].mask_source == "detect" and pasted.passes[0].detector == "opencv-face"


def test_the_preview_draws_what_the_detector_finds(webui, tmp_path):
    pytest.importorskip("cv2")
    from lib_multipass.webui import job, ui

    values = ui.default_pass(0) | {"region": "crop", "mask_source": "detect"}
    drawn, text = job.preview_detections(values, None, "img2img")
    assert drawn is None and "No image yet" in text
    astronaut_img2img(webui, {"passes": [{"enabled": False}]})  # the tab's last image
    temp_dir = webui.shared.opts.temp_dir
    drawn, text = job.preview_detections(values, None, "img2img")
    assert drawn.size == (512, 512) and "1 would be inpainted" in text
    # it counts what a job's infotext counts: the confident ones ("1 face"), the rest in red
    assert text.startswith("opencv-face: 1 face found")

    # the host can write the drawing where its gradio serves it from (Neo's temp folder did
    # not exist until a setting changed); the hosts' own writer is what gradio calls
    assert not temp_dir or Path(temp_dir).is_dir()
    from modules import ui_tempdir

    cache = str(tmp_path / "gradio")  # gradio's cache, used where no temp folder is set
    args = (drawn, cache) if webui.forge else (None, drawn, cache)
    assert Path(ui_tempdir.save_pil_to_file(*args)).is_file()

    assert drawn.getpixel((177 + 2, 66 + 40)) != Image.new("RGB", (1, 1)).getpixel((0, 0))


def test_regions_of_the_inpaint_mask_each_get_their_prompt_and_seed(webui):
    """Regional prompting in one go: the user paints two areas in img2img's inpaint mask."""
    from PIL import ImageDraw

    mask = Image.new("L", (512, 512))
    pen = ImageDraw.Draw(mask)
    pen.ellipse((320, 60, 460, 400), fill=255)
    pen.ellipse((40, 80, 180, 420), fill=255)
    recipe = {
        "passes": [
            {
                "region": "crop",
                "mask_split": True,
                "prompt": "<lora:knight:0.8> a knight [SEP] a dragon",
                "prompt_mode": "replace",
                "working_width": 128,
                "working_height": 128,
            }
        ]
    }
    _p, processed = astronaut_img2img(webui, recipe, mask=mask)
    crops = [c for c in webui.processing.calls if c["mask"] is not None][-2:]
    assert [(c["prompt"], c["seed"]) for c in crops] == [
        ("<lora:knight:0.8> a knight", 5),
        ("a dragon", 6),
    ]
    assert "Multipass 1 mask split: True" in processed.infotexts[0]


def dotted_mask(areas: int) -> Image.Image:
    """A 512² inpaint mask of `areas` separate white dots."""
    mask = Image.new("L", (512, 512))
    for i in range(areas):
        x, y = (i % 9) * 56 + 4, (i // 9) * 56 + 4
        mask.paste(255, (x, y, x + 10, y + 10))
    return mask


SPLIT = {
    "passes": [{"region": "crop", "mask_split": True, "working_width": 64, "working_height": 64}]
}


def test_an_inpaint_mask_of_too_many_areas_generates_nothing_and_says_why(webui):
    """Found in a real reForge: the job mask's areas were counted only after the base image,
    where the error escaped the hook; the API answered 200 with nothing said."""
    _p, processed = astronaut_img2img(webui, SPLIT, mask=dotted_mask(65))
    assert webui.processing.calls == []
    assert "Multipass: nothing was generated" in processed.comments
    assert "field 'mask_split'" in processed.comments and "65 separate areas" in processed.comments


def test_the_api_names_an_inpaint_mask_of_too_many_areas(webui):
    import base64
    import io

    from lib_multipass.webui import api, job

    def b64(image: Image.Image) -> str:
        buf = io.BytesIO()
        image.save(buf, "PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    reached = []

    async def downstream(scope, receive, send):
        reached.append(True)

    check = api.RecipeCheck(downstream, job.validate_request)
    body = {
        "init_images": [b64(Image.new("RGB", (512, 512)))],
        "mask": b64(dotted_mask(65)),
        "alwayson_scripts": {"multipass": {"args": [True, SPLIT]}},
    }
    sent = asgi_call(check, body)
    assert sent[0]["status"] == 422
    (problem,) = json.loads(sent[1]["body"])["detail"]
    assert problem["field"] == "mask_split" and "65 separate areas" in problem["message"]
    assert not reached
    # the recipe as JSON text, as the UI's JSON box and pasted infotext give it
    as_text = {**body, "alwayson_scripts": {"multipass": {"args": [True, json.dumps(SPLIT)]}}}
    sent = asgi_call(check, as_text)
    assert sent[0]["status"] == 422 and not reached

    # inverted ("inpaint not masked"), the same dots are one area: fine
    body["inpainting_mask_invert"] = 1
    assert asgi_call(check, body) == [] and reached


def test_a_job_that_cannot_start_its_passes_keeps_and_saves_its_images_and_says_so(webui):
    """Whatever stops the passes before the first one runs (here: the pass's checkpoint was
    deleted while the base image was made), the base images are saved and every image, the
    response and the UI say the passes did not run."""
    from pathlib import Path

    from modules import images

    def delete_photo(call):
        (Path(webui.sd_models.model_path) / "photo.safetensors").unlink()
        webui.sd_models.list_models()
        webui.processing.on_call.remove(delete_photo)

    images.saved.clear()
    webui.processing.on_call.append(delete_photo)
    _p, processed = txt2img(webui, recipe={"passes": [{"checkpoint": "photo"}]}, batch_size=2)
    result = processed.extra_generation_params["Multipass result"]
    assert result.startswith("not run: failed: pass 1, field 'checkpoint': got 'photo'"), result
    for info in processed.infotexts:
        assert info.endswith(f'Multipass result: "{result}"')
        assert "Multipass 1 checkpoint" not in info
    samples = [s for s in images.saved if not s["grid"]]
    assert [s["info"] for s in samples] == processed.infotexts[-2:]
    assert [s["image"] for s in samples] == processed.images[-2:]

    assert "Multipass: failed (pass 1, field 'checkpoint'" in processed.comments
    assert_users_checkpoint_is_back(webui)


def _sd_upscale_by_hand(canvas, tile, overlap, tiles_out):
    """What the WebUI's SD upscale script makes of sampled tiles, written from A1111 1.10.1
    modules/images.py (split_grid, combine_grid) as facts: all tiles joined at once, each row
    from a black strip, each overlap blended with int(r * 255 / overlap)."""
    import math

    w, h = canvas

    def starts(extent):
        count = math.ceil((extent - overlap) / (tile - overlap))
        step = (extent - tile) / (count - 1) if count > 1 else 0
        return [min(int(k * step), extent - tile) for k in range(count)]

    ramp = bytes(int(r * 255 / overlap) for r in range(overlap))
    mask_w = Image.frombytes("L", (overlap, 1), ramp).resize((overlap, tile))
    mask_h = Image.frombytes("L", (1, overlap), ramp).resize((w, overlap))
    out = Image.new("RGB", (w, h))
    k = 0
    for y in starts(h):
        row = Image.new("RGB", (w, tile))
        for x in starts(w):
            t = tiles_out[k]
            k += 1
            if x == 0:
                row.paste(t, (0, 0))
                continue
            row.paste(t.crop((0, 0, overlap, tile)), (x, 0), mask=mask_w)
            row.paste(t.crop((overlap, 0, tile, tile)), (x + overlap, 0))
        if y == 0:
            out.paste(row, (0, 0))
            continue
        out.paste(row.crop((0, 0, w, overlap)), (0, y), mask=mask_h)
        out.paste(row.crop((0, overlap, w, tile)), (0, y + overlap))
    return out


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_tile_pass_set_like_the_sd_upscale_script_gives_its_image(webui, batch_size):
    """SD upscale's tiles (tile size, overlap, Lanczos upscale, seed + tile number), each a
    nested img2img through the host, in calls of the job's batch size, joined as it joins them."""
    recipe = {
        "passes": [
            {
                "region": "tiles",
                "tile_style": "sd-upscale",
                "tile_width": 64,
                "tile_height": 64,
                "tile_overlap": 16,
                "upscale_by": 2,
                "upscaler": "Lanczos",
                "denoising_strength": 0.4,
            }
        ]
    }
    _p, processed = txt2img(webui, recipe=recipe, batch_size=batch_size, n_iter=1)
    calls = webui.processing.calls
    bases, tiles = calls[:batch_size], calls[batch_size:]
    n = batch_size
    assert len(tiles) == 9 * n  # 128x128 in 3x3 tiles of 64 overlapping by at least 16
    assert {c["size"] for c in tiles} == {(64, 64)}  # never the whole canvas
    assert [c["seed"] for c in tiles] == [100 + j + t for j in range(n) for t in range(9)]
    assert [c["batch"] for c in tiles] == [batch_size] * len(tiles)
    assert all(c["mask"] is None and c["strength"] == 0.4 for c in tiles)

    from modules.processing import _tint

    first = getattr(processed, "index_of_first_image", 0)
    for j in range(n):
        upscaled = _base_image(webui, bases[j]).resize((128, 128), Image.Resampling.LANCZOS)
        expected_tiles = []
        for t, c in enumerate(tiles[9 * j : 9 * j + 9]):
            x, y = [0, 32, 64][t % 3], [0, 32, 64][t // 3]
            init = upscaled.crop((x, y, x + 64, y + 64))
            tint = _tint(c["file"], c["vae"], c["seed"], (64, 64))
            expected_tiles.append(Image.blend(init, tint, 0.4))
        expected = _sd_upscale_by_hand((128, 128), 64, 16, expected_tiles)
        assert processed.images[first + j].tobytes() == expected.tobytes()


def _base_image(webui, call):
    from modules.processing import _tint

    return _tint(call["file"], call["vae"], call["seed"], call["size"])


def test_the_api_names_bad_tile_settings_before_the_job(webui):
    from lib_multipass.webui import api, job

    check = api.RecipeCheck(lambda *a: None, job.validate_request)
    tiles = {
        "region": "tiles",
        "tile_style": "sd-upscale",
        "tile_width": 64,
        "tile_height": 64,
        "tile_overlap": 64,
        "upscale_by": 2,
    }
    bad = {
        "width": 64,
        "height": 64,
        "alwayson_scripts": {"multipass": {"args": [True, {"passes": [tiles]}]}},
    }
    sent = asgi_call(check, bad)
    assert sent[0]["status"] == 422
    detail = json.loads(sent[1]["body"])["detail"]
    assert [(d["field"], d["value"]) for d in detail] == [("tile_overlap", 64)]
    assert "an overlap smaller than the tile (64x64)" in detail[0]["message"]
    wrong = {**tiles, "tile_overlap": 16, "seams_fix": "band", "tile_width": 100}
    body = {"alwayson_scripts": {"multipass": {"args": [True, {"passes": [wrong]}]}}}
    detail = json.loads(asgi_call(check, body)[1]["body"])["detail"]
    assert {d["field"] for d in detail} == {"tile_width", "seams_fix"}
