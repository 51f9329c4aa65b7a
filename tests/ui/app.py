"""The Multipass accordion in a real gradio app, as the WebUI builds it (run in .venv-ui).

    .venv-ui/bin/python tests/ui/app.py PORT [--without-multipass]

Builds the script's real ui() inside a txt2img-like tab with the thin `modules` stand-in (the
flavour in MULTIPASS_STUB_FLAVOUR), and a Generate button that shows the args the WebUI would
pass to the script, as JSON. The steps slider is set to 30 after ui() ran, as the WebUI applies
ui-config.json, so the first hint must read the slider at page load. The page carries the
extension's javascript/*.js at the end of <head>, as the WebUI puts it there.
`--without-multipass`: the same host page with no Multipass in it.
"""

import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "webui_stub"), str(ROOT)]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
MODELS = Path(tempfile.mkdtemp(prefix="multipass-ui-")) / "models"
os.environ["MULTIPASS_STUB_MODELS"] = str(MODELS)

import gradio as gr  # noqa: E402
from layout import lay_out_models  # noqa: E402
from modules import FORGE, sd_models, sd_vae, shared  # noqa: E402

lay_out_models(MODELS)
sd_models.list_models()
sd_vae.refresh_vae_list()
if FORGE:
    from modules_forge import main_entry

    main_entry.refresh_models()
    main_entry.refresh_model_loading_parameters()
    sd_models.forge_model_reload()
else:
    sd_models.reload_model_weights()
shared.sd_upscalers = [type("U", (), {"name": n})() for n in ("Lanczos", "R-ESRGAN 4x+")]
# images the UI returns are written as the host writes them (Neo: into a temp folder that does
# not exist yet)
from modules import ui_tempdir  # noqa: E402

ui_tempdir.install_ui_tempdir_override()


import importlib.util  # noqa: E402

spec = importlib.util.spec_from_file_location("multipass_script", ROOT / "scripts" / "multipass.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)


def inject_javascript() -> None:
    """What the WebUI's modules/ui_gradio_extensions.py reload_javascript does (A1111 1.10.1,
    Forge Neo): every extension's javascript/*.js as a classic script just before </head>,
    after gradio's own inline scripts (window.gradio_config, and on gradio 4
    window.gradio_api_info) and before its deferred module runs. The WebUI links each file
    (src="file=..."); the stand-in writes it inline, which runs at the same moment."""
    import gradio.routes

    original = gradio.routes.templates.TemplateResponse
    js = "".join(
        f'<script type="text/javascript">{path.read_text()}</script>\n'
        for path in sorted((ROOT / "javascript").glob("*.js"))
    )

    def template_response(*args, **kwargs):
        res = original(*args, **kwargs)
        res.body = res.body.replace(b"</head>", f"{js}</head>".encode())
        res.init_headers()
        return res

    gradio.routes.templates.TemplateResponse = template_response


def build(with_multipass: bool = True) -> gr.Blocks:
    script = module.MultipassScript()
    css = (ROOT / "style.css").read_text()  # the WebUI loads every extension's style.css
    with gr.Blocks(title="Multipass UI test", analytics_enabled=False, css=css) as demo:
        prompt = gr.Textbox(label="Prompt", elem_id="txt2img_prompt")
        with gr.Row():
            steps = gr.Slider(
                1, 150, value=20, step=1, label="Sampling steps", elem_id="txt2img_steps"
            )
            if with_multipass:
                script.after_component(steps, elem_id="txt2img_steps")
        args = script.ui(False) if with_multipass else []
        steps.value = 30  # what ui-config.json holds, applied after the scripts' ui()
        generate = gr.Button("Generate", elem_id="txt2img_generate")
        out = gr.Textbox(label="script args", elem_id="script_args")
        pasted = gr.Textbox(label="parameters to paste", elem_id="paste_text")
        paste = gr.Button("Paste", elem_id="paste_button")

        presses = itertools.count(1)

        def run(_prompt, _steps, *values):
            return json.dumps({"press": next(presses), "args": list(values)}, default=str)

        # the WebUI's Generate sends the host's own fields (prompt, steps, ...), then every
        # script's inputs
        generate.click(fn=run, inputs=[prompt, steps, *args], outputs=[out])

        # what the WebUI's infotext_utils.connect_paste does with the host's fields (the
        # prompt) and a script's infotext_fields
        fields = script.infotext_fields if with_multipass else []

        def paste_func(text):
            from lib_multipass.infotext import parse_params_line

            params = parse_params_line(text.strip().splitlines()[-1])
            res = [gr.update(value=text.strip().splitlines()[0])]
            for output, key in fields:
                v = key(params) if callable(key) else params.get(key)
                if v is None:
                    res.append(gr.update())
                    continue
                valtype = type(output.value)
                val = False if valtype is bool and v == "False" else valtype(v)
                res.append(gr.update(value=val))
            return res if len(res) > 1 else res[0]  # gradio: one output, one value

        paste.click(fn=paste_func, inputs=[pasted], outputs=[prompt, *(c for c, _ in fields)])
    return demo


def patient_url_ok(check):
    """gradio's launch asks its own page with a 3 s timeout and dies on a ReadTimeout; on a
    machine busy with other work the first render of a page this size can take longer."""

    def url_ok(url: str) -> bool:
        for _ in range(30):
            try:
                return check(url)
            except Exception:
                time.sleep(1)
        return False

    return url_ok


if __name__ == "__main__":
    import time

    import gradio.networking

    gradio.networking.url_ok = patient_url_ok(gradio.networking.url_ok)
    port = int(sys.argv[1])
    inject_javascript()
    build("--without-multipass" not in sys.argv).queue().launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=False, show_api=False
    )
