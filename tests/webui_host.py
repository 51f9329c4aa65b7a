"""A stand-in WebUI host served over real HTTP on loopback, for job lists with WebUI workers.

The WebUI's `modules` are the thin stand-in (tests/webui_stub), loaded with the real
scripts/multipass.py exactly as the WebUI tests load them; requests take the host's own path:
Multipass's 422 check (`api.problems_of` with `job.validate_request`, as its middleware does),
then the txt2img endpoint's flow (modules/api/api.py), one job at a time (the WebUI's
queue_lock), and images back as base64 PNG. POST /sdapi/v1/interrupt is `state.interrupt()`;
GET /sdapi/v1/sd-models lists the checkpoints as A1111's get_sd_models does.

    python tests/webui_host.py MODELS_DIR [--flavour a1111] [--delay SECONDS] [--without NAME]

prints `port N` once it listens on 127.0.0.1; `--delay` makes every sampling call take that
long, so a test can kill the host mid-job.
"""

import argparse
import base64
import importlib.util
import io
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT / "tests" / "webui_stub"


def load_host(models: Path, flavour: str, without: list[str] = ()):
    """The stand-in host with Multipass loaded as the WebUI loads it: (runner, defaults);
    `without`: checkpoints (file stems) this host does not have."""
    os.environ["MULTIPASS_STUB_FLAVOUR"] = flavour
    os.environ["MULTIPASS_STUB_MODELS"] = str(models)
    sys.path[:0] = [str(STUB), str(ROOT)]
    from layout import lay_out_models

    lay_out_models(models)
    for name in without:
        (models / "Stable-diffusion" / f"{name}.safetensors").unlink()
    from modules import scripts, sd_models, sd_vae, shared

    sd_models.list_models()
    sd_vae.refresh_vae_list()
    if flavour in ("forge", "neo"):
        from modules_forge import main_entry

        main_entry.refresh_models()
        main_entry.refresh_model_loading_parameters()
        sd_models.forge_model_reload()
    else:
        sd_models.reload_model_weights()
    shared.sd_upscalers = [type("U", (), {"name": n})() for n in ("Lanczos", "R-ESRGAN 4x+")]
    spec = importlib.util.spec_from_file_location("multipass_script", ROOT / "scripts/multipass.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    script = module.MultipassScript()
    runner = scripts.ScriptRunner()
    runner.add_alwayson(script, 2)
    scripts.scripts_data.append(
        scripts.ScriptClassData(type(script), "scripts/multipass.py", str(ROOT), module)
    )
    defaults = [None] * len(runner.inputs)
    defaults[script.args_from] = False
    defaults[script.args_from + 1] = {"passes": []}
    return runner, defaults


def serve(models: Path, flavour: str, delay: float, without: list[str]) -> None:
    runner, defaults = load_host(models, flavour, without)
    from modules import processing, sd_models, shared
    from modules.api import api as host_api

    from lib_multipass.webui import api, job

    if delay:
        processing.on_call.append(lambda call: time.sleep(delay))
    queue_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, status, doc):
            raw = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            if self.path != "/sdapi/v1/sd-models":
                return self._answer(404, {"detail": "Not Found"})
            # A1111 1.10.1 modules/api/api.py get_sd_models (config left out: no yaml here)
            models = [
                {
                    "title": x.title,
                    "model_name": x.model_name,
                    "hash": x.shorthash,
                    "sha256": x.sha256,
                    "filename": x.filename,
                    "config": None,
                }
                for x in sd_models.checkpoints_list.values()
            ]
            return self._answer(200, models)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            if self.path == "/sdapi/v1/interrupt":
                shared.state.interrupt()
                return self._answer(200, None)
            if self.path != "/sdapi/v1/txt2img":
                return self._answer(404, {"detail": "Not Found"})
            problems = api.problems_of(body, job.validate_request)
            if problems:
                return self._answer(422, {"detail": problems})
            with queue_lock:
                response = host_api.text2imgapi(body, runner, defaults)
            images = []
            for image in response["images"]:
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                images.append(base64.b64encode(buffer.getvalue()).decode())
            self._answer(200, {"images": images, "parameters": {}, "info": response["info"]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("models", type=Path)
    parser.add_argument("--flavour", default="a1111")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--without", action="append", default=[])
    a = parser.parse_args()
    serve(a.models, a.flavour, a.delay, a.without)
