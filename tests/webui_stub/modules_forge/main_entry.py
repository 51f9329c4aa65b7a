"""Model selection of Forge 2 (modules_forge/main_entry.py:140-276) and Neo (:111-234): the
settings say which checkpoint and modules; forge_model_reload() loads what they say."""

import os

from modules import FLAVOUR, NEO, FORGE, paths, processing, sd_models, shared, shared_items

if not FORGE:
    raise ImportError("modules_forge exists only in Forge")

module_list = {}


def refresh_models():
    shared_items.refresh_checkpoints()
    ckpt_list = shared_items.list_checkpoint_tiles(False)
    module_list.clear()
    for folder in ("VAE", "text_encoder"):
        root = os.path.abspath(os.path.join(paths.models_path, folder))
        if os.path.isdir(root):
            for name in sorted(os.listdir(root)):
                module_list[name] = os.path.join(root, name)
    return sorted(ckpt_list), sorted(module_list)


def _refresh_model_loading_parameters():
    checkpoint_info = sd_models.select_checkpoint()
    sd_models.model_data.forge_loading_parameters = dict(
        checkpoint_info=checkpoint_info,
        additional_modules=shared.opts.forge_additional_modules,
        unet_storage_dtype=None,
    )
    processing.need_global_unload = True


if FLAVOUR == "neo2026":  # main_entry.py (mid-2026): refresh is a keyword, and may say no

    def refresh_model_loading_parameters(*, refresh: bool = True):
        if refresh:
            _refresh_model_loading_parameters()

else:

    def refresh_model_loading_parameters():
        _refresh_model_loading_parameters()


def _checkpoint_change(ckpt_name, preset, save, refresh):
    new_ckpt_info = sd_models.get_closet_checkpoint_match(ckpt_name)
    current = sd_models.get_closet_checkpoint_match(shared.opts.data.get("sd_model_checkpoint", ""))
    if new_ckpt_info == current:
        return False
    shared.opts.set("sd_model_checkpoint", ckpt_name)
    if preset is not None:
        shared.opts.set(f"forge_checkpoint_{preset}", ckpt_name)
    if save:
        shared.opts.save(shared.config_filename)
    if refresh:
        _refresh_model_loading_parameters()
    return True


def _modules_change(module_values, preset, save, refresh):
    modules = []
    for v in module_values:
        module_name = os.path.basename(v)
        if module_name in module_list:
            modules.append(module_list[module_name])
    if sorted(modules) == sorted(shared.opts.data.get("forge_additional_modules", [])):
        return False
    shared.opts.set("forge_additional_modules", modules)
    if preset is not None:
        shared.opts.set(f"forge_additional_modules_{preset}", modules)
    if save:
        shared.opts.save(shared.config_filename)
    if refresh:
        _refresh_model_loading_parameters()
    return True


if NEO:

    def checkpoint_change(ckpt_name: str, preset: str, save=True, refresh=True) -> bool:
        return _checkpoint_change(ckpt_name, preset, save, refresh)

    def modules_change(module_values: list, preset: str, save=True, refresh=True) -> bool:
        return _modules_change(module_values, preset, save, refresh)

else:

    def checkpoint_change(ckpt_name: str, save=True, refresh=True):
        return _checkpoint_change(ckpt_name, None, save, refresh)

    def modules_change(module_values: list, save=True, refresh=True) -> bool:
        return _modules_change(module_values, None, save, refresh)
