"""Gallery thumbnails and page previews, made once with Pillow and kept as
small WebP files in the storage folder's ``.thumbs``.

- ``thumbnail``: an operation's picture in the gallery (``<id>.webp``), from its
  result or else its first input; a video's (or an animated image's) is its
  poster frame, about a third of the way in (``videos.poster``).
- ``preview``: one stored file downscaled to a fixed width
  (``<file>.<width>.webp``), so that a page shows a few hundred kilobytes
  instead of a 4-megapixel original; a video file gives its poster frame.

Nothing is ever upscaled; a file that cannot be read gives no picture.
"""

import io
from pathlib import Path

import av
from PIL import Image

from . import videos
from .media import open_checked
from .storage.atomic import write_atomic
from .storage.layout import THUMBS

SIZE = 320
PREVIEW_WIDTHS = (480, 1280)
PREVIEW_HEIGHT = 2  # times the width: a very tall image is bounded too


def path_for(history, op_id: str) -> Path:
    return history.root / THUMBS / f"{op_id}.webp"


def preview_path(root: Path, file_name: str, width: int) -> Path:
    return root / THUMBS / f"{file_name}.{width}.webp"


def has_picture(record: dict) -> bool:
    """Whether a thumbnail can be made: an output or input that is an image or a video."""
    return any(_shown(e["contentType"])
               for e in (record.get("outputs") or []) + (record.get("inputImages") or []))


def thumbnail(history, record: dict):
    """The thumbnail's path, made if needed (its bytes when it cannot be
    kept); None when there is no picture."""
    path = path_for(history, record["operationId"])
    if _cached(path):
        return path
    for entry in (record.get("outputs") or []) + (record.get("inputImages") or []):
        if not _shown(entry["contentType"]):
            continue
        found = history.open_file(record["operationId"], entry["file"])
        small = _picture(found[0], entry["contentType"], (SIZE, SIZE)) if found else None
        if small is not None:
            return _save(path, small)
    return None


def preview(history, op_id: str, file_name: str, width: int | None = None):
    """The path of ``file_name`` (one of ``op_id``'s files) at the preview width
    nearest above ``width`` (the largest when None), made if needed (its bytes
    when it cannot be kept); None when the record has no such file or it is
    not a picture."""
    found = history.open_file(op_id, file_name)
    if found is None or not _shown(found[1]["contentType"]):
        return None
    width = min((w for w in PREVIEW_WIDTHS if width is not None and w >= width),
                default=PREVIEW_WIDTHS[-1])
    path = preview_path(history.root, file_name, width)
    if _cached(path):
        return path
    small = _picture(found[0], found[1]["contentType"], (width, width * PREVIEW_HEIGHT))
    return None if small is None else _save(path, small)


def remove(root: Path, op_id: str, file_names) -> None:
    """Delete the thumbnail and previews of ``op_id`` (its files named ``file_names``)."""
    (root / THUMBS / f"{op_id}.webp").unlink(missing_ok=True)
    for name in file_names:
        for width in PREVIEW_WIDTHS:
            preview_path(root, name, width).unlink(missing_ok=True)


def _shown(content_type: str) -> bool:
    return content_type.startswith(("image/", "video/"))


def _cached(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _picture(data, content_type: str, box) -> Image.Image | None:
    """The image, or the poster frame of a video or an animated image, shrunk to
    fit ``box``."""
    try:
        picture = None if content_type.startswith("video/") else open_checked(data)
        if picture is None or getattr(picture, "n_frames", 1) > 1:
            picture = videos.poster(data)
        picture.thumbnail(box)  # before converting: a JPEG then decodes at a reduced size
        return picture.convert("RGBA" if _has_alpha(picture) else "RGB")
    except (OSError, ValueError, EOFError, av.FFmpegError, Image.DecompressionBombError):
        return None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _save(path: Path, image: Image.Image) -> Path | bytes | None:
    """``path`` with ``image`` cached in it; its bytes alone when the storage
    cannot be written (read-only, full, refused): shown, not kept."""
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=80)
    if path.parent.is_symlink():  # never write outside the storage folder
        return None
    try:
        path.parent.mkdir(exist_ok=True)
        write_atomic(path, buffer.getvalue())
    except OSError:
        return buffer.getvalue()
    return path
