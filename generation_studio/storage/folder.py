"""The storage folder: operation records and their files, as loose files.

Writes go through ``atomic`` (the data files first, the JSON record last, one
fsync of the folder at the end), so a record that exists always has all its
files. Reads never follow a symbolic link: a link in the folder, whatever it
points at, is reported and never served. Naming comes from
``history.layout``; this module knows nothing of the index.
"""

import collections
import contextlib
import errno
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import media
from ..threads import HelperPool
from . import layout
from .atomic import TMP_SUFFIX, AtomicFiles, fsync_dir, temp_prefix


class OperationExists(Exception):
    """An operation id that is already on disk was about to be written."""


@dataclass
class Listing:
    """One scan of the folder: the files of each operation, and what is not ours."""

    files: dict = field(default_factory=dict)  # op id -> [names]
    records: set = field(default_factory=set)  # ids with a record
    temp: list = field(default_factory=list)  # (name, mtime) of temp files
    skipped: dict = field(default_factory=dict)  # name -> why it is not read


_helpers = HelperPool("folder", 2)
DESCRIBE_ON_HELPER_FROM = 64 * 1024  # below this the hand-over costs more than it saves
READ_AHEAD = 64  # files ``read_each`` has asked of the disk beyond the one it reads
_NO_DESCRIPTOR = (errno.EMFILE, errno.ENFILE)
# A link is refused, and a pipe named like a record is opened without waiting
# for a writer (then refused as not a regular file).
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
_JSON = (layout.RECORD_SUFFIX, ".JSON")  # names that look like records, to say why they are not


def _describe_while_written(data: bytes):
    """A function returning ``media.describe(data)``: large bytes are hashed
    on a helper thread (sha256 releases the GIL) while they are written."""
    if len(data) < DESCRIBE_ON_HELPER_FROM:
        info = media.describe(data)
        return lambda: info
    return _helpers.start(media.describe, data)


class OperationFolder:
    def __init__(self, root):
        self.root = Path(root)
        self._root = str(self.root)

    def path(self, name: str) -> Path:
        return self.root / name

    def writable(self) -> bool:
        """Whether the folder can be written: there, allowed, and not full."""
        if not (self.root.is_dir() and os.access(self.root, os.W_OK)):
            return False
        space = os.statvfs(self.root)
        return (space.f_bfree if os.geteuid() == 0 else space.f_bavail) > 0

    # Writing ----------------------------------------------------------------------
    def write(self, op_id: str, record: dict, inputs=(), outputs=(), meanwhile=None) -> dict:
        """Write an operation's files, then its record; return the record.

        ``inputs`` are ``(bytes, original_name)`` pairs; ``outputs`` bytes, or
        paths of finished files in this folder (moved in, never read into
        memory). ``meanwhile(record)``, if given, is called once the record is
        in place, while the folder's fsync runs. A failure removes what was
        written and raises (``meanwhile`` may have run: undoing it is the caller's).
        """
        json_path = self.path(layout.record_name(op_id))
        if os.path.lexists(json_path):
            raise OperationExists(op_id)
        files = AtomicFiles()
        try:
            record["inputImages"] = [
                self._add_file(files, lambda ext, n=n: layout.input_name(op_id, n, ext),
                               data, originalName=name)
                for n, (data, name) in enumerate(inputs)]
            record.update(self._add_outputs(files, op_id, outputs))
            files.write(json_path, self._encode(record), last=True)
            files.commit()  # the record is renamed last
            self._sync(record, meanwhile)
        except BaseException:
            files.discard()
            for path in files.renamed:
                path.unlink(missing_ok=True)
            raise
        return record

    def rewrite(self, op_id: str, record: dict, outputs=(), durable: bool = True,
                meanwhile=None) -> dict:
        """Write ``outputs`` (as in ``write``), then the record over its old
        version; a failure before the record is replaced removes the new
        outputs and keeps the old record (after it, the folder's fsync
        failing, both stay and it raises). Not ``durable``: the folder is not
        fsynced, so a power cut may bring back the previous version whole
        (never a torn one). ``meanwhile``: as in ``write``."""
        files, record_path = AtomicFiles(), self.path(layout.record_name(op_id))
        try:
            if outputs:
                record.update(self._add_outputs(files, op_id, outputs))
            files.write(record_path, self._encode(record), last=True)
            files.commit()
            if durable or outputs:
                self._sync(record, meanwhile)
            elif meanwhile is not None:
                meanwhile(record)
        except BaseException:
            files.discard()
            if record_path not in files.renamed:  # the old record stands: not its new outputs
                for path in files.renamed:
                    path.unlink(missing_ok=True)
            raise
        return record

    def put_back(self, op_id: str, record_data: bytes, files: dict) -> None:
        """An operation as it was (a restore): ``files`` (name -> a finished
        file of this folder) moved in, then its record, over what is there."""
        batch = AtomicFiles()
        try:
            for name, path in files.items():
                batch.move(path, self.path(name))
            batch.write(self.path(layout.record_name(op_id)), record_data, last=True)
            batch.commit()
        except BaseException:
            batch.discard()
            raise
        fsync_dir(self.root)

    def _sync(self, record: dict, meanwhile) -> None:
        """One fsync of the folder makes every rename in it durable; ``meanwhile(record)``
        runs while it does."""
        synced = _helpers.start(fsync_dir, self.root)
        try:
            if meanwhile is not None:
                meanwhile(record)
        finally:
            synced()

    def _add_outputs(self, files: AtomicFiles, op_id: str, outputs) -> dict:
        several = len(outputs) > 1
        entries = [
            self._add_file(files, lambda ext, n=n: layout.output_name(op_id, n, several, ext),
                           data)
            for n, data in enumerate(outputs)]
        return {"outputs": entries, "resultFile": entries[0]["file"] if entries else None}

    @staticmethod
    def _encode(record: dict) -> bytes:
        return json.dumps(record, indent=2, ensure_ascii=False).encode()

    def _add_file(self, files: AtomicFiles, name_for, data, **extra) -> dict:
        """Add one data file to ``files``; return its entry in the record."""
        if isinstance(data, Path):
            info = media.describe(data)
            path = self.path(name_for(info.ext))
            files.move(data, path)
        else:
            path = self.path(name_for(media.sniff(media.head(data))[0]))
            described = _describe_while_written(data)
            files.write(path, data)
            info = described()
        entry = {"file": path.name, "contentType": info.content_type, "bytes": info.size,
                 "sha256": info.sha256, "width": info.width, "height": info.height}
        if info.frames:
            entry["frames"] = info.frames
        entry.update(extra)
        return entry

    def remove(self, names) -> int:
        """Remove these files (records first); return the bytes freed."""
        freed = 0
        for name in sorted(names, key=lambda n: layout.record_id(n) is None):
            path = self.path(name)
            try:
                freed += path.lstat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
        return freed

    def temp_file(self, suffix: str = "") -> Path:
        """A new temp file in this folder (so that a save can move it in), or
        in the system's temp folder when this one cannot be written."""
        prefix = temp_prefix("download")
        try:
            fd, name = tempfile.mkstemp(dir=self.root, prefix=prefix, suffix=suffix + TMP_SUFFIX)
        except OSError:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix + TMP_SUFFIX)
        os.close(fd)
        return Path(name)

    # Reading ----------------------------------------------------------------------
    def read(self, name: str) -> bytes | None:
        """The bytes of a regular file of the folder; None when it is missing.
        A symbolic link raises ``OSError(ELOOP)``, never followed."""
        _, data, error = _finish(name, self._open(name))
        if error is not None:
            raise error
        return data

    def read_each(self, names):
        """``(name, bytes or None, error or None)`` for each of ``names``, as
        ``read`` gives them, with the next ``READ_AHEAD`` files already asked
        of the disk: a cold disk serves many reads at once far faster than
        one after another (a rebuild reads every record)."""
        ahead = collections.deque()
        try:
            for name in names:
                opened = self._ask(name)
                # Out of descriptors (many requests at once): read what is open first.
                while ahead and isinstance(opened, OSError) and opened.errno in _NO_DESCRIPTOR:
                    yield _finish(*ahead.popleft())
                    opened = self._ask(name)
                ahead.append((name, opened))
                if len(ahead) > READ_AHEAD:
                    yield _finish(*ahead.popleft())
            while ahead:
                yield _finish(*ahead.popleft())
        finally:
            for _, opened in ahead:
                if isinstance(opened, int):
                    os.close(opened)

    def _open(self, name: str):
        """An open descriptor of ``name``, or None when it is missing, or the
        error opening it raised."""
        try:
            return os.open(self.path(name), READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as e:
            return e

    def _ask(self, name: str):
        """``_open``, with the reading of the file begun."""
        opened = self._open(name)
        if isinstance(opened, int):
            with contextlib.suppress(OSError):  # only advice: the read will wait instead
                os.posix_fadvise(opened, 0, 0, os.POSIX_FADV_WILLNEED)
        return opened

    def regular_file(self, name: str) -> Path | None:
        """The path of ``name`` if it is a regular file here (not a link)."""
        return self.path(name) if self.is_regular(name) else None

    def size(self, name: str) -> int | None:
        """The size of ``name`` if it is a regular file here (not a link)."""
        try:
            found = os.lstat(os.path.join(self._root, name))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return found.st_size if stat.S_ISREG(found.st_mode) else None

    def is_regular(self, name: str) -> bool:
        """Whether ``name`` is a regular file here (not a link). A plain string
        path: the recovery asks it of each of millions of files, and a
        ``Path`` would cost more than the system call (8 µs against 3)."""
        try:
            return stat.S_ISREG(os.lstat(os.path.join(self._root, name)).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def scan(self) -> Listing:
        """One pass over the folder (no stat of the files but temp ones)."""
        listing = Listing()
        for kind, name, op_id in self.walk():
            if kind == "temp":
                listing.temp.append(name)
            elif kind == "skipped":
                listing.skipped[name] = op_id
            else:
                listing.files.setdefault(op_id, []).append(name)
                if kind == "record":
                    listing.records.add(op_id)
        return listing

    def walk(self, records_only: bool = False):
        """The folder's entries, streamed in one pass, nothing held (a folder of
        millions of files costs no memory): ``(kind, name, what)``, kind
        ``record`` or ``file`` (``what`` the operation's id), ``temp``, or
        ``skipped`` (``what`` the reason). ``records_only``: no ``file`` and
        no ``temp`` (two thirds of a folder's names, not even parsed)."""
        try:
            entries = os.scandir(self.root)
        except FileNotFoundError:
            return
        with entries:
            for entry in entries:
                name = entry.name
                if records_only and not name.endswith(_JSON) and not entry.is_symlink():
                    continue
                if name.startswith("."):
                    if name.endswith(TMP_SUFFIX):
                        yield "temp", name, None
                    continue
                op_id = layout.owner(name)
                if entry.is_symlink():
                    yield "skipped", name, "a symbolic link: never followed"
                elif op_id is None:
                    if name.endswith(_JSON):
                        yield "skipped", name, "not named YYYYMMDD_<id>.json"
                elif entry.is_file(follow_symlinks=False):
                    yield "record" if name == layout.record_name(op_id) else "file", name, op_id
                else:  # a folder or a pipe named as ours: never opened
                    yield "skipped", name, "not a regular file"


def _read_regular(fd: int, name: str) -> bytes:
    """The bytes of the open ``fd`` (closed here), refused if not a regular file."""
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            code = errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL
            raise OSError(code, os.strerror(code), name)
    except OSError:
        os.close(fd)  # os.fdopen would not close what it refuses
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _finish(name: str, opened):
    """``read_each``'s answer for ``name`` from what ``_ask`` gave."""
    if opened is None or isinstance(opened, OSError):
        return name, None, opened
    try:
        return name, _read_regular(opened, name), None
    except OSError as e:
        return name, None, e
