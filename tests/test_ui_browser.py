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

# host: (environment, stand-in flavour); Forge 2 and Neo both pin gradio 4.40.0
ENVIRONMENTS = {
    "A1111 (gradio 3.41.2)": (".venv-ui", "a1111"),
    "Forge Neo (gradio 4.40.0)": (".venv-ui4", "neo"),
}


def drive(python: Path, env: dict[str, str], *args: str) -> dict:
    """Run tests/ui/drive.py in the host's environment; what it printed."""
    done = subprocess.run(
        [str(python), str(ROOT / "tests" / "ui" / "drive.py"), *args],
        capture_output=True,
        text=True,
        timeout=480,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("host", ENVIRONMENTS)
def test_accordion_in_chromium(tmp_path, host):
    venv, flavour = ENVIRONMENTS[host]
    python = ROOT / venv / "bin" / "python"
    if not python.exists() or shutil.which("chromium") is None:
        pytest.skip(f"needs {venv} and Debian's chromium: run `bash tests/setup.sh`")
    shot = tmp_path / "accordion.png"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "MULTIPASS_STUB_FLAVOUR": flavour}
    result = drive(python, env, "--screenshot", str(shot))
    enabled, recipe = result["args"]
    # opening the accordion switched Multipass on; the chosen values reached the script's args
    assert enabled is True
    first = recipe["passes"][0]
    # the host's own dropdown entry: titles with a hash on A1111, file names on Forge
    assert first["checkpoint"] == (
        "photo.safetensors" if flavour == "neo" else "photo.safetensors [bbbb]"
    )
    assert first["denoising_strength"] == 0.55 and first["enabled"] is True
    assert [p["enabled"] for p in recipe["passes"]] == [True, False, False]
    # the hints told the truth about the steps from the first render (the slider says 30)
    assert result["first_hint"] == "0.5 at 30 steps runs 16 of 30 steps (acts as 0.53)"
    assert result["hint"] == "0.55 at 30 steps runs 17 of 30 steps (acts as 0.57)"
    # a mistyped list is named where it is, not replaced by an older value
    assert result["typo_hint"].startswith("⚠ pass 1, field 'strengths': got '0.7, 0.3x'")
    assert "'0.3x' is not a number" in result["typo_hint"]
    # text encoders per pass are offered where the host can load them (Forge 2 and Neo)
    assert result["text_encoders_widgets"] == (flavour == "neo")
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
    assert second["enabled"] is True
    assert second["checkpoint"] == (
        "toon.safetensors" if flavour == "neo" else "toon.safetensors [aaaa]"
    )
    assert second["denoising_strength"] == 0.3 and second["prompt"] == "detailed, sharp"
    assert second["prompt_mode"] == "append"
    assert third["enabled"] is False
    # the dropdown lists the host's checkpoints after "Use same checkpoint"
    options = [o.replace("✓", "").strip() for o in result["options"]]
    assert options[0] == "Use same checkpoint"
    assert any(o.startswith("photo.safetensors") for o in options[1:])
    # "Preview detections" says when there is no image, then draws what the detector finds on
    # a dropped one; the drawing arrives even where the host's temp folder did not exist (Neo)
    preview = result["preview"]
    assert preview["empty"] == "No image yet: make one, or drop one above."
    assert preview["note"] == "opencv-face: 0 faces found, 0 would be inpainted (green, in order)"
    assert preview["image"].startswith(("data:image/png", "http"))
    assert "Error" not in preview["errors"]
    # "Too many arguments provided for the endpoint" (gradio 4.40's page; 3.41 never logs it).
    # Why: the page sends each event by number (Blocks' trigger calls
    # client.submit(dep.id, values)); @gradio/client's get_endpoint_info (utils/submit.ts) then
    # looks the number up in the API description's unnamed_endpoints, which 4.40's server never
    # fills (blocks.py Blocks.get_api_info lists named endpoints only; view_api copies only a
    # "/predict" to number 0), and map_data_to_params (helpers/api_info.ts) warns whenever an
    # event sends more values than the entry found lists parameters: every event with a backend
    # function and at least one input, named or not, shown in the API or not, state or not,
    # queued or not, .then or not (gradio issue #9895). Events with no inputs, or js= only
    # (no backend function), never log it. javascript/multipass.js describes Multipass's own
    # events (api_name "multipass_...") where the client looks: none of them logs it now.
    too_many = result["too_many"]
    # steps where only Multipass's events run: the page load, a pass's widgets, the tab's
    # steps slider (an input of Multipass's events), the detection preview
    for step in ("load", "checkpoint", "strength", "schedule", "steps", "preview"):
        assert too_many[step] == 0, (step, too_many)
    if flavour == "neo":
        # every Multipass event that sends values finds its description in the page
        assert result["unresolved"] == []
        # the host's own Generate and paste log it once a press, as on the same page without
        # Multipass: Multipass adds none (its hints that a paste sets off included)
        alone = drive(python, env, "--without-multipass")["too_many"]
        assert alone == {"load": 0, "steps": 0, "generate": 1, "paste": 1, "generate again": 1}
        for step, count in alone.items():
            assert too_many[step] == count, (step, too_many, alone)
    else:
        assert result["unresolved"] is None
        assert not [m for m in result["console"] if "Too many arguments" in m]
    layout = result["layout"]
    # no dropdown's text runs under its arrow ("Use same scheduler" was clipped on Neo)
    assert layout["clipped"] == []
    # a 0 says what it means
    assert layout["info"]["steps"] == "Sampling steps 0 = the base's"
    assert layout["info"]["cfg_scale"] == "CFG scale 0 = the base's"
    assert layout["info"]["detect_max"] == "Most detections 0 = no limit"
    assert layout["info"]["working_width"] == "Working width 0 = automatic"
    # radio groups that need two lines keep their buttons in even columns
    assert layout["radios"] and not [g for g, r in layout["radios"].items() if r["ragged"]]
