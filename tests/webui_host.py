"""A stand-in WebUI host served over real HTTP on loopback, for job lists with WebUI workers.

The WebUI's `modules` are the thin stand-in (tests/webui_stub), loaded with the real
scripts/multipass.py exactly as the WebUI tests load them; requests take the host's own path:
Multipass's 422 check (`api.problems_of` with `job.validate_request`, as its middleware does),
then the txt2img or img2img endpoint's flow (modules/api/api.py), one job at a time (the
WebUI's queue_lock), and images back as base64 PNG. POST /sdapi/v1/interrupt is
`state.interrupt()`; GET /sdapi/v1/sd-models lists the checkpoints as A1111's get_sd_models
does; GET /sdapi/v1/progress answers as A1111 1.10.1's progressapi (api.py:602-628), without
taking the queue lock, so it answers while a job runs.

    python tests/webui_host.py MODELS_DIR [--flavour a1111] [--delay SECONDS] [--without NAME]
        [--progress ok|error|silent] [--log FILE]

prints `port N` once it listens on 127.0.0.1; `--delay` makes every sampling call take that
long, so a test can kill the host mid-job; `--progress error` answers progress with a 500,
`silent` never answers it; `--log` appends each request (path, body without its images, and the
init images' sizes and pixel digests) as a JSON line.
"""

import argparse
import base64
import hashlib
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


def progress_answer(state) -> dict:
    """GET /sdapi/v1/progress as A1111 1.10.1's progressapi computes it (api.py:602-628;
    models.py ProgressResponse: progress, eta_relative, state, current_image, textinfo)."""
    if state.job_count == 0:
        return {"progress": 0, "eta_relative": 0, "state": state.dict(), "textinfo": state.textinfo}
    progress = 0.01
    if state.job_count > 0:
        progress += state.job_no / state.job_count
    if state.sampling_steps > 0:
        progress += 1 / state.job_count * state.sampling_step / state.sampling_steps
    since = time.time() - (state.time_start or time.time())
    eta_relative = since / progress - since
    return {
        "progress": min(progress, 1),
        "eta_relative": eta_relative,
        "state": state.dict(),
        "current_image": None,
        "textinfo": state.textinfo,
    }


def logged(path: str, body: dict) -> dict:
    """A request as the log keeps it: the body without its images, and each init image's size
    and pixel digest."""
    from modules.api.api import decode_base64_to_image

    entry = {"path": path, "body": {k: v for k, v in body.items() if k != "init_images"}}
    if body.get("init_images"):
        images = [decode_base64_to_image(x).convert("RGB") for x in body["init_images"]]
        entry["init"] = [
            [image.size, hashlib.sha256(image.tobytes()).hexdigest()] for image in images
        ]
    return entry


def serve(
    models: Path,
    flavour: str,
    delay: float,
    without: list[str],
    progress: str = "ok",
    log: Path | None = None,
) -> None:
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
            if self.path.startswith("/sdapi/v1/progress"):
                if log is not None:
                    with open(log, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps({"path": self.path}) + "\n")
                if progress == "silent":
                    time.sleep(3600)  # the connection stays open and nothing comes
                if progress == "error":
                    return self._answer(500, {"error": "RuntimeError", "detail": "no progress"})
                return self._answer(200, progress_answer(shared.state))
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
            endpoints = {
                "/sdapi/v1/txt2img": host_api.text2imgapi,
                "/sdapi/v1/img2img": host_api.img2imgapi,
            }
            if self.path not in endpoints:
                return self._answer(404, {"detail": "Not Found"})
            if log is not None:
                with open(log, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(logged(self.path, body)) + "\n")
            problems = api.problems_of(body, job.validate_request)
            if problems:
                return self._answer(422, {"detail": problems})
            with queue_lock:  # one runner for both tabs: the stand-in's script is tab-blind
                response = endpoints[self.path](body, runner, defaults)
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
    parser.add_argument("--progress", choices=["ok", "error", "silent"], default="ok")
    parser.add_argument("--log", type=Path)
    a = parser.parse_args()
    serve(a.models, a.flavour, a.delay, a.without, a.progress, a.log)
