"""The operations waiting for their upload, kept on disk so that the work
survives a crash, a kill -9 or a restart.

``<STORAGE_DIR>/.backup/pending/<id>``: an empty file per operation to send.
A process that takes one locks it and renames it into ``working/`` (one
rename wins, so two processes never send the same operation at once); it
removes it when the operation is in the bucket, or puts it back when the
upload failed. A file left in ``working/`` by a dead process (its lock went
with it) is put back by ``recover``. Saving the operation again while it is
being sent makes a new pending file, so the newer record goes up too.
"""

import fcntl
import os
import uuid
from pathlib import Path

from ..storage import layout


class Claim:
    """One operation taken for upload by this process."""

    def __init__(self, queue: "Pending", op_id: str, fd: int, path: Path):
        self.queue, self.op_id, self.fd, self.path = queue, op_id, fd, path

    def done(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self.fd)

    def release(self) -> None:
        """Put the operation back for a later try (a newer pending file wins)."""
        try:
            os.link(self.path, self.queue.pending / self.op_id)
        except FileExistsError:
            pass
        self.done()


class Pending:
    def __init__(self, folder: Path):
        self.pending = Path(folder) / "pending"
        self.working = Path(folder) / "working"

    def add(self, op_id: str) -> None:
        """Mark an operation to send: one small file, no fsync (a lost mark is
        found again by the next comparison with the bucket)."""
        if not layout.is_id(op_id):
            return
        try:
            os.close(os.open(self.pending / op_id, os.O_CREAT | os.O_WRONLY, 0o644))
        except FileNotFoundError:
            self.pending.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.pending / op_id, os.O_CREAT | os.O_WRONLY, 0o644))

    def ids(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.pending) if layout.is_id(n))
        except FileNotFoundError:
            return []

    def count(self) -> int:
        try:
            working = {n.split(".")[0] for n in os.listdir(self.working)}
        except FileNotFoundError:
            working = set()
        return len(set(self.ids()) | working)

    def claim(self, op_id: str) -> Claim | None:
        """Take ``op_id`` for upload, or None when it is gone or another has it."""
        source = self.pending / op_id
        try:
            fd = os.open(source, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(source).st_ino:
                raise FileNotFoundError(source)  # taken and renewed meanwhile
            self.working.mkdir(parents=True, exist_ok=True)
            target = self.working / f"{op_id}.{uuid.uuid4().hex}"
            os.rename(source, target)
        except OSError:
            os.close(fd)
            return None
        return Claim(self, op_id, fd, target)

    def recover(self) -> int:
        """Put back what dead processes held (their locks died with them)."""
        count = 0
        try:
            names = os.listdir(self.working)
        except FileNotFoundError:
            return 0
        for name in names:
            path = self.working / name
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                Claim(self, name.split(".")[0], os.dup(fd), path).release()
                count += 1
            except OSError:
                pass  # alive: its process holds the lock
            finally:
                os.close(fd)
        return count
