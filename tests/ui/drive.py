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


def wait_for(url: str, seconds: float = 60) -> None:
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
            if args.screenshot:
                page.locator("#multipass_txt2img").screenshot(path=str(args.screenshot))
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
                }
            )
        )
        return 0
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
