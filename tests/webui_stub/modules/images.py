from PIL import Image

saved = []  # (image, path, basename, seed, info, suffix, grid), for tests


def image_grid(imgs, batch_size=1, rows=None):
    cols = max(1, (len(imgs) + (rows or 1) - 1) // (rows or 1)) if rows else len(imgs)
    w, h = imgs[0].size
    grid = Image.new("RGB", (cols * w, ((len(imgs) + cols - 1) // cols) * h))
    for i, img in enumerate(imgs):
        grid.paste(img, ((i % cols) * w, (i // cols) * h))
    return grid


def resize_image(resize_mode, im, width, height, upscaler_name=None):
    return im.resize((width, height), Image.Resampling.LANCZOS)


def save_image(
    image,
    path,
    basename,
    seed=None,
    prompt=None,
    extension="png",
    info=None,
    short_filename=False,
    no_prompt=False,
    grid=False,
    pnginfo_section_name="parameters",
    p=None,
    existing_info=None,
    forced_filename=None,
    suffix="",
    save_to_dirs=None,
):
    saved.append(
        {
            "image": image,
            "path": path,
            "basename": basename,
            "seed": seed,
            "info": info,
            "suffix": suffix,
            "grid": grid,
        }
    )
    return f"{path}/{seed}{suffix}.{extension}", None
