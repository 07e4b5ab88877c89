"""The local engine's procedural renderer: a prompt and a seed become a picture.

This is not AI. Words of the prompt choose a palette (colour and mood words)
and scene elements (sky, sun or moon, mountains, water, forest, city, stars);
a prompt with none of them gets an abstract composition. Everything else comes
from a random generator seeded by the prompt and the seed, so the same prompt,
seed and size always give the same picture. Drawing uses Pillow's C routines
only (gradients, polygons, blur), so a megapixel takes tens of milliseconds.
"""

import colorsys
import hashlib
import random
import re

from PIL import Image, ImageDraw, ImageFilter

# Output size per aspect ratio, each about one megapixel.
ASPECT_SIZES = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "9:16": (768, 1344),
    "4:3": (1152, 864),
    "3:4": (864, 1152),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "21:9": (1536, 640),
}

COLOUR_WORDS = {
    "red": (200, 40, 50), "orange": (240, 130, 40), "yellow": (245, 210, 60),
    "green": (60, 150, 70), "blue": (40, 90, 200), "purple": (120, 60, 170),
    "violet": (140, 80, 200), "pink": (240, 140, 180), "brown": (120, 80, 50),
    "black": (15, 15, 20), "white": (240, 240, 235), "grey": (128, 128, 128),
    "gray": (128, 128, 128), "gold": (212, 175, 55), "silver": (190, 195, 200),
    "teal": (30, 140, 140), "cyan": (60, 200, 220), "turquoise": (60, 210, 190),
}
MOOD_PALETTES = {
    "sunset": [(255, 120, 60), (120, 50, 120), (250, 190, 90)],
    "sunrise": [(255, 170, 110), (120, 150, 210), (255, 220, 150)],
    "night": [(10, 15, 45), (40, 50, 100), (230, 230, 200)],
    "ocean": [(20, 90, 160), (120, 190, 230), (10, 50, 100)],
    "forest": [(30, 90, 50), (150, 200, 140), (20, 50, 30)],
    "desert": [(230, 190, 130), (250, 220, 170), (180, 120, 70)],
    "snow": [(230, 240, 250), (170, 200, 230), (255, 255, 255)],
    "fire": [(255, 80, 20), (255, 180, 40), (90, 10, 10)],
    "cyberpunk": [(255, 40, 160), (40, 220, 255), (20, 10, 40)],
}
SCENE_WORDS = {
    "sun": ("sun", "sunset", "sunrise", "sunny"),
    "moon": ("moon", "moonlight", "night"),
    "stars": ("star", "stars", "starry", "night", "space", "galaxy"),
    "mountains": ("mountain", "mountains", "hill", "hills", "peak", "peaks", "alps"),
    "water": ("sea", "ocean", "lake", "water", "river", "beach", "waves"),
    "forest": ("forest", "tree", "trees", "woods", "pine", "jungle"),
    "city": ("city", "cities", "building", "buildings", "skyline", "town", "street"),
}


def words_of(prompt: str) -> set[str]:
    return set(re.findall(r"[a-z]+", prompt.lower()))


def seeded_random(prompt: str, seed: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def palette(words: set[str], rng: random.Random) -> list[tuple]:
    colours = [c for w, p in MOOD_PALETTES.items() if w in words for c in p]
    colours += [c for w, c in COLOUR_WORDS.items() if w in words]
    while len(colours) < 4:
        h, light, sat = rng.random(), rng.uniform(0.35, 0.7), rng.uniform(0.4, 0.9)
        colours.append(tuple(int(255 * v) for v in colorsys.hls_to_rgb(h, light, sat)))
    return colours


def shade(colour, factor: float) -> tuple:
    return tuple(max(0, min(255, int(c * factor))) for c in colour)


def vertical_gradient(size, top, bottom) -> Image.Image:
    mask = Image.linear_gradient("L").resize(size)
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)


def ridge(rng, width, base_y, roughness, steps=24) -> list[tuple]:
    points, y = [], base_y
    for i in range(steps + 1):
        y += rng.uniform(-roughness, roughness)
        points.append((width * i / steps, y))
    return points


def render(prompt: str, seed: int, size: tuple[int, int]) -> Image.Image:
    """Render ``prompt`` at ``size``; deterministic for (prompt, seed, size)."""
    rng = seeded_random(prompt, seed)
    words = words_of(prompt)
    colours = palette(words, rng)
    width, height = size
    scene = {name for name, keys in SCENE_WORDS.items() if words & set(keys)}
    image = vertical_gradient(size, colours[0], colours[1])
    draw = ImageDraw.Draw(image)
    horizon = int(height * rng.uniform(0.55, 0.7))

    if "stars" in scene:
        for _ in range(int(width * height / 4000)):
            x, y, r = rng.uniform(0, width), rng.uniform(0, horizon), rng.choice((1, 1, 2))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(250, 250, 235))
    if scene & {"sun", "moon"}:
        _glowing_disc(image, rng, horizon, colours[2], "moon" in scene and "sun" not in scene)
        draw = ImageDraw.Draw(image)
    if "mountains" in scene:
        for layer in range(3):
            points = ridge(rng, width, horizon - height * (0.25 - 0.08 * layer), height * 0.05)
            draw.polygon(points + [(width, height), (0, height)],
                         fill=shade(colours[3], 0.9 - 0.2 * layer))
    if "water" in scene:
        draw.rectangle((0, horizon, width, height), fill=shade(colours[0], 0.7))
        for _ in range(60):
            y = rng.uniform(horizon, height)
            x = rng.uniform(0, width)
            draw.line((x, y, x + rng.uniform(20, width / 6), y), fill=shade(colours[2], 0.9), width=2)
    if "forest" in scene:
        for _ in range(40):
            x, base = rng.uniform(0, width), rng.uniform(horizon, height)
            tall = rng.uniform(0.1, 0.25) * height
            draw.polygon([(x, base - tall), (x - tall / 4, base), (x + tall / 4, base)],
                         fill=shade(colours[3], rng.uniform(0.3, 0.6)))
    if "city" in scene:
        _skyline(draw, rng, width, height, horizon, colours)
    if not scene:
        _abstract(image, rng, colours)

    return Image.blend(image, grain(rng, size), 0.06)


def grain(rng, size) -> Image.Image:
    """Film grain from the seeded generator (Pillow's effect_noise is not seedable)."""
    small = (max(1, size[0] // 4), max(1, size[1] // 4))
    noise = Image.frombytes("L", small, rng.randbytes(small[0] * small[1])).resize(size)
    return Image.merge("RGB", [noise] * 3)


def _glowing_disc(image, rng, horizon, colour, pale):
    width, height = image.size
    radius = int(min(width, height) * rng.uniform(0.07, 0.12))
    cx, cy = int(rng.uniform(0.2, 0.8) * width), int(horizon - rng.uniform(0.15, 0.4) * height)
    disc = (235, 235, 220) if pale else colour
    small = Image.new("L", (width // 8, height // 8), 0)
    ImageDraw.Draw(small).ellipse(((cx - 2 * radius) / 8, (cy - 2 * radius) / 8,
                                   (cx + 2 * radius) / 8, (cy + 2 * radius) / 8), fill=140)
    glow = small.filter(ImageFilter.GaussianBlur(radius / 10)).resize(image.size)
    image.paste(Image.new("RGB", image.size, disc), (0, 0), glow)
    ImageDraw.Draw(image).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=disc)


def _skyline(draw, rng, width, height, horizon, colours):
    x = 0
    while x < width:
        w = rng.uniform(0.04, 0.1) * width
        top = horizon - rng.uniform(0.1, 0.4) * height
        body = shade(colours[3], rng.uniform(0.25, 0.45))
        draw.rectangle((x, top, x + w, height), fill=body)
        for wy in range(int(top) + 10, height - 10, 18):
            for wx in range(int(x) + 6, int(x + w) - 8, 14):
                if rng.random() < 0.35:
                    draw.rectangle((wx, wy, wx + 5, wy + 8), fill=(250, 220, 140))
        x += w + rng.uniform(0, 0.01) * width


def _abstract(image, rng, colours):
    width, height = image.size
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.randint(6, 12)):
        colour = rng.choice(colours) + (rng.randint(90, 190),)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.05, 0.3) * min(width, height)
        if rng.random() < 0.5:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        else:
            draw.polygon([(cx + rng.uniform(-r, r), cy + rng.uniform(-r, r)) for _ in range(3)],
                         fill=colour)
    image.paste(layer, (0, 0), layer)
