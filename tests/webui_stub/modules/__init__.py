"""Stand-in for the WebUI's `modules` package (see README.md beside it)."""

import os

FLAVOUR = os.environ.get("MULTIPASS_STUB_FLAVOUR", "a1111")
