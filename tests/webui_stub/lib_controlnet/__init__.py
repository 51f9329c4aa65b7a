"""Stand-in for the built-in ControlNet of reForge, Forge 2 and Neo
(extensions-builtin/sd_forge_controlnet/lib_controlnet, importable as `lib_controlnet` because
the host puts each built-in extension's folder on sys.path). A1111 has no built-in ControlNet:
there it comes from sd-webui-controlnet (see extensions/sd-webui-controlnet beside this)."""

from modules import CONTROLNET, FLAVOUR

if FLAVOUR == "a1111" or not CONTROLNET:
    raise ImportError("No module named 'lib_controlnet'")
