def sd_vae_items():
    import modules.sd_vae

    return ["Automatic", "None", *list(modules.sd_vae.vae_dict)]


def refresh_checkpoints():
    import modules.sd_models

    modules.sd_models.list_models()


def list_checkpoint_tiles(use_short=False):
    import modules.sd_models

    return modules.sd_models.checkpoint_tiles(use_short)
