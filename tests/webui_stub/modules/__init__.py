"""Stand-in for the WebUI's `modules` package (see README.md beside it)."""

import os

FLAVOUR = os.environ.get("MULTIPASS_STUB_FLAVOUR", "a1111")
if FLAVOUR not in ("a1111", "reforge", "forge", "neo", "neo2026"):
    raise ValueError(f"unknown stub flavour {FLAVOUR!r}")
FORGE = FLAVOUR in ("forge", "neo", "neo2026")  # models load through modules_forge
NEO = FLAVOUR in ("neo", "neo2026")  # Forge Neo: Oct 2025, and its newest sources (mid-2026)
# the host's ControlNet (A1111: the sd-webui-controlnet extension; the others: built in);
# MULTIPASS_STUB_CONTROLNET=0 stands for a host without it
CONTROLNET = os.environ.get("MULTIPASS_STUB_CONTROLNET", "1") != "0"
