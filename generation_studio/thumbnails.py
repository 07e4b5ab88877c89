"""Gallery thumbnails: made once with Pillow from an operation's result (or
first input), kept small as WebP in the storage folder's ``.thumbs``."""

import io

from PIL import Image

from .media import open_image
from .storage.atomic import write_atomic
from .storage.layout import THUMBS

SIZE = 320


def path_for(history, op_id: str):
    return history.root / THUMBS / f"{op_id}.webp"


def has_picture(record: dict) -> bool:
    """Whether a thumbnail can be made: an output or input that is an image."""
    return any(e["contentType"].startswith("image/")
               for e in (record.get("outputs") or []) + (record.get("inputImages") or []))


def thumbnail(history, record: dict):
    """The thumbnail's path, made if needed; None when there is no picture."""
    path = path_for(history, record["operationId"])
    if path.is_file() and not path.is_symlink():
        return path
    for entry in (record.get("outputs") or []) + (record.get("inputImages") or []):
        found = history.open_file(record["operationId"], entry["file"])
        if found is None or not entry["contentType"].startswith("image/"):
            continue
        try:
            with open_image(found[0]) as image:
                image.seek(0)
                small = image.convert("RGB")
                small.thumbnail((SIZE, SIZE))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        buffer = io.BytesIO()
        small.save(buffer, "WEBP", quality=80)
        path.parent.mkdir(exist_ok=True)
        write_atomic(path, buffer.getvalue())
        return path
    return None
