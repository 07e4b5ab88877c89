"""Atomic files: written to a temp name in the same folder, flushed, fsynced,
then ``os.replace``d, so a reader sees the whole file or none of it."""

import os
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"  # temp files end so; start-up removes stale ones
FILE_MODE = 0o644  # mkstemp makes 0600; records are meant to be read with cat


def temp_path(folder: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    return Path(tmp)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or none."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def move_atomic(source: Path, path: Path) -> None:
    """Move a finished file of the same folder onto ``path``, fsynced first."""
    fd = os.open(source, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(source, FILE_MODE)
    os.replace(source, path)
