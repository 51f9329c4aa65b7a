"""modules/extensions.py: active() lists the enabled extensions, each with its folder
(`path`) and `name`. The stand-in has sd-webui-controlnet installed on A1111 only."""

import os

from modules import CONTROLNET, FLAVOUR

STUB = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Extension:
    def __init__(self, name, path):
        self.name = name
        self.path = path
        self.enabled = True


def active():
    if FLAVOUR != "a1111" or not CONTROLNET:
        return []
    name = "sd-webui-controlnet"
    return [Extension(name, os.path.join(STUB, "extensions", name))]
