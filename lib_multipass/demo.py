"""The demo job: the three techniques on the built-in tiny models, small enough for a CPU."""

DEMO_RECIPE = {
    "version": 1,
    "base": {
        "prompt": "a lighthouse on a cliff at sunset",
        "negative_prompt": "blurry",
        "checkpoint": "tiny-toon",
        "width": 128,
        "height": 128,
        "steps": 16,
        "seed": 1234,
        "images": 2,
    },
    "passes": [
        {
            "name": "photo finish",
            "checkpoint": "tiny-photo",
            "upscale_by": 1.5,
            "denoising_strength": 0.5,
            "prompt": "photo, realistic",
            "prompt_mode": "append",
        },
        {
            "name": "converge",
            "schedule": "curve",
            "denoising_strength": 0.6,
            "curve_final": 0.4,
            "curve_passes": 3,
            "seed": "offset",
        },
        {
            "name": "detail",
            "checkpoint": "tiny-toon",
            "region": "crop",
            "mask_source": "boxes",
            "boxes": [[40, 36, 88, 84]],
            "padding": 0.25,
            "padding_unit": "fraction",
            "working_width": 192,
            "working_height": 192,
            "denoising_strength": 0.5,
            "prompt": "close-up, {prompt}",
            "prompt_mode": "template",
        },
    ],
}
