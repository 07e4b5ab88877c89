"""Checking the bucket against the history: per operation, the objects
that are missing, different (size, stored sha256 or actual bytes) or extra
(in the bucket, no longer on this disk — expected after a local delete).

The sha256 stored with each object is compared with the local file's; the
bytes themselves are read and hashed when the object is not the one this
studio sent (its ETag changed or is unknown: replaced, or sent from another
disk), and for every object with ``deep``.
"""

from collections import defaultdict
from dataclasses import dataclass, field

from ..storage import layout
from .sync import Skipped, archive_items, operation_items


@dataclass
class Report:
    problems: dict = field(default_factory=lambda: defaultdict(list))  # owner -> [(kind, name, why)]
    checked: int = 0

    def add(self, kind: str, name: str, why: str = "") -> None:
        owner = layout.owner(name) or layout.ARCHIVES
        self.problems[owner].append((kind, name, why))

    def count(self, kind: str) -> int:
        return sum(1 for found in self.problems.values() for k, _, _ in found if k == kind)

    @property
    def ok(self) -> bool:
        return not (self.count("missing") or self.count("different"))


def expected(history, ledger) -> dict:
    """``{name: Item}`` of everything the bucket should hold for this disk."""
    items = {}
    for op_id in history.locations():
        try:
            items.update({i.name: i for i in operation_items(history, ledger, op_id)})
        except Skipped:
            continue  # not final, or incomplete on disk: not the backup's to hold yet
    items.update({i.name: i for i in archive_items(history, ledger)})
    return items


def gather(history, target, ledger) -> tuple[dict, dict]:
    """``(what the disk says the bucket should hold, what the bucket lists)``."""
    return expected(history, ledger), target.listing()


def verify(target, ledger, wanted: dict, listing: dict, deep=False, progress=None) -> Report:
    """Check every object of ``wanted`` and ``listing`` (see ``gather``)."""
    report = Report()
    for name in sorted(set(wanted) | set(listing)):
        item, seen = wanted.get(name), listing.get(name)
        report.checked += 1
        if item is None:
            report.add("extra", name, "in the bucket, not on this disk")
            _check_bytes(report, target, ledger, name, seen, None, deep)
        elif seen is None:
            report.add("missing", name, "not in the bucket")
        elif seen["size"] != item.size:
            report.add("different", name, f"{seen['size']} bytes in the bucket, "
                                          f"{item.size} on disk")
        else:
            _check_bytes(report, target, ledger, name, seen, item.sha256, deep)
        if progress:
            progress(1)
    return report


def _check_bytes(report, target, ledger, name, seen, local_sha, deep) -> None:
    """Compare the stored sha256 (and, when needed, the bytes) with ``local_sha``."""
    known = ledger.known(name)
    ours = known is not None and known["etag"] == seen["etag"]
    stored = known["sha256"] if ours else (target.head(name) or {}).get("sha256")
    if stored is None:
        report.add("different", name, "no sha256 stored with it")
        return
    if local_sha is not None and stored != local_sha:
        report.add("different", name, f"sha256 {stored[:12]}… in the bucket, "
                                      f"{local_sha[:12]}… on disk")
        return
    if deep or not ours:
        actual = target.sha256_of(name)
        if actual != stored:
            report.add("different", name, f"its bytes hash to {actual[:12]}…, not to the "
                                          f"sha256 stored with it ({stored[:12]}…)")
