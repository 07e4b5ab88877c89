"""Day archives: old operations packed one zip per day, and read back.

``archives/YYYYMMDD.zip`` in the storage folder holds the day's records and
files under their usual names: JSON and PNG deflated, formats that are
already compressed (JPEG, WebP, GIF, MP4...) stored as they are. Reading
works the same as from the folder. A zip is rewritten whole to a temp name
and replaced atomically; the callers hold the day's lock (``history.locks``)
so that two rewrites of one day never race. Only names that ``layout``
recognises are ever read or unpacked.
"""

import contextlib
import os
import stat
import zipfile
import zlib
from pathlib import Path

from . import layout
from .atomic import atomic_file, write_atomic

STORED = {"jpg", "jpeg", "webp", "gif", "mp4", "mov", "webm"}


class Unreadable(Exception):
    """A day's archive that is not a readable zip (garbage, cut short): its
    operations cannot be read, so the history names it among the files it
    skipped, and compress, decompress and delete leave it as it is. Not
    ``whole``: the zip opens, but a member's bytes cannot be read back, so it
    cannot be rewritten without losing that member."""

    def __init__(self, day: str, why: str, whole: bool = True):
        super().__init__(f"not a readable zip archive ({why})" if whole else why)
        self.day, self.whole = day, whole
        self.name = f"{layout.ARCHIVES}/{day}.zip"


# What reading back a damaged member raises (a bad CRC, a broken deflate stream).
DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError)


def folder(root: Path) -> Path:
    return root / layout.ARCHIVES


def path_for(root: Path, day: str) -> Path:
    return folder(root) / f"{day}.zip"


def days(root: Path) -> list[str]:
    try:
        return sorted(p.stem for p in folder(root).glob("*.zip")
                      if p.stem.isdigit() and len(p.stem) == 8 and not p.is_symlink())
    except FileNotFoundError:
        return []


def versions(root: Path) -> dict[str, tuple]:
    """Each day's zip as it is now (its inode, time and size): a zip packed,
    rewritten or removed since is another version, or none."""
    found = {}
    for day in days(root):
        with contextlib.suppress(OSError):
            made = os.lstat(path_for(root, day))
            found[day] = (made.st_ino, made.st_mtime_ns, made.st_size)
    return found


def _open(root: Path, day: str):
    """The day's zip, open; FileNotFoundError when it is missing, or when it or
    the archives folder is a symbolic link (never followed)."""
    if folder(root).is_symlink():
        raise FileNotFoundError(2, "the archives folder is a symbolic link", str(folder(root)))
    try:
        fd = os.open(path_for(root, day), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise FileNotFoundError(2, f"no archive of {day} ({e.strerror})") from None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise FileNotFoundError(2, f"the archive of {day} is not a regular file")
    try:
        return zipfile.ZipFile(f)
    except (zipfile.BadZipFile, EOFError) as e:
        f.close()
        raise Unreadable(day, str(e)) from None


def names(root: Path, day: str) -> list[str]:
    """The operation files in the day's zip (``Unreadable`` when it is not one)."""
    try:
        with _open(root, day) as z:
            return [n for n in z.namelist() if layout.owner(n)]
    except FileNotFoundError:
        return []


def read(root: Path, names_wanted, damaged: dict | None = None) -> dict[str, bytes]:
    """The archived files among ``names_wanted``, each zip opened once. One
    whose bytes cannot be read back is left out, and named with why in
    ``damaged`` (when given)."""
    by_day, found = {}, {}
    for name in names_wanted:
        by_day.setdefault(layout.day_of(name), []).append(name)
    for day, wanted in by_day.items():
        try:
            with _open(root, day) as z:
                members = set(z.namelist())
                for name in (n for n in wanted if n in members):
                    try:
                        found[name] = z.read(name)
                    except DAMAGED as e:
                        if damaged is not None:
                            damaged[name] = f"damaged in {layout.ARCHIVES}/{day}.zip ({e})"
        except (FileNotFoundError, Unreadable):
            continue  # not found, as the history reports it
    return found


def pack(root: Path, day: str, loose: list[str]) -> tuple[int, int]:
    """Add the ``loose`` files to the day's zip (the zip first, atomically).

    Returns (bytes the loose files took, bytes the zip grew by); the caller
    removes the loose files once this returns.
    """
    target = path_for(root, day)
    target.parent.mkdir(exist_ok=True)
    before = target.lstat().st_size if target.exists() else 0
    adding = set(loose)

    def fill(out):
        try:
            with _open(root, day) as old:
                _copy(old, out, [i for i in old.infolist() if i.filename not in adding], day)
        except FileNotFoundError:
            pass  # none yet, or a link: replaced, never followed
        for name in sorted(loose, key=lambda n: layout.record_id(n) is not None):
            ext = name.rsplit(".", 1)[-1].lower()
            out.write(root / name, name,
                      zipfile.ZIP_STORED if ext in STORED else zipfile.ZIP_DEFLATED)

    _rewrite(target, fill)
    size = sum((root / n).stat().st_size for n in loose)
    return size, target.stat().st_size - before


def unpack(root: Path, day: str, skip=frozenset()) -> list[str]:
    """Write the day's files back into the folder (records last), then drop
    the zip; files of ids in ``skip`` (already loose) are left out. Returns
    the names written."""
    target = path_for(root, day)
    with _open(root, day) as z:
        members = sorted((n for n in z.namelist()
                          if layout.owner(n) and layout.owner(n) not in skip),
                         key=lambda n: layout.record_id(n) is not None)
        for name in members:
            write_atomic(root / name, _member(z, name, day), sync_dir=False)
    target.unlink()
    return members


def drop(root: Path, day: str, op_ids: set[str]) -> int:
    """Remove the operations ``op_ids`` from the day's zip; return bytes freed."""
    target = path_for(root, day)
    if not target.exists():
        return 0
    before = target.stat().st_size
    with _open(root, day) as old:
        keep = [i for i in old.infolist() if layout.owner(i.filename) not in op_ids]
        if len(keep) == len(old.infolist()):
            return 0
        if not keep:
            target.unlink()
            return before
        _rewrite(target, lambda out: _copy(old, out, keep, day))
    return before - target.stat().st_size


def _rewrite(target: Path, fill) -> None:
    """A new zip for ``target`` written by ``fill(zipfile)``, swapped in atomically."""
    with atomic_file(target) as f, zipfile.ZipFile(f, "w") as out:
        fill(out)


def _copy(old, out, members, day: str) -> None:
    for info in members:
        out.writestr(info, _member(old, info, day))


def _member(z, member, day: str) -> bytes:
    """A member's bytes; ``Unreadable`` (not whole) when they cannot be read back."""
    try:
        return z.read(member)
    except DAMAGED as e:
        name = getattr(member, "filename", member)
        raise Unreadable(day, f"{name} cannot be read back from it ({e})", whole=False) from None
