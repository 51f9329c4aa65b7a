"""Stand-in for the WebUI's `modules` package (see README.md beside it)."""

import os

FLAVOUR = os.environ.get("MULTIPASS_STUB_FLAVOUR", "a1111")
if FLAVOUR not in ("a1111", "reforge", "forge", "neo"):
    raise ValueError(f"unknown stub flavour {FLAVOUR!r}")
FORGE = FLAVOUR in ("forge", "neo")  # models load through modules_forge
