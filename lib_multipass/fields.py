"""The field table: every setting of a Multipass recipe, named once.

Validation, JSON schema, infotext, positional WebUI args (and later the UI and XYZ axes) are all
derived from these tables, so a label, a bound or a default can never drift between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["bool", "int", "float", "str", "choice", "floats", "boxes", "sides", "names"]

MAX_TEXT = 20_000
MAX_LIST = 64
MAX_PASSES = 16
MAX_NAMES = 8  # text-encoder modules of one pass
MAX_NAME = 1000
MAX_SIDE = 8192  # largest image side Multipass will plan or produce
MAX_PIXELS = 8192 * 8192 // 2  # 32 Mpx: bounded memory per image
MIN_STRENGTH = 0.001  # below this a strength means nothing (and fixed steps would overflow)
NO_SAMPLING = "no sampling (an upscale-only run)"


@dataclass(frozen=True)
class Field:
    """One setting: its API name, type, default, bounds and the words shown to users."""

    name: str
    kind: Kind
    default: Any
    label: str
    infotext: str | None  # key after the "Multipass N " prefix; None: not written to infotext
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    special: Any = None  # a value outside the bounds with a meaning of its own
    special_means: str = "the base generation's value"
    step: float | None = None  # UI slider step

    def allowed(self) -> str:
        """Describe the allowed values in words, for error messages and docs."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "str":
            return f"text of at most {MAX_TEXT} characters"
        if self.kind in ("int", "float"):
            what = "a whole number" if self.kind == "int" else "a finite number"
            text = f"{what} from {_num(self.minimum)} to {_num(self.maximum)}"
            return text + self._special_text()
        if self.kind == "floats":
            return (
                f"a list of at most {MAX_LIST} numbers, each from "
                f"{_num(self.minimum)} to {_num(self.maximum)}{self._special_text()}"
            )
        if self.kind == "boxes":
            return (
                f"a list of at most {MAX_LIST} boxes [x1, y1, x2, y2] of whole pixels, "
                f"with 0 <= x1 < x2 <= {MAX_SIDE} and 0 <= y1 < y2 <= {MAX_SIDE}"
            )
        if self.kind == "names":
            return (
                f"a list of at most {MAX_NAMES} names, each a text of at most {MAX_NAME} characters"
            )
        if self.kind == "sides":
            return (
                "an empty list (use padding on every side) or four numbers [left, top, right, "
                f"bottom], each from {_num(self.minimum)} to {_num(self.maximum)}"
            )
        raise AssertionError(self.kind)

    def _special_text(self) -> str:
        if self.special is None:
            return ""
        return f", or {_num(self.special)} for {self.special_means}"

    def accepts_number(self, v: float) -> bool:
        """Whether a number is within the bounds or is the special value."""
        if v == self.special:
            return True
        lo = -math.inf if self.minimum is None else self.minimum
        hi = math.inf if self.maximum is None else self.maximum
        return lo <= v <= hi


def _num(x: float | None) -> str:
    if x is None:
        return "?"
    if isinstance(x, float) and x.is_integer() and not math.isinf(x):
        return str(int(x)) if abs(x) >= 1 or x == 0 else str(x)
    return str(x)


PROMPT_MODES = ("keep", "replace", "append", "template")
SCHEDULES = ("single", "list", "curve")
CURVES = ("linear", "aggressive", "lazy")
SEED_POLICIES = ("same", "offset", "random")
REGIONS = ("whole", "crop", "tiles")
TILE_STYLES = ("ultimate", "sd-upscale")
TILE_ORDERS = ("chess", "linear")
TILE_SEEDS = ("per-tile", "same")
SEAMS_FIXES = ("none", "band", "half-tile", "half-tile+intersections")
MASK_SOURCES = ("job", "image", "boxes", "detect")
DETECT_ORDERS = ("largest", "left-to-right", "top-to-bottom", "confidence")
DETECT_MASKS = ("box", "segment")
SEP = "[SEP]"  # between the prompts of a crop pass's crops (detections, boxes), as adetailer
PADDING_UNITS = ("px", "fraction")
STEP_MODES = ("proportional", "fixed")
RNG_SOURCES = ("CPU", "GPU", "NV")  # the WebUI's "Random number generator source"
# whose rules a headless image follows where the WebUIs part ways (lib_multipass.backends)
IMAGE_RULES = ("A1111", "Forge")
ANIMATION_FORMATS = ("none", "webp", "gif")
# ControlNet's three control modes (sd-webui-controlnet and Forge's built-in ControlNet:
# ControlMode "Balanced", "My prompt is more important", "ControlNet is more important")
CONTROL_MODES = ("balanced", "prompt", "controlnet")
CONTROLNET_UNITS = 2  # ControlNet units a pass can have


def controlnet_fields(n: int) -> tuple[Field, ...]:
    """The fields of a pass's ControlNet unit `n` (from 1): flat, as every other field, so the
    UI, API, schema, infotext, paste and XYZ all know them."""
    k, label = f"controlnet_{n}_", f"ControlNet {n}"
    return (
        Field(
            k + "model",
            "str",
            "",
            f"{label} model",
            f"controlnet {n} model",
            help="A ControlNet model from the host's list (sd-webui-controlnet on A1111, "
            "the built-in ControlNet on reForge, Forge 2 and Neo), of the pass "
            "checkpoint's family; empty: no unit. Its control image is the pass's own "
            "input: the whole image, each crop, or each tile.",
        ),
        Field(
            k + "module",
            "str",
            "",
            f"{label} preprocessor",
            f"controlnet {n} module",
            help="A preprocessor from the host's list; empty: none (the pass's input is "
            "the control image as it is, as for tile models).",
        ),
        Field(
            k + "weight",
            "float",
            1.0,
            f"{label} weight",
            f"controlnet {n} weight",
            minimum=0.0,
            maximum=2.0,
            step=0.05,
        ),
        Field(
            k + "guidance_start",
            "float",
            0.0,
            f"{label} starting step",
            f"controlnet {n} start",
            minimum=0.0,
            maximum=1.0,
            step=0.01,
            help="A fraction of the pass's steps.",
        ),
        Field(
            k + "guidance_end",
            "float",
            1.0,
            f"{label} ending step",
            f"controlnet {n} end",
            minimum=0.0,
            maximum=1.0,
            step=0.01,
            help="A fraction of the pass's steps.",
        ),
        Field(
            k + "control_mode",
            "choice",
            "balanced",
            f"{label} control mode",
            f"controlnet {n} mode",
            choices=CONTROL_MODES,
            help="balanced; prompt: my prompt is more important; controlnet: ControlNet is "
            "more important.",
        ),
    )


# fmt: off
PASS_FIELDS: tuple[Field, ...] = (
    Field("enabled", "bool", True, "Enable pass", "enabled"),
    Field("name", "str", "", "Pass name", "name",
          help="Shown in plans, progress and contact sheets; empty: 'pass N'."),
    Field("checkpoint", "str", "", "Checkpoint", "checkpoint",
          help="A checkpoint from the host's list (title, name or hash); "
               "empty: keep the current one."),
    Field("vae", "str", "", "VAE", "vae",
          help="A VAE from the host's list; empty: keep the current one."),
    Field("text_encoders", "names", (), "Text encoders", "text encoders",
          help="Text-encoder module files from the host's list (Forge 2 and Neo, e.g. for a "
               "Flux pass); empty: keep the current ones."),
    Field("prompt", "str", "", "Prompt", "prompt",
          help="Used as the prompt mode says; in a template, {prompt} stands for the base prompt. "
               "For a crop pass, [SEP] separates one prompt per crop (detection, box or area), the "
               "last one repeating."),
    Field("prompt_mode", "choice", "keep", "Prompt mode", "prompt mode", choices=PROMPT_MODES,
          help="keep: the base prompt; replace: this prompt; append: base prompt, this prompt; "
               "template: this prompt with {prompt} replaced by the base prompt."),
    Field("negative_prompt", "str", "", "Negative prompt", "negative prompt"),
    Field("negative_prompt_mode", "choice", "keep", "Negative prompt mode", "negative prompt mode",
          choices=PROMPT_MODES),
    Field("sampler", "str", "", "Sampler", "sampler",
          help="A sampler name as the host lists it; empty: the base generation's sampler."),
    Field("scheduler", "str", "", "Schedule type", "scheduler",
          help="A schedule type as the host lists it; empty: the base generation's."),
    Field("steps", "int", 0, "Sampling steps", "steps", minimum=1, maximum=150, special=0, step=1,
          help="0: the base generation's steps."),
    Field("cfg_scale", "float", 0.0, "CFG scale", "cfg", minimum=1.0, maximum=30.0, special=0.0,
          step=0.5, help="0: the base generation's CFG scale."),
    Field("clip_skip", "int", 0, "Clip skip", "clip skip", minimum=1, maximum=12, special=0,
          step=1, help="The WebUI's Clip skip: 1 takes CLIP's last layer, 2 the one before... "
                       "(SD1; SDXL takes its own layers whatever this is, as in A1111); "
                       "0: the base generation's."),
    Field("denoising_strength", "float", 0.5, "Denoising strength", "denoising",
          minimum=MIN_STRENGTH, maximum=1.0, special=0.0, special_means=NO_SAMPLING, step=0.01,
          help="Also the start of a curve schedule. 0 runs no sampling (an upscale-only pass)."),
    Field("schedule", "choice", "single", "Denoise schedule", "schedule", choices=SCHEDULES,
          help="single: one run; list: one run per strength in the list; "
               "curve: from the denoising strength to the final strength, as the Loopback script."),
    Field("strengths", "floats", (), "Strength list", "strengths", minimum=MIN_STRENGTH,
          maximum=1.0, special=0.0, special_means=NO_SAMPLING,
          help="For the list schedule, e.g. 0.8, 0.7, 0.6, 0.5."),
    Field("curve_final", "float", 0.5, "Final denoising strength", "curve final",
          minimum=MIN_STRENGTH, maximum=1.0, special=0.0, special_means=NO_SAMPLING, step=0.01),
    Field("curve_passes", "int", 4, "Curve runs", "curve runs", minimum=1, maximum=MAX_LIST,
          step=1),
    Field("curve", "choice", "linear", "Denoising curve", "curve", choices=CURVES),
    Field("repeats", "int", 1, "Repeats per strength", "repeats", minimum=1, maximum=16, step=1,
          help="Run each strength this many times, feeding each output back, "
               "so the image converges."),
    Field("converge_below", "float", 0.0, "Stop repeats below change", "converge below",
          minimum=0.0, maximum=255.0, step=0.1,
          help="Stop a strength's repeats early, per image, once a run changes the image by "
               "less than this: the mean absolute difference before and after the run over "
               "the area it changed, on a 64x64 thumbnail, in 0-255 units; never more runs "
               "than the repeats; 0: off."),
    Field("upscale_by", "float", 1.0, "Upscale by", "upscale by", minimum=0.25, maximum=8.0,
          step=0.05, help="Applied once before the pass; sizes are rounded to multiples of 8. "
                          "Below 1 it downscales (with a Lanczos filter, whatever the upscaler)."),
    Field("upscaler", "str", "Lanczos", "Upscaler", "upscaler",
          help="An upscaler name as the host lists it."),
    Field("seed", "choice", "same", "Seed", "seed", choices=SEED_POLICIES,
          help="same: the image's seed; offset: the image's seed + seed offset + run index; "
               "random: a new random seed per run."),
    Field("seed_offset", "int", 1, "Seed offset", "seed offset", minimum=-(2**31), maximum=2**31,
          step=1),
    Field("region", "choice", "whole", "Region", "region", choices=REGIONS,
          help="whole: img2img over the whole image; "
               "crop: detailed inpaint of a crop around the mask; "
               "tiles: img2img tile by tile at the checkpoint's size (SD upscale, Ultimate SD "
               "Upscale), for canvases larger than the model's own."),
    Field("mask_source", "choice", "job", "Mask source", "mask", choices=MASK_SOURCES,
          help="job: the job's own inpaint mask; image: this pass's mask image; "
               "boxes: one crop per box; detect: one crop per thing a detector finds in each "
               "image. Masks and boxes are in the base image's pixels."),
    Field("detector", "str", "opencv-face", "Detector", "detector",
          help="For mask source 'detect': a detector from `multipass detectors` (OpenCV's "
               "face cascade always; YOLO models and mediapipe where installed)."),
    Field("detect_threshold", "float", 0.3, "Detection confidence", "detect threshold",
          minimum=0.0, maximum=1.0, step=0.01,
          help="Detections below this confidence are left alone."),
    Field("detect_max", "int", 0, "Most detections", "detect max", minimum=1, maximum=MAX_LIST,
          special=0, special_means="no limit", step=1,
          help="Inpaint at most this many, in the detection order."),
    Field("detect_order", "choice", "largest", "Detection order", "detect order",
          choices=DETECT_ORDERS,
          help="Which detections come first (and get the first prompts and the top-N places)."),
    Field("detect_min_area", "float", 0.0, "Smallest detection", "detect min area",
          minimum=0.0, maximum=1.0, step=0.001,
          help="A fraction of the image's area; smaller detections are left alone."),
    Field("detect_max_area", "float", 1.0, "Largest detection", "detect max area",
          minimum=0.0, maximum=1.0, step=0.001,
          help="A fraction of the image's area; larger detections are left alone."),
    Field("detect_mask", "choice", "box", "Detection mask", "detect mask", choices=DETECT_MASKS,
          help="box: the detection's box; segment: its outline, where the model gives one "
               "(else its box)."),
    Field("detect_dilate", "int", 4, "Grow mask by", "detect dilate", minimum=-128,
          maximum=128, step=1, help="Pixels; negative shrinks the mask."),
    Field("detect_merge", "bool", False, "Merge detections", "detect merge",
          help="One crop around every detection together, instead of one crop each."),
    Field("mask_image", "str", "", "Mask image", None,
          help="A PNG path relative to the recipe file, or base64 PNG data from the API; "
               "white is inpainted. Not written to infotext."),
    Field("mask_split", "bool", False, "One crop per area", "mask split",
          help="For mask sources 'job' and 'image': each separate area of the mask is its own "
               "crop (left to right), with its own prompt ([SEP]) and seed, as regions of "
               "one go; off: one crop around the whole mask."),
    Field("boxes", "boxes", (), "Boxes", "boxes"),

    Field("padding", "float", 32.0, "Padding", "padding", minimum=0.0, maximum=float(MAX_SIDE),
          step=1.0, help="Context around the mask (or an ultimate-style tile): pixels, or a "
                         "fraction of the mask's (tile's) width (left, right) and height (top, "
                         "bottom)."),
    Field("padding_unit", "choice", "px", "Padding unit", "padding unit", choices=PADDING_UNITS),
    Field("padding_sides", "sides", (), "Padding per side", "padding sides", minimum=0.0,
          maximum=float(MAX_SIDE), help="Left, top, right, bottom, in the padding unit."),
    Field("working_width", "int", 0, "Working width", "working width", minimum=64,
          maximum=4096, special=0, special_means="automatic", step=8,
          help="0: automatic: a crop at the checkpoint's native area (512^2 SD1, 768^2 SD2, "
               "1024^2 SDXL); a tile at its own size (sd-upscale) or with its padding "
               "(ultimate). Set, the crop or tile is sampled at this size."),
    Field("working_height", "int", 0, "Working height", "working height", minimum=64,
          maximum=4096, special=0, special_means="automatic", step=8),
    Field("mask_blur", "int", 4, "Mask blur", "mask blur", minimum=0, maximum=64, step=1,
          help="Pixels of blur on a crop's (or an ultimate-style tile's) mask edge."),

    Field("tile_style", "choice", "ultimate", "Tile style", "tile style", choices=TILE_STYLES,
          help="ultimate: as Ultimate SD Upscale, each tile inpainted with padding pixels of "
               "context and pasted back through its mask blurred by mask blur, with an optional "
               "seams fix; sd-upscale: as the WebUI's SD upscale script, tiles overlapping by "
               "the tile overlap and joined with a linear blend across each overlap."),
    Field("tile_width", "int", 0, "Tile width", "tile width", minimum=64, maximum=4096,
          special=0, special_means="automatic", step=8,
          help="0: automatic, the checkpoint's native side (512 SD1, 768 SD2, 1024 SDXL and "
               "Flux); a tile is never larger than the canvas."),
    Field("tile_height", "int", 0, "Tile height", "tile height", minimum=64, maximum=4096,
          special=0, special_means="automatic", step=8),
    Field("tile_overlap", "int", 64, "Tile overlap", "tile overlap", minimum=0, maximum=2048,
          step=8, help="sd-upscale: the least overlap between neighbouring tiles, in pixels "
                       "(the script's 'Tile overlap')."),
    Field("tile_order", "choice", "chess", "Tile order", "tile order", choices=TILE_ORDERS,
          help="ultimate: chess samples every other tile, then the rest (each half in batches, "
               "the second seeing the first); linear samples one tile after another, each "
               "seeing the ones before it (Ultimate SD Upscale's default), batched only across "
               "the job's images."),
    Field("tile_seed", "choice", "per-tile", "Tile seeds", "tile seed", choices=TILE_SEEDS,
          help="per-tile: tile k gets the run's seed + k (the SD upscale script's at batch size "
               "1); same: every tile the run's seed (Ultimate SD Upscale's)."),
    Field("seams_fix", "choice", "none", "Seams fix", "seams fix", choices=SEAMS_FIXES,
          help="ultimate: after the tiles, inpaint across the seams: band (a band along each "
               "seam), half-tile (tiles offset by half a tile, fading from the seam), "
               "half-tile+intersections (also the corners where four tiles meet)."),
    Field("seams_fix_strength", "float", 0.35, "Seams fix strength", "seams fix strength",
          minimum=MIN_STRENGTH, maximum=1.0, step=0.01),
    Field("seams_fix_width", "int", 64, "Seams fix width", "seams fix width", minimum=8,
          maximum=1024, step=8, help="band: the band's width in pixels."),
    Field("seams_fix_padding", "int", 16, "Seams fix padding", "seams fix padding", minimum=0,
          maximum=1024, step=1, help="Pixels of context around each seams-fix piece."),
    Field("seams_fix_blur", "int", 4, "Seams fix mask blur", "seams fix blur", minimum=0,
          maximum=64, step=1, help="half-tile: blur of each piece's mask edge (bands: none)."),
    *(f for n in range(1, CONTROLNET_UNITS + 1) for f in controlnet_fields(n)),
)

BASE_FIELDS: tuple[Field, ...] = (
    Field("prompt", "str", "", "Prompt", None),
    Field("negative_prompt", "str", "", "Negative prompt", None),
    Field("checkpoint", "str", "", "Checkpoint", None,
          help="Empty: the runner's default (the first listed)."),
    Field("vae", "str", "", "VAE", None),
    Field("sampler", "str", "Euler a", "Sampler", None),
    Field("scheduler", "str", "", "Schedule type", None),
    Field("steps", "int", 20, "Sampling steps", None, minimum=1, maximum=150, step=1),
    Field("cfg_scale", "float", 7.0, "CFG scale", None, minimum=1.0, maximum=30.0, step=0.5),
    Field("clip_skip", "int", 1, "Clip skip", None, minimum=1, maximum=12, step=1,
          help="1: CLIP's last layer; 2 skips one (SD1 checkpoints), as the WebUI's setting."),
    Field("width", "int", 512, "Width", None, minimum=64, maximum=4096, step=8,
          help="A multiple of 8."),
    Field("height", "int", 512, "Height", None, minimum=64, maximum=4096, step=8,
          help="A multiple of 8."),
    Field("seed", "int", -1, "Seed", None, minimum=-1, maximum=2**32 - 1, step=1,
          help="-1: random."),
    Field("subseed", "int", -1, "Variation seed", None, minimum=-1, maximum=2**32 - 1, step=1,
          help="-1: random. Its noise is mixed in at the variation strength, as in the WebUI; "
               "image i gets the variation seed + i and every image the seed."),
    Field("subseed_strength", "float", 0.0, "Variation strength", None, minimum=0.0,
          maximum=1.0, step=0.01, help="0: no variation seed."),
    Field("rng", "choice", "CPU", "Random number source", None, choices=RNG_SOURCES,
          help="The WebUI's setting: CPU draws the same noise on any machine; GPU on the "
               "device the model runs on (on a CPU, the CPU's numbers); NV CUDA's numbers on "
               "any machine."),
    Field("image_rules", "choice", "A1111", "Image rules", None, choices=IMAGE_RULES,
          help="Whose image a seed makes headless where the WebUIs differ: A1111 1.10 (the "
               "default), or Forge (Forge 2, reForge and Neo: a pass's VAE encode draws from "
               "the seed + 100000, and odd sizes are upsampled the way diffusers does)."),
    Field("images", "int", 1, "Images", None, minimum=1, maximum=64, step=1),
)

RECIPE_FIELDS: tuple[Field, ...] = (
    Field("version", "int", 1, "Recipe format version", None, minimum=1, maximum=1),
    Field("step_mode", "choice", "proportional", "img2img steps", "step mode", choices=STEP_MODES,
          help="proportional: the WebUI's default, a strength d at N steps runs int(d*N)+1 steps; "
               "fixed: exactly N steps, as with 'do exactly the amount of steps the slider "
               "specifies'."),
    Field("from_pass", "int", 1, "Start at pass", "from pass", minimum=1, maximum=MAX_PASSES,
          step=1,
          help="Continue a chain: the job's images (an --init image, or in the WebUI's img2img "
               "the image sent there) are the output of the pass before this one, and the "
               "passes from this one on run; earlier passes only tell the chain's story."),
    Field("stop_after", "int", 0, "Stop after pass", "stop after", minimum=1, maximum=MAX_PASSES,
          special=0, special_means="the last pass", step=1,
          help="Stop the job after this pass, to pick the best image and continue it later "
               "with 'Start at pass' (the passes after it stay in the image's infotext); "
               "0: run to the last pass."),
)

# what a job writes besides its images: headless flags and WebUI settings, one bound each
OUTPUT_FIELDS: tuple[Field, ...] = (
    Field("animation", "choice", "none", "Chain animation", None, choices=ANIMATION_FORMATS,
          help="Per image, its stages (base, each run, final) as an animated WebP or GIF, "
               "saved beside it."),
    Field("frame_ms", "int", 500, "Animation frame duration (ms)", None, minimum=20,
          maximum=10_000, step=10),
    Field("loop", "int", 0, "Animation loops", None, minimum=0, maximum=1000, step=1,
          help="0: forever; else how many times the animation repeats, as the format counts."),
    Field("change_plot", "bool", False, "Change plot", None,
          help="Per image, a small plot of how much each run changed it (0-255)."),
)
# fmt: on


def field_map(fields: tuple[Field, ...]) -> dict[str, Field]:
    """Fields by API name."""
    return {f.name: f for f in fields}
