"""Ctrl-C and SIGTERM sent to a real `multipass run`: the first stops it after the current step
and says so, a second stops it at once; every finished image is saved as -partial, exit 3.

No wall-clock limit decides anything here: the test waits for the job's own progress output
before it sends a signal, and gives the process minutes to end, so a loaded machine is slower,
never wrong.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

LONG = {
    "base": {
        "width": 64,
        "height": 64,
        "steps": 12,
        "checkpoint": "tiny-toon",
        "images": 3,
        "seed": 1,
    },
    "passes": [
        {"checkpoint": "tiny-photo", "denoising_strength": 0.9},
        {"schedule": "curve", "curve_passes": 12, "denoising_strength": 0.9, "curve_final": 0.6},
    ],
}


class Running:
    """A `multipass run` subprocess whose output is read as it comes."""

    def __init__(self, folder: Path, home: Path) -> None:
        (folder / "long.json").write_text(json.dumps(LONG))
        env = {**os.environ, "MULTIPASS_HOME": str(home), "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lib_multipass", "run", "long.json", "--out", "o"],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.err = bytearray()
        self.out = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while chunk := self.proc.stderr.read1(4096):
            self.err += chunk

    def wait_for(self, text: str, timeout: float = 600) -> None:
        end = time.monotonic() + timeout
        while text.encode() not in self.err:
            assert self.proc.poll() is None, f"ended early:\n{self.err.decode(errors='replace')}"
            assert time.monotonic() < end, f"{text!r} never came"
            time.sleep(0.05)

    def finish(self, timeout: float = 600) -> tuple[int, str, str]:
        self.out = self.proc.stdout.read()
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=30)
        return code, self.out.decode(), self.err.decode(errors="replace")


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "o").glob("*-partial.png"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_interrupt_stops_after_the_step_and_keeps_the_finished_images(
    sig, tiny_models, tmp_path
):
    run = Running(tmp_path, tiny_models.parent)
    run.wait_for("pass 2")  # pass 1 is done for every image
    run.proc.send_signal(sig)
    code, out, err = run.finish()
    assert code == 3, err
    assert "stopping after the current step" in err
    assert "Traceback" not in err + out
    assert "cancelled at pass 2" in out
    assert partials(tmp_path) == ["01-1-partial.png", "02-2-partial.png", "03-3-partial.png"]
    # each partial says what ran on it and where it stopped
    from PIL import Image

    text = Image.open(tmp_path / "o" / "01-1-partial.png").info["parameters"]
    assert "Multipass 1 checkpoint: tiny-photo" in text
    assert 'Multipass result: "stopped at pass 2' in text


def test_a_second_interrupt_stops_at_once_and_still_saves(tiny_models, tmp_path):
    run = Running(tmp_path, tiny_models.parent)
    run.wait_for("pass 2")
    run.proc.send_signal(signal.SIGINT)
    run.wait_for("stopping after the current step")
    run.proc.send_signal(signal.SIGINT)
    code, out, err = run.finish()
    assert code == 3, err
    assert "Traceback" not in err + out
    assert len(partials(tmp_path)) == 3  # pass 1 finished for every image: all kept
