"""Make the README's chain pictures with the multipass command itself, on the built-in tiny
models: `python tools/make_chain_figures.py`.

docs/change-plot.png is the contact sheet of examples/settle-then-face.json (its last column
plots each run's change, the threshold in red); docs/chain.webp is its first image's chain as
an animation. The tiny models are random networks: same seed, same pictures on a CPU.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's Multipass, whatever else is installed

from lib_multipass.cli import main  # noqa: E402


def make(docs: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        args = [
            "run",
            str(ROOT / "examples" / "settle-then-face.json"),
            "--out",
            str(out),
            "--animation",
            "webp",
            "--frame-ms",
            "600",
            "--device",
            "cpu",
        ]
        code = main(args)
        if code != 0:
            sys.exit(code)
        shutil.copy(out / "contact-sheet.png", docs / "change-plot.png")
        shutil.copy(next(out.glob("01-*-chain.webp")), docs / "chain.webp")


if __name__ == "__main__":
    make(ROOT / "docs")
