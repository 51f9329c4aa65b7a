"""Forge 2 sysinfo.py:218-260 / Neo :209-251 set_config (overrides and the options API)."""

from modules import FLAVOUR, NEO, FORGE

if not FORGE:
    raise ImportError("set_config lives in modules.sysinfo only in Forge 2 and Neo")


def set_config(req, is_api=False, run_callbacks=True, save_config=True):
    from modules import sd_models, shared
    from modules_forge import main_entry

    preset = {"preset": None} if NEO else {}
    should_refresh = False
    for k, v in req.items():
        if v == shared.opts.data.get(k):
            continue
        if k == "sd_model_checkpoint":
            if v is not None and v not in sd_models.checkpoint_aliases:
                raise RuntimeError(f"model {v!r} not found")
            if main_entry.checkpoint_change(v, **preset, save=False, refresh=False):
                should_refresh = True
        elif k == "forge_additional_modules":
            if main_entry.modules_change(v, **preset, save=False, refresh=False):
                should_refresh = True
        else:
            shared.opts.set(k, v, is_api=is_api, run_callbacks=run_callbacks)
    if should_refresh:
        main_entry.refresh_model_loading_parameters()
    if save_config:
        shared.opts.save(shared.config_filename)
