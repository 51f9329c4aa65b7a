"""How the hosts turn a PIL image a UI function returns into a file gradio serves
(modules/ui_tempdir.py): into `opts.temp_dir` when it is set, without creating it.

Forge Neo's default `temp_dir` is `<data path>/tmp` (shared_options.py:73), which only exists
once that setting is changed (`on_tmpdir_changed`, :163); A1111, reForge and Forge 2 default
to "" (gradio's cache). Gradio 3 calls it as a method of every component (A1111 and reForge:
`save_pil_to_file(self, pil_image, dir=None, format="png")`); gradio 4 as a function
(Forge 2 and Neo: `save_pil_to_file(pil_image, cache_dir=None, format="png")`).
"""

import os
import tempfile

from modules import FORGE, shared


def _write(pil_image, fallback):
    if shared.opts.temp_dir:
        where = shared.opts.temp_dir
    else:
        where = fallback
        os.makedirs(where, exist_ok=True)
    file_obj = tempfile.NamedTemporaryFile(delete=False, suffix=".png", dir=where)
    pil_image.save(file_obj)
    return file_obj.name


if FORGE:

    def save_pil_to_file(pil_image, cache_dir=None, format="png"):
        return _write(pil_image, cache_dir)
else:

    def save_pil_to_file(self, pil_image, dir=None, format="png"):
        return _write(pil_image, dir)


def install_ui_tempdir_override():
    """As the hosts do at start: gradio writes images through save_pil_to_file."""
    import gradio

    if FORGE:
        gradio.processing_utils.save_pil_to_cache = save_pil_to_file
    else:
        gradio.components.IOComponent.pil_to_temp_file = save_pil_to_file
