vae_dict = {"vae-ft-mse.safetensors": "/models/VAE/vae-ft-mse.safetensors"}


def reload_vae_weights(sd_model=None, vae_file=None):
    return sd_model
