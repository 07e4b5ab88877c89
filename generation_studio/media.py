"""What a file is, told from its bytes: extension, MIME type, size in pixels.

The store names files by their real content, never by what a client or a
provider claims, so a PNG sent as ``photo.jpg`` is kept as ``_in_0.png``.
"""

import base64
import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

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


def open_image(data: bytes | Path) -> Image.Image:
    """Open ``data`` (bytes or a file) lazily, header only. Pillow's own bomb
    warning is muted: callers compare the size with their own limit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(data if isinstance(data, Path) else io.BytesIO(data))


def decode_rgb(data: bytes) -> Image.Image:
    """An image already checked (an input stored at acceptance), upright, as RGB."""
    with Image.open(io.BytesIO(data)) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


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
