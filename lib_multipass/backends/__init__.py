"""Backends: one module per host (diffusers here; the WebUI's comes with the extension)."""
