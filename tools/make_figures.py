"""Draw the README's figures with Multipass's own geometry: `python tools/make_figures.py`."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

from lib_multipass.geometry import pad_box, resolve_padding
from lib_multipass.imaging import box_crops
from lib_multipass.recipe import Pass

ROOT = Path(__file__).resolve().parent.parent


def crop_figure(out: Path) -> None:
    """Padding in pixels against padding as a fraction, for a small and a large mask."""
    size = (768, 512)
    panels = []
    for unit, padding in (("px", 32), ("fraction", 0.25)):
        img = Image.new("RGB", size, (38, 42, 52))
        draw = ImageDraw.Draw(img)
        for x in range(0, size[0], 32):
            draw.line([(x, 0), (x, size[1])], fill=(48, 53, 65))
        for y in range(0, size[1], 32):
            draw.line([(0, y), (size[0], y)], fill=(48, 53, 65))
        p = Pass(
            region="crop",
            mask_source="boxes",
            padding=padding,
            padding_unit=unit,
            mask_blur=4,
            boxes=((90, 220, 130, 240), (330, 170, 690, 350)),
        )
        for planned in box_crops(size, size, p.boxes, p):
            pads = resolve_padding(planned.mask_box, p.padding, p.padding_unit)
            padded = pad_box(planned.blurred.getbbox(), pads, size)  # blur edge + padding
            draw.rectangle(_incl(planned.crop.box), outline=(90, 220, 120), width=3)
            draw.rectangle(_incl(padded), outline=(240, 200, 60), width=2)
            draw.rectangle(_incl(planned.mask_box), fill=(220, 70, 70))
            x1, y1, x2, y2 = planned.crop.box
            w, h = planned.crop.working
            draw.text(
                (x1 + 4, y1 - 14 if y1 >= 14 else y2 + 4),
                f"crop {x2 - x1}x{y2 - y1} -> {w}x{h}",
                fill=(230, 230, 230),
            )
        label = f"padding {padding:g} {unit}: red mask, yellow blurred mask + padding, green crop"
        draw.text((10, 10), label, fill=(255, 255, 255))
        panels.append(img)
    sheet = Image.new("RGB", (size[0] * 2 + 16, size[1]), (20, 20, 24))
    sheet.paste(panels[0], (0, 0))
    sheet.paste(panels[1], (size[0] + 16, 0))
    sheet.save(out, optimize=True)


def detect_figure(out: Path) -> None:
    """scikit-image's astronaut, OpenCV's face cascade's finds (green: inpainted, red: below
    the confidence threshold), the crop a detect pass takes around the face, and that crop at
    the working size the model sees."""
    from skimage import data

    from lib_multipass.detectors import Registry
    from lib_multipass.detectors.select import select
    from lib_multipass.imaging import cut_crop, placed_mask, plan_placed
    from lib_multipass.recipe import parse_pass

    photo = Image.fromarray(data.astronaut())
    p = parse_pass(
        {
            "region": "crop",
            "mask_source": "detect",
            "detect_dilate": 4,
            "padding": 0.3,
            "padding_unit": "fraction",
        }
    )
    found = Registry().get("opencv-face").detect(photo)
    chosen = select(
        found,
        photo.size,
        threshold=p.detect_threshold,
        max_count=0,
        order="largest",
        min_area=0.0,
        max_area=1.0,
    )
    placed = [placed_mask(d.box, photo.size, None, p.detect_dilate) for d in chosen]
    (planned,) = plan_placed(placed, photo.size, p, "sd1", merge=False)
    region, _mask = cut_crop(photo, planned)
    left = photo.copy()
    draw = ImageDraw.Draw(left)
    for d in found:
        if d not in chosen:
            draw.rectangle(_incl(d.box), outline=(230, 60, 60), width=1)
    for d in chosen:
        draw.rectangle(_incl(d.box), outline=(60, 230, 100), width=3)
        draw.text((d.box[0] + 4, d.box[1] - 14), f"face {d.score:.2f}", fill=(60, 230, 100))
    draw.rectangle(_incl(planned.crop.box), outline=(240, 200, 60), width=2)
    x1, y1, x2, y2 = planned.crop.box
    draw.text((x1 + 4, y2 + 4), f"crop {x2 - x1}x{y2 - y1}", fill=(240, 200, 60))
    shown = region.resize((512, 512 * region.height // region.width))
    sheet = Image.new("RGB", (512 + 16 + shown.width, 512 + 24), (20, 20, 24))
    sheet.paste(left, (0, 24))
    sheet.paste(shown, (528, 24))
    label = ImageDraw.Draw(sheet)
    label.text(
        (4, 6),
        "opencv-face on scikit-image's astronaut: green inpainted, red below 0.3, yellow the crop",
        fill=(255, 255, 255),
    )
    label.text(
        (532, 6),
        f"the crop at its working size, {region.width}x{region.height}",
        fill=(255, 255, 255),
    )
    sheet.save(out, optimize=True)


def two_characters_mask() -> Image.Image:
    """The mask of examples/two-characters.json: two figures painted by hand, roughly."""
    mask = Image.new("L", (768, 512), 0)
    pen = ImageDraw.Draw(mask)
    pen.ellipse((140, 70, 250, 180), fill=255)  # left head
    pen.rounded_rectangle((110, 160, 290, 500), radius=60, fill=255)
    pen.ellipse((500, 40, 620, 160), fill=255)  # right head
    pen.rounded_rectangle((460, 140, 670, 500), radius=70, fill=255)
    pen.polygon([(650, 200), (760, 120), (700, 260)], fill=255)  # a wing
    return mask


def regions_figure(out: Path, mask: Image.Image) -> None:
    """One painted mask, two areas: each its own crop, its own [SEP] prompt and seed."""
    from lib_multipass.imaging import mask_areas, plan_placed
    from lib_multipass.recipe import parse_pass

    p = parse_pass({"region": "crop", "mask_split": True, "padding": 24, "mask_blur": 8})
    crops = plan_placed(mask_areas(mask, most=64), mask.size, p, "sd1", merge=False)
    img = Image.new("RGB", mask.size, (38, 42, 52))
    tint = Image.new("RGB", mask.size, (90, 140, 220))
    img = Image.composite(tint, img, mask.point(lambda v: v // 2))
    draw = ImageDraw.Draw(img)
    prompts = ("a knight in silver armour", "a green dragon, {prompt}")
    for k, planned in enumerate(crops):
        draw.rectangle(_incl(planned.crop.box), outline=(240, 200, 60), width=2)
        x1, y1, x2, y2 = planned.crop.box
        w, h = planned.crop.working
        draw.text(
            (x1 + 6, y1 + 6),
            f"area {k + 1}: crop {x2 - x1}x{y2 - y1} -> {w}x{h}\n"
            f"prompt: {prompts[k]}\nseed: image seed + {k}",
            fill=(255, 255, 255),
        )
    img.save(out, optimize=True)


def tiles_figure(out: Path) -> None:
    """A tile pass's pieces drawn on scikit-image's astronaut upscaled to 1024^2, with
    Multipass's own layouts: SD upscale's overlapping tiles, Ultimate SD Upscale's chess
    rounds with each tile's padded crop, and the half-tile seams fix with its corners."""
    from skimage import data

    from lib_multipass.recipe import parse_pass
    from lib_multipass.regions.tiles import layout, masked_crop

    canvas = Image.fromarray(data.astronaut()).resize((1024, 1024), Image.Resampling.LANCZOS)
    common = {"region": "tiles", "tile_width": 384, "tile_height": 384}
    panels = []

    grid = layout(parse_pass({**common, "tile_style": "sd-upscale"}), canvas.size, "sd1")
    img = canvas.copy()
    shade = Image.new("L", canvas.size, 0)
    for piece in grid.pieces:  # overlaps: where two or more tiles lie
        x1, y1, x2, y2 = piece.box
        shade.paste(Image.eval(shade.crop(piece.box), lambda v: min(255, v + 60)), (x1, y1, x2, y2))
    img = Image.composite(
        Image.new("RGB", canvas.size, (250, 200, 60)),
        img,
        shade.point(lambda v: 0 if v <= 60 else 150),
    )
    draw = ImageDraw.Draw(img)
    colours = [(90, 220, 120), (90, 160, 250), (240, 110, 90)]
    for piece in grid.pieces:
        draw.rectangle(_incl(piece.box), outline=colours[piece.index % 3], width=4)
    panels.append((img, f"sd-upscale: {grid.describe()}; yellow: overlaps, blended"))

    p = parse_pass({**common, "padding": 32, "mask_blur": 8, "seams_fix": "none"})
    chess = layout(p, canvas.size, "sd1")
    img = canvas.copy()
    tint = Image.new("L", canvas.size, 0)
    for piece in chess.rounds[0]:
        tint.paste(110, piece.rect)
    img = Image.composite(Image.new("RGB", canvas.size, (60, 200, 110)), img, tint)
    draw = ImageDraw.Draw(img)
    for piece in chess.pieces:
        draw.rectangle(_incl(piece.rect), outline=(255, 255, 255), width=2)
        draw.text((piece.rect[0] + 8, piece.rect[1] + 8), f"{piece.index + 1}", fill="white")
    middle = next(t for t in chess.pieces if t.rect[0] > 0 and t.rect[1] > 0)
    draw.rectangle(_incl(middle.box), outline=(250, 200, 60), width=4)
    panels.append((img, "ultimate, chess: green first, then the rest; yellow: a tile's crop"))

    p = parse_pass({**common, "seams_fix": "half-tile+intersections", "seams_fix_blur": 8})
    seams = layout(p, canvas.size, "sd1")
    img = canvas.copy()
    for piece in seams.seam_pieces:
        colour = (240, 70, 200) if piece.kind == "corner" else (240, 80, 60)
        mask = masked_crop(piece, canvas.size).blurred.point(lambda v: v * v // 400)
        img = Image.composite(Image.new("RGB", canvas.size, colour), img, mask)
    draw = ImageDraw.Draw(img)
    for piece in seams.pieces:
        if not piece.seams:
            draw.rectangle(_incl(piece.rect), outline=(255, 255, 255), width=2)
    panels.append((img, "seams fix half-tile+intersections: red seams, pink corners"))

    side = 512
    sheet = Image.new("RGB", (3 * side + 32, side + 28), (20, 20, 24))
    label = ImageDraw.Draw(sheet)
    for k, (img, text) in enumerate(panels):
        sheet.paste(img.resize((side, side), Image.Resampling.LANCZOS), (k * (side + 16), 28))
        label.text((k * (side + 16) + 4, 8), text, fill=(255, 255, 255))
    sheet.save(out, optimize=True)


def _incl(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:

    return box[0], box[1], box[2] - 1, box[3] - 1


if __name__ == "__main__":
    target = ROOT / "docs"
    target.mkdir(exist_ok=True)
    crop_figure(target / "crop-padding.png")
    detect_figure(target / "detect-astronaut.png")
    mask = two_characters_mask()
    mask.save(ROOT / "examples" / "two-characters-mask.png", optimize=True)
    regions_figure(target / "regions.png", mask)
    tiles_figure(target / "tiles.png")
    print(f"wrote the figures in {target} and the example mask", file=sys.stderr)
