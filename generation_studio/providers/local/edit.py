"""The local engine's image operations: classic image processing, not AI.

- ``blend_with_rendering``: img-to-img, the input mixed with a prompt-seeded
  rendering by ``strength``.
- ``apply_edits``: the edit words of the prompt, in the order they appear.
- ``compose``: several images side by side on one canvas.
- ``pose_transfer``: the subject cut out softly and placed over the pose
  reference's foreground, at its position and height.
- ``style_transfer``: the style image's colour statistics (mean and spread
  per channel, in YCbCr) moved onto the content image.
"""

import re

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageOps, ImageStat

from . import render

MAX_SIDE = 1024  # results of the image operations fit in this many pixels a side

EDITS = {
    "grayscale": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "sepia": lambda im: ImageOps.colorize(ImageOps.grayscale(im), (40, 26, 13), (255, 240, 192)),
    "blur": lambda im: im.filter(ImageFilter.GaussianBlur(max(im.size) / 200)),
    "sharpen": lambda im: im.filter(ImageFilter.UnsharpMask(2, 150, 2)),
    "invert": ImageOps.invert,
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.35),
    "darker": lambda im: ImageEnhance.Brightness(im).enhance(0.65),
    "contrast": lambda im: ImageEnhance.Contrast(im).enhance(1.5),
    "vivid": lambda im: ImageEnhance.Color(im).enhance(1.7),
    "mirror": ImageOps.mirror,
    "flip": ImageOps.flip,
    "rotate": lambda im: im.rotate(-90, expand=True),
}
# Words of a prompt that name each edit.
EDIT_WORDS = {
    "grayscale": "grayscale greyscale gray grey monochrome", "sepia": "sepia vintage",
    "blur": "blur blurry blurred soften", "sharpen": "sharpen sharp sharper crisp",
    "invert": "invert inverted negative", "brighter": "brighter brighten lighter",
    "darker": "darker darken dim", "contrast": "contrast", "vivid": "vivid saturate saturated",
    "mirror": "mirror mirrored", "flip": "flip upside", "rotate": "rotate rotated turn",
}
WORD_TO_EDIT = {word: edit for edit, words in EDIT_WORDS.items() for word in words.split()}


def fit(image: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """``image`` scaled down (never up) to fit ``max_side``."""
    image = image.copy()
    image.thumbnail((max_side, max_side))
    return image


def edits_in(prompt: str) -> list[str]:
    """The edits the prompt names, in order, each once."""
    found = [WORD_TO_EDIT[w] for w in re.findall(r"[a-z]+", prompt.lower()) if w in WORD_TO_EDIT]
    return list(dict.fromkeys(found))


def apply_edits(image: Image.Image, prompt: str) -> tuple[Image.Image, list[str]]:
    """Apply the prompt's edits; with none named, an automatic contrast."""
    edits = edits_in(prompt) or ["autocontrast"]
    for name in edits:
        image = ImageOps.autocontrast(image) if name == "autocontrast" else EDITS[name](image)
    return image.convert("RGB"), edits


def compose(images: list[Image.Image], height: int = 512, gap: int = 8) -> Image.Image:
    """The images side by side at one height, on a neutral canvas."""
    scaled = [im.resize((max(1, round(im.width * height / im.height)), height)) for im in images]
    canvas = Image.new("RGB", (sum(im.width for im in scaled) + gap * (len(scaled) + 1),
                               height + 2 * gap), (24, 24, 28))
    x = gap
    for im in scaled:
        canvas.paste(im, (x, gap))
        x += im.width + gap
    return fit(canvas)


def blend_with_rendering(image: Image.Image, prompt: str, seed: int, strength: float):
    image = fit(image)
    return Image.blend(image, render.render(prompt, seed, image.size), strength)


def foreground_box(image: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box of what differs from the image's corner colour."""
    w, h = image.size
    corners = [image.getpixel(p) for p in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1))]
    background = tuple(sum(c[i] for c in corners) // 4 for i in range(3))
    diff = ImageChops.difference(image, Image.new("RGB", image.size, background)).convert("L")
    box = diff.point(lambda v: 255 if v > 40 else 0).getbbox()
    return box or (w // 4, h // 8, 3 * w // 4, h)


def pose_transfer(subject: Image.Image, pose: Image.Image) -> Image.Image:
    pose = fit(pose)
    left, top, right, bottom = foreground_box(pose)
    scene = ImageEnhance.Color(pose).enhance(0.3)
    box_h = max(8, bottom - top)
    cut = subject.resize((max(1, round(subject.width * box_h / subject.height)), box_h))
    mask = Image.new("L", cut.size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, cut.width - 1, cut.height - 1), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(max(1, cut.width // 20)))
    centre = (left + right) // 2
    scene.paste(cut, (centre - cut.width // 2, top), mask)
    return scene


def style_transfer(content: Image.Image, style: Image.Image, strength: float = 1.0):
    content = fit(content)
    source, target = content.convert("YCbCr"), style.convert("YCbCr")
    s_stat, t_stat = ImageStat.Stat(source), ImageStat.Stat(target)
    bands = []
    for band, mean_s, std_s, mean_t, std_t in zip(source.split(), s_stat.mean, s_stat.stddev,
                                                  t_stat.mean, t_stat.stddev):
        scale = std_t / std_s if std_s > 1e-3 else 1.0
        bands.append(band.point(lambda v, a=scale, m=mean_s, t=mean_t: (v - m) * a + t))
    styled = Image.merge("YCbCr", bands).convert("RGB")
    return Image.blend(content, styled, strength)
