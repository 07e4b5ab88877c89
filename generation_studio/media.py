"""What a file is, told from its bytes: extension, MIME type, size in pixels;
and the one gate every image the studio opens goes through.

The store names files by their real content, never by what a client or a
provider claims, so a PNG sent as ``photo.jpg`` is kept as ``_in_0.png``.

``open_checked`` is that gate: uploads, stored images taken by reference,
provider results and thumbnails are all opened by it. It reads the header
only and refuses, before a pixel is decoded, a file over ``MAX_IMAGE_BYTES``,
more pixels than ``MAX_IMAGE_PIXELS``, a shape longer than ``MAX_IMAGE_ASPECT``
to one, or more frames than ``MAX_IMAGE_FRAMES``; the image it returns is
decoded only when its caller needs the pixels.
"""

import base64
import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from flask import current_app, has_app_context
from PIL import Image, ImageOps, UnidentifiedImageError

# (magic test, extension, MIME type), first match wins.
_SIGNATURES = [
    (lambda b: b[:3] == b"\xff\xd8\xff", "jpg", "image/jpeg"),
    (lambda b: b[:8] == b"\x89PNG\r\n\x1a\n", "png", "image/png"),
    (lambda b: b[:6] in (b"GIF87a", b"GIF89a"), "gif", "image/gif"),
    (lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP", "webp", "image/webp"),
    (lambda b: b[4:8] == b"ftyp" and b[8:10] == b"qt", "mov", "video/quicktime"),
    (lambda b: b[4:8] == b"ftyp", "mp4", "video/mp4"),
    (lambda b: b[:4] == b"\x1aE\xdf\xa3", "webm", "video/webm"),
    (lambda b: b[:2] == b"BM", "bmp", "image/bmp"),
    (lambda b: b[:4] in (b"II*\x00", b"MM\x00*"), "tiff", "image/tiff"),
    (lambda b: b.lstrip()[:5].lower() in (b"<!doc", b"<html"), "html", "text/html"),
]

UNKNOWN = ("bin", "application/octet-stream")


def sniff(head: bytes) -> tuple[str, str]:
    """Return (extension, MIME type) for content starting with ``head``."""
    for test, ext, mime in _SIGNATURES:
        if test(head):
            return ext, mime
    return UNKNOWN


# The gate's settings and their defaults (a config may lack them).
GATE_DEFAULTS = {"MAX_IMAGE_BYTES": 50 * 1024 * 1024, "MAX_IMAGE_PIXELS": 40_000_000,
                 "MAX_IMAGE_ASPECT": 50, "MAX_IMAGE_FRAMES": 1000}
READABLE = "PNG, JPEG, WebP, GIF, BMP or TIFF"


class ImageRefused(ValueError):
    """An image the gate will not open. ``reason`` names the limit and its
    setting, to follow the image's name: "is 10x10 = 100 pixels; the limit..."."""

    def __init__(self, reason: str):
        super().__init__(f"The image {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int
    max_aspect: float
    max_frames: int


def limits(config=None) -> Limits:
    """The gate's limits from ``config`` (by default the current app's)."""
    if config is None:
        config = current_app.config if has_app_context() else {}
    value = {k: config.get(k) or default for k, default in GATE_DEFAULTS.items()}
    return Limits(value["MAX_IMAGE_BYTES"], value["MAX_IMAGE_PIXELS"],
                  value["MAX_IMAGE_ASPECT"], value["MAX_IMAGE_FRAMES"])


def open_checked(data: bytes | Path, within: Limits | None = None) -> Image.Image:
    """The image in ``data``, its header read and checked, its pixels not yet
    decoded; ``ImageRefused`` saying which limit it breaks."""
    within = within or limits()
    size = data.stat().st_size if isinstance(data, Path) else len(data)
    if size > within.max_bytes:
        raise ImageRefused(f"is {size:,} bytes; the limit is {within.max_bytes:,} bytes "
                           "(MAX_IMAGE_BYTES)")
    try:
        image = open_image(data)
    except Image.DecompressionBombError:
        raise ImageRefused(f"has more pixels than the limit of {within.max_pixels:,} "
                           "(MAX_IMAGE_PIXELS)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageRefused(f"is not an image that can be read ({READABLE})") from None
    try:
        _check_header(image, within)
    except BaseException:
        image.close()
        raise
    return image


def _check_header(image: Image.Image, within: Limits) -> None:
    width, height = image.size
    if width * height > within.max_pixels:
        raise ImageRefused(f"is {width}x{height} = {width * height:,} pixels; the limit is "
                           f"{within.max_pixels:,} pixels (MAX_IMAGE_PIXELS)")
    if min(width, height) < 1 or max(width, height) / min(width, height) > within.max_aspect:
        raise ImageRefused(f"is {width}x{height}, longer than {within.max_aspect:g} to 1 "
                           "(MAX_IMAGE_ASPECT)")
    try:
        frames = getattr(image, "n_frames", 1)  # read from the frames' headers, not decoded
    except (OSError, ValueError, SyntaxError, EOFError):
        raise ImageRefused(f"is not an image that can be read ({READABLE})") from None
    if frames > within.max_frames:
        raise ImageRefused(f"has {frames:,} frames; the limit is {within.max_frames:,} "
                           "(MAX_IMAGE_FRAMES)")


def decode_checked(data: bytes | Path, within: Limits | None = None) -> Image.Image:
    """The first frame of an image that passes the gate, decoded, upright, as RGB;
    ``ImageRefused`` for one that does not, or whose pixels cannot be read."""
    image = open_checked(data, within)
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # no copy of the pixels
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        image.close()
        raise ImageRefused(f"is not an image that can be read ({READABLE})") from None
    if image.mode == "RGB":
        return image
    with image:
        return image.convert("RGB")


def verify(data: bytes | Path, within: Limits | None = None) -> None:
    """``ImageRefused`` unless ``data`` passes the gate and its structure is whole
    (Pillow's ``verify`` reads the file's chunks without decoding the pixels)."""
    with open_checked(data, within) as image:
        try:
            image.verify()
        except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error):
            raise ImageRefused(f"is not an image that can be read ({READABLE})") from None


def open_image(data: bytes | Path) -> Image.Image:
    """Open ``data`` (bytes or a file) lazily, header only, and unchecked: the
    gate (``open_checked``) is the way in. Pillow's own bomb warning is muted:
    the gate compares the size with the studio's limit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(data if isinstance(data, Path) else io.BytesIO(data))


def decode_rgb(data: bytes) -> Image.Image:
    """An input stored at acceptance, through the gate again (the limits may have
    changed, or the file been put there by hand), upright, as RGB."""
    return decode_checked(data)


def load(data: bytes | Path) -> bytes:
    """The bytes of an output, which providers give as bytes or as a file."""
    return data.read_bytes() if isinstance(data, Path) else data


def data_url(data: bytes) -> str:
    """``data`` as a ``data:<type>;base64,...`` URL, its type sniffed."""
    _, mime = sniff(data[:16])
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def head(data: bytes | Path, size: int = 16) -> bytes:
    if isinstance(data, Path):
        with data.open("rb") as f:
            return f.read(size)
    return data[:size]


@dataclass
class FileInfo:
    """What the record says of one stored file."""

    ext: str
    content_type: str
    size: int
    sha256: str
    width: int | None = None
    height: int | None = None
    frames: int | None = None


def describe(data: bytes | Path) -> FileInfo:
    """Describe ``data`` (bytes or a file, read in chunks): type from its magic
    bytes, pixel size and frames from Pillow."""
    ext, mime = sniff(head(data))
    if isinstance(data, Path):
        digest, size = hashlib.sha256(), 0
        with data.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        info = FileInfo(ext, mime, size, digest.hexdigest())
    else:
        info = FileInfo(ext, mime, len(data), hashlib.sha256(data).hexdigest())
    still = _still_size(data, ext) if isinstance(data, bytes) else None
    if still:
        info.width, info.height = still
    elif mime.startswith("image/"):
        try:
            with open_image(data) as image:
                info.width, info.height = image.size
                frames = getattr(image, "n_frames", 1)
                info.frames = frames if frames > 1 else None
        except (OSError, ValueError, Image.DecompressionBombError):
            pass  # kept as bytes; the record just has no size
    elif mime.startswith("video/"):
        from .videos import info as video_info  # PyAV, imported only for videos
        try:
            found = video_info(data)
            info.width, info.height, info.frames = found["width"], found["height"], found["frames"]
        except ValueError:
            pass  # kept as bytes; the record just has no size
    return info


def _still_size(data: bytes, ext: str):
    """(width, height) of a PNG or a JPEG read from its header, without
    Pillow (the record step's most frequent case); None to ask Pillow.
    An animated PNG (acTL before the image data) goes to Pillow for its frames."""
    if ext == "png" and data[12:16] == b"IHDR" and b"acTL" not in data[:data.find(b"IDAT")]:
        return struct.unpack(">II", data[16:24])
    if ext == "jpg":
        at = 2
        while at + 9 < len(data) and data[at] == 0xFF:
            marker = data[at + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                at += 1 if marker == 0xFF else 2
                continue
            length = struct.unpack(">H", data[at + 2:at + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
                height, width = struct.unpack(">HH", data[at + 5:at + 9])
                return (width, height) if width and height else None
            at += 2 + length
    return None
