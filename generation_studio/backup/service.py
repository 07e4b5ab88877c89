"""The backup of one studio: its target, ledger and pending list, the
automatic uploads, and the status shown by the CLI, ``/api/health`` and the
admin page.

With no ``BACKUP_URL`` there is no ``Backup`` at all and nothing changes. A
``BACKUP_URL`` that cannot be used (malformed, say) leaves the studio
working: the status and the CLI say why, in one line.
"""

import logging
from pathlib import Path

from ..history import records
from .ledger import Ledger
from .pending import Pending
from .sync import Remote, Skipped, operation_items, send
from .target import BackupError, Target
from .uploader import Uploader

FOLDER = ".backup"
log = logging.getLogger(__name__)


class Backup:
    def __init__(self, config, history, logger=None):
        self.config = config
        self.history = history
        self.log = logger or log
        folder = Path(history.root) / FOLDER
        self.ledger = Ledger(folder / "ledger.sqlite3")
        self.pending = Pending(folder)
        self.problem = None
        try:
            self.target = Target(config)
        except BackupError as e:
            self.target, self.problem = None, str(e)
        except Exception as e:  # boto3 refusing its own settings (a bad profile, say)
            self.target, self.problem = None, f"Cannot set up the backup: {e}"
        self.uploader = Uploader(self)

    def require_target(self) -> Target:
        if self.target is None:
            raise BackupError(self.problem)
        return self.target

    # The hook ---------------------------------------------------------------------
    def saw(self, sender, record: dict) -> None:
        """An operation was saved: queue it when it has ended, and return at once."""
        if sender is not self.history or not records.is_final(record):
            return
        try:
            self.pending.add(record["operationId"])
            self.uploader.wake()
        except Exception:  # never fail the save: the next comparison finds it again
            self.log.exception("Could not queue operation %s for backup",
                               record.get("operationId"))

    # One operation ----------------------------------------------------------------
    def upload_operation(self, op_id: str, remote: Remote | None = None) -> int:
        """Send what the bucket lacks of one operation; its record last.
        Returns the bytes sent; Skipped when it cannot go as it is."""
        target = self.require_target()
        items = operation_items(self.history, self.ledger, op_id)
        return send(target, self.ledger, remote or Remote(target, self.ledger), items)

    def send_claimed(self, op_id: str, remote: Remote | None = None, only_pending=True):
        """``upload_operation`` under the operation's claim (see ``pending``): its
        mark is removed when it is in the bucket, put back when the store failed.
        Returns the bytes sent, or None when ``only_pending`` and it is not
        pending here (gone, or another process is sending it)."""
        claim = self.pending.claim(op_id)
        if claim is None and only_pending:
            return None
        try:
            sent = self.upload_operation(op_id, remote)
        except Skipped:
            if claim:
                claim.done()
            raise
        except BaseException:
            if claim:
                claim.release()
            raise
        if claim:
            claim.done()
        return sent

    # Status -----------------------------------------------------------------------
    def status(self) -> dict:
        meta = {k: self.ledger.get(k) for k in ("lastSuccess", "lastError", "failingSince")}
        error, pending = self.problem or meta["lastError"], self.pending.count()
        return {"enabled": True, "target": self.target.url if self.target else None,
                "endpoint": self.config.get("BACKUP_ENDPOINT_URL") or None,
                "backedUp": self.ledger.count_records(), "pending": pending,
                "state": "failing" if error else ("pending" if pending else "ok"),
                "lastError": self.target.mask(error) if error and self.target else error,
                "failingSince": meta["failingSince"], "lastSuccess": meta["lastSuccess"]}


__all__ = ["Backup", "BackupError", "Skipped"]
