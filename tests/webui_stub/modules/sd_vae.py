"""VAEs (A1111 1.10.1 sd_vae.py:13, 109-185, 251): live in A1111 and reForge; in Forge 2 and
Neo the loading functions are empty (the VAE is one of forge_additional_modules)."""

import os

from modules import FORGE, paths, shared

vae_path = os.path.abspath(os.path.join(paths.models_path, "VAE"))
vae_dict = {}
loaded_vae_file = None
unspecified = object()
reloads = []  # (checkpoint title, vae file) of every VAE load, for tests


def refresh_vae_list():
    vae_dict.clear()
    if os.path.isdir(vae_path):
        for name in sorted(os.listdir(vae_path)):
            if name.endswith((".safetensors", ".pt", ".ckpt")):
                vae_dict[name] = os.path.join(vae_path, name)


class VaeResolution:
    def __init__(self, vae=None, source=None, resolved=True):
        self.vae, self.source, self.resolved = vae, source, resolved

    def tuple(self):
        return self.vae, self.source


def is_automatic():
    return shared.opts.sd_vae in {"Automatic", "auto"}


def find_vae_near_checkpoint(checkpoint_file):
    checkpoint_path = os.path.basename(checkpoint_file).rsplit(".", 1)[0]
    for vae_file in vae_dict.values():
        if os.path.basename(vae_file).startswith(checkpoint_path):
            return vae_file
    return None


def resolve_vae_near_checkpoint(checkpoint_file):
    vae_near = find_vae_near_checkpoint(checkpoint_file)
    if vae_near is not None:
        return VaeResolution(vae_near, "found near the checkpoint")
    return VaeResolution(resolved=False)


def resolve_vae_from_user_metadata(checkpoint_file):
    return VaeResolution(resolved=False)


def resolve_vae_from_setting():
    if shared.opts.sd_vae == "None":
        return VaeResolution()
    vae_from_options = vae_dict.get(shared.opts.sd_vae, None)
    if vae_from_options is not None:
        return VaeResolution(vae_from_options, "specified in settings")
    return VaeResolution(resolved=False)


def resolve_vae(checkpoint_file):
    if shared.cmd_opts.vae_path is not None:
        return VaeResolution(shared.cmd_opts.vae_path, "from commandline argument")
    if shared.opts.sd_vae_overrides_per_model_preferences and not is_automatic():
        return resolve_vae_from_setting()
    res = resolve_vae_from_user_metadata(checkpoint_file)
    if res.resolved:
        return res
    res = resolve_vae_near_checkpoint(checkpoint_file)
    if res.resolved:
        return res
    return resolve_vae_from_setting()


def get_loaded_vae_name():
    return None if loaded_vae_file is None else os.path.basename(loaded_vae_file)


if FORGE:

    def reload_vae_weights(sd_model=None, vae_file=unspecified):
        pass

else:

    def reload_vae_weights(sd_model=None, vae_file=unspecified):
        global loaded_vae_file
        if not sd_model:
            sd_model = shared.sd_model
        checkpoint_file = sd_model.sd_checkpoint_info.filename
        if vae_file == unspecified:
            vae_file, _source = resolve_vae(checkpoint_file).tuple()
        if loaded_vae_file == vae_file:
            return None
        loaded_vae_file = vae_file
        reloads.append((sd_model.sd_checkpoint_info.title, vae_file))
        return sd_model
