"""Bringing operations back from the bucket into the storage folder.

Each operation's record and files are downloaded to temp files of the
folder and their sha256 checked (against the sha256 stored with the object,
and the record's entry) before ``HistoryService.restore`` moves them in and writes the
record last, then indexes it. An operation whose record never reached the
bucket (its upload was cut short) is not restorable and is said so.
"""

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..history import records
from ..storage import layout
from .ledger import sha256_file
from .target import BackupError


@dataclass
class Outcome:
    restored: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)  # op id -> why
    failed: dict = field(default_factory=dict)  # op id -> why


def operations_in(listing: dict) -> dict[str, list[str]]:
    """``{op id: [its object names]}`` of the bucket (archives left aside)."""
    found = {}
    for name in listing:
        op_id = layout.owner(name)
        if op_id and "/" not in name:
            found.setdefault(op_id, []).append(name)
    return found


def select(by_op: dict, ids=(), since: str | None = None) -> list[str]:
    """The operations asked for: ``ids`` (all of them if it is empty), from ``since`` (YYYYMMDD)."""
    chosen = list(ids) if ids else sorted(by_op)
    return [i for i in chosen if not since or layout.day_of(i) >= since]


def restore(history, target, ledger, listing, op_ids, overwrite=False, threads=4,
            progress=None) -> Outcome:
    """Restore ``op_ids`` (several at once) from the bucket (``listing``: its
    ``Target.listing()``), each whole or not at all; the ledger learns what
    the bucket holds, so that the next comparison is cheap."""
    outcome, by_op = Outcome(), operations_in(listing)

    def one(op_id):
        if layout.record_name(op_id) not in by_op.get(op_id, []):
            outcome.failed[op_id] = "no record in the bucket (never backed up, or cut short)"
        elif not overwrite and history.get(op_id) is not None:
            outcome.skipped[op_id] = "already here (--overwrite to replace it)"
        else:
            try:
                for name, sha in restore_one(history, target, listing, op_id).items():
                    ledger.uploaded(name, listing[name]["size"], listing[name]["etag"], sha)
                outcome.restored.append(op_id)
            except (BackupError, ValueError) as e:
                outcome.failed[op_id] = str(e)

    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(one, op_ids):
            if progress:
                progress(1)
    return outcome


def restore_one(history, target, listing, op_id: str) -> dict:
    """Download the record and the files, check each sha256, then put them in;
    return ``{name: sha256}`` of what was restored."""
    name = layout.record_name(op_id)
    path = history.temp_file()
    try:
        stored = target.download(name, path, listing[name]["size"])
        data = path.read_bytes()
    finally:
        path.unlink(missing_ok=True)
    hashes = {name: hashlib.sha256(data).hexdigest()}
    _check(name, hashes[name], stored)
    record = records.decode(op_id, data)
    files = {}
    try:
        for entry in record["inputImages"] + record["outputs"]:
            name = entry["file"]
            if not layout.belongs_to(name, op_id) or name not in listing:
                raise BackupError(f"{name} is not in the bucket")
            files[name] = history.temp_file()
            stored = target.download(name, files[name], listing[name]["size"])
            hashes[name] = actual = sha256_file(files[name])
            _check(name, actual, stored)
            _check(name, actual, entry.get("sha256") or actual)
        history.restore(op_id, data, files)
        return hashes
    finally:
        for path in files.values():
            path.unlink(missing_ok=True)  # moved in already when restored


def _check(name: str, actual: str, expected: str | None) -> None:
    if expected != actual:
        raise BackupError(f"{name}: its bytes hash to {actual[:12]}…, expected "
                          f"{(expected or 'a stored sha256')[:12]}…; not restored")
