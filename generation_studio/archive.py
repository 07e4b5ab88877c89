"""Day archives: old operations packed one zip per day, and read back.

``archives/YYYYMMDD.zip`` in the storage folder holds the day's records and
files under their usual names: JSON and PNG deflated, formats that are
already compressed (JPEG, WebP, GIF, MP4...) stored as they are. The store
reads records and files from there as from the folder, so the history, the
API and the export serve them as before. A zip is written to a temp name and
replaced atomically; the loose files go only once it is in place.
"""

import os
import zipfile
from pathlib import Path

from .atomic import FILE_MODE, temp_path, write_atomic

FOLDER = "archives"
STORED = {"jpg", "jpeg", "webp", "gif", "mp4", "mov", "webm"}


def folder(root: Path) -> Path:
    return root / FOLDER


def path_for(root: Path, day: str) -> Path:
    return folder(root) / f"{day}.zip"


def days(root: Path) -> list[str]:
    try:
        return sorted(p.stem for p in folder(root).glob("*.zip"))
    except FileNotFoundError:
        return []


def names(root: Path, day: str) -> list[str]:
    try:
        with zipfile.ZipFile(path_for(root, day)) as z:
            return z.namelist()
    except FileNotFoundError:
        return []


def read(root: Path, names_wanted) -> dict[str, bytes]:
    """The archived files among ``names_wanted``, each zip opened once."""
    by_day, found = {}, {}
    for name in names_wanted:
        by_day.setdefault(name[:8], []).append(name)
    for day, wanted in by_day.items():
        try:
            with zipfile.ZipFile(path_for(root, day)) as z:
                members = set(z.namelist())
                found.update({n: z.read(n) for n in wanted if n in members})
        except FileNotFoundError:
            continue
    return found


def pack(root: Path, day: str, loose: list[str]) -> tuple[int, int]:
    """Add the ``loose`` files to the day's zip, then remove them.

    Returns (bytes the loose files took, bytes the zip grew by).
    """
    target = path_for(root, day)
    target.parent.mkdir(exist_ok=True)
    before = target.stat().st_size if target.exists() else 0

    def fill(out):
        if before:
            with zipfile.ZipFile(target) as old:
                _copy(old, out, [i for i in old.infolist() if i.filename not in loose])
        for name in sorted(loose, key=lambda n: n.endswith(".json")):
            ext = name.rsplit(".", 1)[-1].lower()
            out.write(root / name, name,
                      zipfile.ZIP_STORED if ext in STORED else zipfile.ZIP_DEFLATED)

    _rewrite(target, fill)
    size = sum((root / n).stat().st_size for n in loose)
    _remove_loose(root, loose)
    return size, target.stat().st_size - before


def unpack(root: Path, day: str) -> int:
    """Put the day's files back in the folder (records last), then drop the zip."""
    target = path_for(root, day)
    with zipfile.ZipFile(target) as z:
        members = sorted(z.namelist(), key=lambda n: n.endswith(".json"))
        for name in members:
            write_atomic(root / name, z.read(name))
    target.unlink()
    return len(members)


def drop(root: Path, day: str, op_ids: set[str]) -> int:
    """Remove the operations ``op_ids`` from the day's zip; return bytes freed."""
    target = path_for(root, day)
    before = target.stat().st_size
    with zipfile.ZipFile(target) as old:
        keep = [i for i in old.infolist() if i.filename[:21] not in op_ids]
        if not keep:
            target.unlink()
            return before
        _rewrite(target, lambda out: _copy(old, out, keep))
    return before - target.stat().st_size


def _rewrite(target: Path, fill) -> None:
    """A new zip for ``target`` written by ``fill(zipfile)``, fsynced, then swapped in."""
    tmp = temp_path(target.parent, target.name)
    try:
        with zipfile.ZipFile(tmp, "w") as out:
            fill(out)
        _fsync(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _copy(old, out, members) -> None:
    for info in members:
        out.writestr(info, old.read(info))


def _remove_loose(root: Path, loose: list[str]) -> None:
    # Records first: an operation leaves the folder at once, its files after.
    for name in sorted(loose, key=lambda n: not n.endswith(".json")):
        (root / name).unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())

