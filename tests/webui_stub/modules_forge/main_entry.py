"""Forge 2's model selection (only importable in the Forge flavour)."""

from modules import FLAVOUR, sd_models, shared

if FLAVOUR != "forge":
    raise ImportError("modules_forge exists only in Forge")


def refresh_model_loading_parameters():
    sd_models.model_data.forge_loading_parameters = dict(
        checkpoint_info=sd_models.select_checkpoint()
    )


def checkpoint_change(ckpt_name: str, save=True, refresh=True):
    new = sd_models.checkpoint_aliases.get(ckpt_name)
    current = sd_models.checkpoint_aliases.get(shared.opts.data.get("sd_model_checkpoint", ""))
    if new == current:
        return False
    shared.opts.set("sd_model_checkpoint", ckpt_name)
    if save:
        raise AssertionError("a test must never save the user's config")
    if refresh:
        refresh_model_loading_parameters()
    return True
