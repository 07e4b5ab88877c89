"""Atomic files: the one way the studio writes a file.

A file is written to a temporary name in its own folder, flushed, fsynced,
``os.replace``d onto its name, and the folder is fsynced so that the rename
itself survives a power cut. A reader sees the whole file or none of it, and
a writer that dies leaves only a ``*.tmp`` file that recovery removes.
"""

import contextlib
import os
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"  # temp files end so; recovery removes those of dead writers


def temp_prefix(name: str) -> str:
    """Temp names carry the writer's process id, so recovery can tell when
    their writer is dead (``history.recovery``)."""
    return f".{name}.pid{os.getpid()}-"
FILE_MODE = 0o644  # mkstemp makes 0600; records are meant to be read with cat


def fsync_dir(folder: Path) -> None:
    """Make the renames done in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path, mode: str = "wb", sync_dir: bool = True, **open_args):
    """``with atomic_file(path) as f: f.write(...)``: ``path`` appears whole
    when the block ends, or not at all when it raises."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def write_atomic(path, data: bytes, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or none."""
    with atomic_file(path, sync_dir=sync_dir) as f:
        f.write(data)


def move_atomic(source: Path, path: Path, sync_dir: bool = True) -> None:
    """Move a finished file of the same folder onto ``path``, fsynced first."""
    fd = os.open(source, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(source, FILE_MODE)
    os.replace(source, path)
    if sync_dir:
        fsync_dir(Path(path).parent)
