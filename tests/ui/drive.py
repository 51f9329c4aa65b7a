"""Drive the Multipass accordion in headless Chromium (run in .venv-ui).

    .venv-ui/bin/python tests/ui/drive.py [--screenshot PATH] [--without-multipass]

Starts tests/ui/app.py on a free local port, opens it in Debian's Chromium through
Playwright, opens the accordion, picks a checkpoint and a strength for pass 1, presses
Generate, and prints what arrived in the script's args (and the step hint) as JSON, with how
many times the page logged gradio 4's "Too many arguments provided for the endpoint" in each
step. `--without-multipass`: the host page alone, through the host's own steps of the same
run (load, steps, Generate, paste, Generate), and only those counts.
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


TOO_MANY = "Too many arguments provided for the endpoint"

# Multipass's events (all they change is Multipass's: its widgets and its state) that send
# values the page cannot match to a description: gradio 4.40's client looks an event up by
# its number in window.gradio_api_info's unnamed endpoints and warns TOO_MANY when it sends
# more values than the entry found lists parameters (none, where there is no entry); null on
# gradio 3.41, whose page has no such description and never warns
UNRESOLVED_JS = """
() => {
  const info = window.gradio_api_info, config = window.gradio_config;
  if (!info) return null;
  const byId = new Map(config.components.map(c => [c.id, c]));
  const own = id => {
    const c = byId.get(id);
    return c && (c.type === 'state' || (c.props.elem_id || '').startsWith('multipass_'));
  };
  return config.dependencies
    .filter(d => d.backend_fn && d.inputs.length && d.outputs.length && d.outputs.every(own))
    .filter(d => ((info.unnamed_endpoints || {})[d.id]?.parameters || []).length < d.inputs.length)
    .map(d => `${d.api_name} (${d.inputs.length} values)`);
}
"""


class Steps:
    """How many TOO_MANY messages the page logged in each named step of the run."""

    def __init__(self, page, console: list[str]) -> None:
        self.page, self.console, self.seen, self.counts = page, console, 0, {}

    def end(self, name: str) -> None:
        self.page.wait_for_timeout(500)  # the last event's console message arrives
        self.counts[name] = sum(TOO_MANY in m for m in self.console[self.seen :])
        self.seen = len(self.console)


def change_steps(page) -> None:
    """The tab's steps slider to 25, then back to 30."""
    steps = page.locator("#txt2img_steps input[type=number]")
    for value in ("25", "30"):
        steps.fill(value)
        steps.press("Enter")
        page.wait_for_timeout(1500)


def generate(page) -> list:
    """Press Generate; the script args the host's stand-in shows (each press numbered)."""
    box = "document.querySelector('#script_args textarea')"
    before = page.evaluate(f"() => {box}.value")
    page.click("#txt2img_generate")
    page.wait_for_function(f"(before) => {box}.value && {box}.value !== before", arg=before)
    return json.loads(page.evaluate(f"() => {box}.value"))["args"]


def paste(page) -> None:
    """Paste a parameters text, as PNG Info's "Send to txt2img" does."""
    page.fill("#paste_text textarea", PASTE)
    page.click("#paste_button")
    page.wait_for_function(
        "() => document.querySelector('#txt2img_prompt textarea').value === 'a castle'"
    )


def host_alone(page, url: str) -> dict:
    """The host page without Multipass, through the host's own steps of the full run."""
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    steps = Steps(page, console)
    page.goto(url)
    page.wait_for_selector("#txt2img_generate")
    page.wait_for_timeout(3000)
    steps.end("load")
    change_steps(page)
    steps.end("steps")
    generate(page)
    steps.end("generate")
    paste(page)
    page.wait_for_timeout(1000)
    steps.end("paste")
    generate(page)
    steps.end("generate again")
    return {"too_many": steps.counts}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--without-multipass", action="store_true")
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    extra = ["--without-multipass"] if args.without_multipass else []
    server = subprocess.Popen(
        [sys.executable, str(HERE / "app.py"), str(port), *extra],
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
            if args.without_multipass:
                result = host_alone(page, url)
            else:
                result = drive(page, url, args.screenshot)
            browser.close()
        print(json.dumps(result))
        return 0
    finally:
        server.terminate()
        server.wait(timeout=10)


def drive(page, url: str, screenshot: Path | None) -> dict:
    """The full run with Multipass: what reached the script's args, what the hints and the
    layout showed, and the TOO_MANY count of each step."""
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    steps = Steps(page, console)
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
    page.wait_for_timeout(2500)  # as long as the page without Multipass is given
    steps.end("load")
    page.click("#multipass_txt2img_p1_refresh")  # re-reads the host's checkpoint list
    page.wait_for_timeout(500)
    page.click("#multipass_txt2img_p1_checkpoint input")
    options = page.locator("ul.options li").all_inner_texts()
    page.click("ul.options li:has-text('photo.safetensors')")
    steps.end("checkpoint")
    strength = page.locator("#multipass_txt2img_p1_denoising_strength input[type=number]")
    strength.fill("0.55")
    strength.press("Enter")
    # gradio 3 puts the id on two nested elements, gradio 4 on one
    hint = page.locator("[id='multipass_txt2img_p1_hint']").filter(has_text="0.55 at").last
    hint.wait_for()
    hint_text = re.search(r"0\.55 at [^)]*\)", hint.inner_text()).group(0)
    steps.end("strength")
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
    steps.end("schedule")
    page.click("#multipass_txt2img_p1 .label-wrap:has-text('Region')")
    page.wait_for_timeout(300)
    layout = page.evaluate(LAYOUT_JS)
    if screenshot:
        page.locator("#multipass_txt2img").screenshot(path=str(screenshot))
    change_steps(page)  # the host's slider: Multipass's hints follow it
    steps.end("steps")
    args = generate(page)
    steps.end("generate")
    # paste a parameters text, then generate again
    paste(page)
    pass2 = page.locator("[id='multipass_txt2img_p2_hint']").filter(has_text="0.3 at")
    pass2.last.wait_for(state="attached")
    page.wait_for_timeout(1000)  # let every widget's change settle
    steps.end("paste")
    after_paste = generate(page)
    steps.end("generate again")
    with tempfile.TemporaryDirectory() as tmp:
        preview = preview_detections(page, Path(tmp))
    steps.end("preview")
    return {
        "args": args,
        "first_hint": first_hint,
        "typo_hint": typo_hint,
        "text_encoders_widgets": encoders,
        "hint": hint_text,
        "options": options,
        "after_paste": after_paste,
        "preview": preview,
        "console": console,
        "too_many": steps.counts,
        "unresolved": page.evaluate(UNRESOLVED_JS),
        "layout": layout,
    }


if __name__ == "__main__":
    sys.exit(main())
