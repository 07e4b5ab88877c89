"""What to send, and sending it: an operation's files first, its record last
(so a record in the bucket always has all its files), and the day archives.

An object already in the bucket with the same size and sha256 is not sent
again. What the bucket holds is learnt from ``Remote``: the ledger alone
(what this studio sent) for the automatic uploads, or the bucket's listing
checked against the ledger (HEAD only for objects it does not know) for a
full comparison.
"""

import hashlib
import io
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from ..history import records
from ..storage import archive, layout
from .target import BackupError


class Skipped(Exception):
    """An operation that cannot be sent as it is (gone, not final, incomplete)."""


@dataclass
class Item:
    name: str  # the file's name on disk, and its key under the prefix
    source: object  # a Path, or bytes (an archived file)
    size: int
    sha256: str
    content_type: str

    def readable(self):
        return self.source if isinstance(self.source, Path) else io.BytesIO(self.source)


def _item(ledger, name: str, source, content_type=None) -> Item:
    content_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    if isinstance(source, Path):
        return Item(name, source, source.stat().st_size, ledger.local_sha256(source), content_type)
    return Item(name, source, len(source), hashlib.sha256(source).hexdigest(), content_type)


def _local(history, name: str):
    """A file of the storage folder: its Path when loose, its bytes when archived."""
    path = history.folder.regular_file(name)
    if path is not None:
        return path
    return archive.read(history.root, [name]).get(name)


def operation_items(history, ledger, op_id: str) -> list[Item]:
    """The operation's files, then its record; Skipped when it cannot go as it is."""
    data = _local(history, layout.record_name(op_id))
    if data is None:
        raise Skipped(f"{op_id}: no longer on disk")
    record_bytes = data.read_bytes() if isinstance(data, Path) else data
    try:
        record = records.decode(op_id, record_bytes)
    except records.InvalidRecord as e:
        raise Skipped(f"{op_id}: unreadable record ({e})") from None
    if not records.is_final(record):
        raise Skipped(f"{op_id}: still {record['status']}")
    items = []
    for entry in record["inputImages"] + record["outputs"]:
        name = entry["file"]
        source = _local(history, name) if layout.belongs_to(name, op_id) else None
        if source is None:
            raise Skipped(f"{op_id}: its file {name} is missing on disk, so its record is "
                          "not sent (a record in the bucket always has all its files)")
        items.append(_item(ledger, name, source, entry.get("contentType")))
    return items + [_item(ledger, layout.record_name(op_id), record_bytes, "application/json")]


def archive_items(history, ledger) -> list[Item]:
    return [_item(ledger, f"{layout.ARCHIVES}/{day}.zip", archive.path_for(history.root, day),
                  "application/zip") for day in archive.days(history.root)]


class Remote:
    """What the bucket holds: ``sha256(name)`` of an object there, or None."""

    def __init__(self, target, ledger, listing: dict | None = None):
        self.target, self.ledger, self.listing = target, ledger, listing

    def sha256(self, name: str, size: int) -> str | None:
        known = self.ledger.known(name)
        if self.listing is None:
            return known["sha256"] if known and known["size"] == size else None
        seen = self.listing.get(name)
        if seen is None or seen["size"] != size:
            return None
        if known and known["etag"] == seen["etag"] and known["size"] == size:
            return known["sha256"]
        head = self.target.head(name)  # not sent by us, or replaced since
        if head is None or not head["sha256"]:
            return None
        self.ledger.uploaded(name, head["size"], head["etag"], head["sha256"])
        return head["sha256"]

    def lacks(self, item: Item) -> bool:
        return self.sha256(item.name, item.size) != item.sha256


def send(target, ledger, remote: Remote, items: list[Item]) -> int:
    """Send the items the bucket lacks, in order; return the bytes sent. Each
    upload is checked (by the store, or by a HEAD) before the next one."""
    sent = 0
    for item in items:
        if not remote.lacks(item):
            continue
        etag = target.upload(item.readable(), item.name, item.sha256, item.content_type,
                             item.size)
        if etag is None:  # sent in parts: check what arrived
            head = target.head(item.name)
            if head is None or head["size"] != item.size or head["sha256"] != item.sha256:
                raise BackupError(f"{item.name} did not arrive whole in {target.url}")
            etag = head["etag"]
        ledger.uploaded(item.name, item.size, etag, item.sha256)
        sent += item.size
    return sent


def plan(history, ledger, remote: Remote) -> tuple[list[str], list[Item]]:
    """What the bucket lacks: ``(operation ids, archive items)``. Operations
    that cannot go as they are (not final, incomplete) are left out."""
    lacking = []
    for op_id in sorted(history.locations()):
        try:
            if any(remote.lacks(i) for i in operation_items(history, ledger, op_id)):
                lacking.append(op_id)
        except Skipped:
            continue
    return lacking, [i for i in archive_items(history, ledger) if remote.lacks(i)]
