"""Stored files as HTTP answers that are never active content.

A file is served with its recorded type only when that type is on the
allow-list (pictures, videos, JSON, CSV), else as ``application/octet-stream``;
anything but a picture or a video is a download (``Content-Disposition:
attachment``), and ``nosniff`` (on every answer, see ``web``) stops a browser
from guessing better. Files are opened without following a symbolic link,
at any level below the storage folder, so a link planted there never serves
what it points at.
"""

import io
import os
import stat
from pathlib import Path

from flask import request, send_file
from werkzeug.utils import secure_filename

SERVED_TYPES = frozenset({
    "image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff",
    "video/mp4", "video/webm", "video/quicktime", "application/json", "text/csv"})
UNKNOWN_TYPE = "application/octet-stream"


def served_type(content_type) -> str:
    """The type a stored file is served as: its own if allowed, else octet-stream."""
    kind = str(content_type or "").split(";")[0].strip().lower()
    return kind if kind in SERVED_TYPES else UNKNOWN_TYPE


def open_inside(root: Path, path: Path):
    """``path`` (below ``root``) open for reading; None when it is missing,
    not a regular file, or it or a folder between it and ``root`` is a
    symbolic link (each step is opened relative to the last, never following one)."""
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        return None
    if not parts or ".." in parts:
        return None
    folder = None
    try:
        folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder)
            os.close(folder)
            folder = inner
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
    except OSError:
        return None
    finally:
        if folder is not None:
            os.close(folder)
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        return None
    return f


def send_stored(source, content_type, name: str, max_age: int, etag: str | None = None):
    """The answer for a stored file: ``source`` bytes or an open binary file."""
    mimetype = served_type(content_type)
    inline = mimetype.startswith(("image/", "video/"))
    if isinstance(source, bytes):
        size, modified, source = len(source), None, io.BytesIO(source)
    else:
        info = os.fstat(source.fileno())
        size, modified = info.st_size, info.st_mtime
    response = send_file(source, mimetype=mimetype, as_attachment=not inline,
                         download_name=secure_filename(name) or "file", max_age=max_age,
                         last_modified=modified, conditional=False, etag=False)
    response.content_length = size
    if etag:
        response.set_etag(etag)
    # Ranges (a video's seeking) and 304s, as send_file gives for a path.
    return response.make_conditional(request, accept_ranges=True, complete_length=size)
