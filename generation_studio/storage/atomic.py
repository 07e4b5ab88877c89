"""Atomic files: the one way the studio writes a file.

A file is written to a temporary name in its own folder, flushed, fsynced,
``os.replace``d onto its name, and the folder is fsynced so that the rename
itself survives a power cut. A reader sees the whole file or none of it, and
a writer that dies leaves only a ``*.tmp`` file that recovery removes.
``AtomicFiles`` does the same for several files that appear together (an
operation's files and its record), their fsyncs overlapping.
"""

import contextlib
import errno
import os
import secrets
from pathlib import Path

from ..threads import HelperPool

TMP_SUFFIX = ".tmp"  # temp files end so; recovery removes those of dead writers
FILE_MODE = 0o644  # records are meant to be read with cat
# What a storage that cannot be written answers (read-only, full, refused).
CANNOT_WRITE = (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM)


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
        _write_all(fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_syncs = HelperPool("fsync", 4)


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    _fsync_and_close(os.open(path, os.O_RDONLY | os.O_NOFOLLOW))


class _Temp:
    """A file of ``AtomicFiles`` until it is renamed onto its name."""

    def __init__(self, tmp: Path, path: Path, made_here: bool):
        self.tmp, self.path, self.made_here = tmp, path, made_here
        self.synced = lambda: None  # waits for its fsync


class AtomicFiles:
    """Files of one folder that take their names together, in the order they
    were added, once all are durable: each is written to its temp file and
    fsynced on a helper thread while the next one is written (a plain loop
    waits for each fsync in turn). The caller fsyncs the folder after
    ``commit``. On failure, ``discard`` removes the temp files; files already
    renamed (``renamed``) are the caller's to remove."""

    def __init__(self):
        self._pending = []
        self.renamed = []  # the names taken so far

    def write(self, path, data: bytes, last: bool = False) -> None:
        """Write ``data`` for ``path``; ``last``: fsynced here, there being
        nothing left to overlap it with."""
        fd, tmp = _create_temp(Path(path))
        temp = _Temp(tmp, Path(path), made_here=True)
        self._pending.append(temp)  # from here ``discard`` removes it
        try:
            _write_all(fd, data)
        except BaseException:
            os.close(fd)
            raise
        if last:
            _fsync_and_close(fd)
        else:
            temp.synced = _syncs.start(_fsync_and_close, fd)

    def move(self, source: Path, path) -> None:
        """Take a finished file of the same folder (a download) for ``path``."""
        os.chmod(source, FILE_MODE)
        temp = _Temp(Path(source), Path(path), made_here=False)
        self._pending.append(temp)
        temp.synced = _syncs.start(_fsync_path, source)

    def commit(self) -> None:
        """Wait for every fsync, then rename each file onto its name."""
        for temp in self._pending:
            temp.synced()
        while self._pending:
            os.replace(self._pending[0].tmp, self._pending[0].path)
            self.renamed.append(self._pending.pop(0).path)

    def discard(self) -> None:
        """Remove the temp files not yet renamed (a moved source is left)."""
        for temp in self._pending:
            with contextlib.suppress(Exception):
                temp.synced()  # its file is closed before it goes
            if temp.made_here:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp.tmp)
        self._pending = []
