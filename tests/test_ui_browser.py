"""The accordion in a real gradio app, driven in headless Chromium: gradio 3.41.2 as A1111
pins it, and gradio 4.40.0 as Forge 2 does.

Each gradio only serves beside its host's own pins, so each lives in its own environment
(.venv-ui, .venv-ui4, made by tests/setup.sh from tests/ui/requirements*.txt); Chromium is
Debian's.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

ENVIRONMENTS = {"gradio 3.41.2 (A1111)": ".venv-ui", "gradio 4.40.0 (Forge 2)": ".venv-ui4"}


@pytest.mark.parametrize("host", ENVIRONMENTS)
def test_accordion_in_chromium(tmp_path, host):
    python = ROOT / ENVIRONMENTS[host] / "bin" / "python"
    if not python.exists() or shutil.which("chromium") is None:
        pytest.skip(f"needs {ENVIRONMENTS[host]} and Debian's chromium: run `bash tests/setup.sh`")
    shot = tmp_path / "accordion.png"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    done = subprocess.run(
        [str(python), str(ROOT / "tests" / "ui" / "drive.py"), "--screenshot", str(shot)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    enabled, recipe = result["args"]
    # opening the accordion switched Multipass on; the chosen values reached the script's args
    assert enabled is True
    first = recipe["passes"][0]
    assert first["checkpoint"] == "photo.safetensors [bbbb]"
    assert first["denoising_strength"] == 0.55 and first["enabled"] is True
    assert [p["enabled"] for p in recipe["passes"]] == [True, False, False]
    # the live hint told the truth about the steps
    assert result["hint"] == "0.55 at 20 steps runs 12 of 20 steps (acts as 0.60)"
    assert Path(shot).stat().st_size > 10_000
    # pasting a parameters text restored every Multipass field, defaults included
    enabled, pasted = result["after_paste"]
    assert enabled is True
    first, second, third = pasted["passes"]
    assert (
        first["enabled"] is False
        and first["checkpoint"] == ""
        and first["denoising_strength"] == 0.5
    )
    assert second["enabled"] is True and second["checkpoint"] == "toon.safetensors [aaaa]"
    assert second["denoising_strength"] == 0.3 and second["prompt"] == "detailed, sharp"
    assert second["prompt_mode"] == "append"
    assert third["enabled"] is False
    # the dropdown lists the host's checkpoints after "Use same checkpoint"
    assert [o.replace("✓", "").strip() for o in result["options"]][:2] == [
        "Use same checkpoint",
        "toon.safetensors [aaaa]",
    ]
