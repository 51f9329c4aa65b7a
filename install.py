"""WebUI install hook: Multipass needs nothing beyond what the WebUI ships.

It never installs torch, gradio, numpy or pydantic (the WebUI pins its own); `lib_multipass`
needs only Pillow, which every WebUI has.
"""
