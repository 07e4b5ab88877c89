"""Atomic files: the one way the studio writes a file.

A file is written to a temporary name in its own folder, flushed, fsynced,
``os.replace``d onto its name, and the folder is fsynced so that the rename
itself survives a power cut. A reader sees the whole file or none of it, and
a writer that dies leaves only a ``*.tmp`` file that recovery removes.
"""

import contextlib
import errno
import os
import secrets
from pathlib import Path

TMP_SUFFIX = ".tmp"  # temp files end so; recovery removes those of dead writers
FILE_MODE = 0o644  # records are meant to be read with cat


def temp_prefix(name: str) -> str:
    """Temp names carry the writer's process id, so recovery can tell when
    their writer is dead (``history.recovery``)."""
    return f".{name}.pid{os.getpid()}-"


def fsync_dir(folder: Path) -> None:
    """Make the renames done in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new temp file beside ``path``, made for this writer alone: ``(fd, its path)``.
    (What ``tempfile.mkstemp`` does, without its generality, which cost about
    0.05 ms a file on the record step's path: see the README.)"""
    for _ in range(100):
        tmp = path.with_name(f"{temp_prefix(path.name)}{secrets.token_hex(4)}{TMP_SUFFIX}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         FILE_MODE)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask: records are read with cat
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "No free temporary name", str(path))


@contextlib.contextmanager
def _replacing(path: Path, fd: int, tmp: Path, sync_dir: bool):
    """Runs the block with ``fd`` open on ``tmp``, then fsyncs it, closes it and
    renames it onto ``path`` (and fsyncs the folder); or removes it on error."""
    try:
        try:
            yield
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_file(path, mode: str = "wb", sync_dir: bool = True, **open_args):
    """``with atomic_file(path) as f: f.write(...)``: ``path`` appears whole
    when the block ends, or not at all when it raises."""
    path = Path(path)
    fd, tmp = _create_temp(path)
    with _replacing(path, fd, tmp, sync_dir):
        with open(fd, mode, closefd=False, **open_args) as f:
            yield f


def write_atomic(path, data: bytes, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or none."""
    path = Path(path)
    fd, tmp = _create_temp(path)
    with _replacing(path, fd, tmp, sync_dir):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]


def move_atomic(source: Path, path: Path) -> None:
    """Move a finished file of the same folder onto ``path``, fsynced first.
    The caller fsyncs the folder, once for all the files it moves and writes."""
    fd = os.open(source, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(source, FILE_MODE)
    os.replace(source, path)
