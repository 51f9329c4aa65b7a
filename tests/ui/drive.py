"""Drive the Multipass accordion in headless Chromium (run in .venv-ui).

    .venv-ui/bin/python tests/ui/drive.py [--screenshot PATH]

Starts tests/ui/app.py on a free local port, opens it in Debian's Chromium through
Playwright, opens the accordion, picks a checkpoint and a strength for pass 1, presses
Generate, and prints what arrived in the script's args (and the step hint) as JSON.
"""

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# what the WebUI's javascript/inputAccordion.js does: opening the accordion ticks its checkbox
ACCORDION_JS = """
() => {
  for (const acc of document.querySelectorAll('.input-accordion')) {
    const label = acc.querySelector('.label-wrap');
    label.addEventListener('click', () => {
      const box = document.querySelector('#' + acc.id + '-checkbox input');
      box.click();
    });
  }
}
"""


# what a person sees of pass 1's open sections: dropdowns whose text runs under the arrow,
# the words under sliders whose 0 means something, rows of radio buttons per group
LAYOUT_JS = """
() => {
  const pass = document.querySelector('#multipass_txt2img_p1');
  const canvas = document.createElement('canvas').getContext('2d');
  const clipped = [];
  for (const input of pass.querySelectorAll('.wrap-inner input')) {
    const block = input.closest('[id^="multipass_"]');
    if (!input.offsetParent || block.querySelector('.token')) continue;  // shown, single
    const arrow = input.closest('.wrap-inner').querySelector('.dropdown-arrow, .icon-wrap');
    const box = input.getBoundingClientRect();
    const left = box.left + parseFloat(getComputedStyle(input).paddingLeft);
    const room = (arrow ? arrow.getBoundingClientRect().left : box.right) - left;
    canvas.font = getComputedStyle(input).font;
    const width = canvas.measureText(input.value).width;
    if (width > room) clipped.push({id: block.id, text: input.value,
                                    width: Math.round(width), room: Math.round(room)});
  }
  const info = {};
  for (const name of ['steps', 'cfg_scale', 'clip_skip', 'detect_max', 'working_width']) {
    const el = document.querySelector('#multipass_txt2img_p1_' + name);
    info[name] = el ? el.innerText.replace(/\\s+/g, ' ').trim() : null;
  }
  const radios = {};
  for (const group of pass.querySelectorAll('[id^="multipass_txt2img_p1_"]')) {
    const labels = [...group.querySelectorAll(':scope label:has(> input[type=radio])')];
    if (!labels.length || !labels[0].offsetParent) continue;
    const rows = {};
    for (const l of labels) {
      const r = l.getBoundingClientRect();
      (rows[Math.round(r.top)] ||= []).push(Math.round(r.left));
    }
    const lines = Object.values(rows);
    // ragged: a later row's buttons do not start where the first row's do
    const ragged = lines.slice(1).some(row => row.some(x => !lines[0].includes(x)));
    radios[group.id] = {rows: lines.length, ragged};
  }
  return {clipped, info, radios};
}
"""

PASTE = (
    "a castle\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, "
    "Size: 512x512, Multipass version: 0.1.0, Multipass passes: 2, Multipass 1 enabled: False, "
    "Multipass 2 checkpoint: toon.safetensors [aaaa], Multipass 2 denoising: 0.3, "
    'Multipass 2 prompt: "detailed, sharp", Multipass 2 prompt mode: append'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 240) -> None:
    end = time.time() + seconds
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {seconds} s")


def preview_detections(page, tmp: Path) -> dict:
    """Press pass 1's "Preview detections" with no image, then on an uploaded one: what the
    note says each time, and whether the drawing arrived as an image."""
    from PIL import Image

    page.click("#multipass_txt2img_p1 .label-wrap:has-text('Detect')")
    button = page.locator("#multipass_txt2img_p1_preview_button")
    button.click()
    note = page.locator("[id='multipass_txt2img_p1_preview_note']").last
    note.filter(has_text="No image").wait_for()
    empty = note.inner_text().strip()
    picture = tmp / "upload.png"
    Image.radial_gradient("L").convert("RGB").resize((320, 256)).save(picture)
    page.set_input_files("#multipass_txt2img_p1_preview_source input[type=file]", str(picture))
    page.wait_for_timeout(1000)
    button.click()
    note.filter(has_text="found").wait_for()
    shown = page.locator("#multipass_txt2img_p1_preview img")
    shown.last.wait_for()
    return {
        "empty": empty,
        "note": note.inner_text().strip(),
        "image": (shown.last.get_attribute("src") or "")[:80],
        "errors": page.locator("#multipass_txt2img_p1_preview").inner_text(),
    }


def endpoints_short_of_inputs(url: str) -> list[str] | None:
    """Multipass's events whose API lists fewer parameters than the event sends values (a
    gr.State input is left out of the parameters: gradio 4 then logs "Too many arguments
    provided for the endpoint"); None where the host's gradio has no /info (3.41)."""
    try:
        config = json.load(urllib.request.urlopen(url + "config", timeout=120))
        info = json.load(urllib.request.urlopen(url + "info", timeout=120))
    except OSError:
        return None
    ids = {c["id"]: c.get("props", {}).get("elem_id") or "" for c in config["components"]}
    short = []
    for dep in config["dependencies"]:
        targets = [ids.get(t[0] if isinstance(t, list) else t, "") for t in dep["targets"]]
        if not any(t.startswith("multipass_") for t in targets) or not dep["inputs"]:
            continue
        endpoint = info.get("named_endpoints", {}).get(f"/{dep.get('api_name')}")
        if endpoint is None or len(endpoint["parameters"]) < len(dep["inputs"]):
            short.append(f"{dep.get('api_name')} ({targets[0]})")
    return short


def main() -> int:

    parser = argparse.ArgumentParser()
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(
        [sys.executable, str(HERE / "app.py"), str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(url)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.goto(url)
            page.wait_for_selector("#multipass_txt2img")
            page.evaluate(ACCORDION_JS)
            page.click("#multipass_txt2img > .label-wrap")
            page.wait_for_selector("#multipass_txt2img_p1_checkpoint", state="visible")
            # gradio 4 shows the value built with ui() first, then the page-load value
            first = page.locator("[id='multipass_txt2img_p1_hint']").filter(has_text=" at ").last
            with contextlib.suppress(Exception):  # what the hint says is checked by the test
                first.filter(has_text="at 30 steps").wait_for(timeout=15000)
            first_hint = first.inner_text().strip().splitlines()[-1]
            page.click("#multipass_txt2img_p1_refresh")  # re-reads the host's checkpoint list
            page.wait_for_timeout(500)
            page.click("#multipass_txt2img_p1_checkpoint input")
            options = page.locator("ul.options li").all_inner_texts()
            page.click("ul.options li:has-text('photo.safetensors')")
            strength = page.locator("#multipass_txt2img_p1_denoising_strength input[type=number]")
            strength.fill("0.55")
            strength.press("Enter")
            # gradio 3 puts the id on two nested elements, gradio 4 on one
            hint = page.locator("[id='multipass_txt2img_p1_hint']").filter(has_text="0.55 at").last
            hint.wait_for()
            hint_text = re.search(r"0\.55 at [^)]*\)", hint.inner_text()).group(0)
            # a mistyped strength list: named in the hint, sent as typed (the job refuses it)
            page.click("#multipass_txt2img_p1 .label-wrap:has-text('Sampling and schedule')")
            page.wait_for_timeout(300)
            encoders = page.locator("#multipass_txt2img_p1_text_encoders").is_visible()
            page.click("#multipass_txt2img_p1_schedule label:has-text('list')")
            typo = page.locator("#multipass_txt2img_p1_strengths textarea")
            typo.fill("0.7, 0.3x")
            typo.press("Tab")
            bad = page.locator("[id='multipass_txt2img_p1_hint']").filter(has_text="0.3x").last
            bad.wait_for()
            typo_hint = bad.inner_text().strip()
            typo.fill("")
            typo.press("Tab")
            page.click("#multipass_txt2img_p1_schedule label:has-text('single')")
            hint.wait_for()
            page.click("#multipass_txt2img_p1 .label-wrap:has-text('Region')")
            page.wait_for_timeout(300)
            layout = page.evaluate(LAYOUT_JS)
            if args.screenshot:
                page.locator("#multipass_txt2img").screenshot(path=str(args.screenshot))
            # what Multipass's own events logged: at load, on each change of a pass or of the
            # tab's steps (Generate is the host's event, with every script's inputs)
            steps = page.locator("#txt2img_steps input[type=number]")
            steps.fill("25")
            steps.press("Enter")
            page.wait_for_timeout(1500)
            steps.fill("30")
            steps.press("Enter")
            page.wait_for_timeout(1500)
            before_generate = list(console)
            page.click("#txt2img_generate")
            page.wait_for_function(
                "() => document.querySelector('#script_args textarea').value.length > 2"
            )
            raw = page.locator("#script_args textarea").input_value()
            # paste a parameters text, as PNG Info's "Send to txt2img" does, then generate again
            page.fill("#paste_text textarea", PASTE)
            page.click("#paste_button")
            pass2 = page.locator("[id='multipass_txt2img_p2_hint']").filter(has_text="0.3 at")
            pass2.last.wait_for(state="attached")
            page.wait_for_timeout(1000)  # let every widget's change settle
            page.click("#txt2img_generate")
            page.wait_for_function(
                "(before) => document.querySelector('#script_args textarea').value !== before",
                arg=raw,
            )
            after_paste = page.locator("#script_args textarea").input_value()
            with tempfile.TemporaryDirectory() as tmp:
                preview = preview_detections(page, Path(tmp))

            browser.close()

        print(
            json.dumps(
                {
                    "args": json.loads(raw),
                    "first_hint": first_hint,
                    "typo_hint": typo_hint,
                    "text_encoders_widgets": encoders,
                    "hint": hint_text,
                    "options": options,
                    "after_paste": json.loads(after_paste),
                    "preview": preview,
                    "console": console,
                    "console_before_generate": before_generate,
                    "endpoints_short": endpoints_short_of_inputs(url),
                    "layout": layout,
                }
            )
        )
        return 0
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
