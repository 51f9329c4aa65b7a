"""Multipass for the Stable Diffusion WebUI (AUTOMATIC1111, reForge, Forge).

This file will be the thin WebUI adapter: the Multipass accordion, the API args and the hooks,
with all logic in `lib_multipass`. Until that adapter lands, the extension registers no script,
so installing it changes nothing in the WebUI.
"""
