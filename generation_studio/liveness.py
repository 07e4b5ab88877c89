"""Whether a process of this machine still lives: the writers named in temp
files and the workers named in leases. A zombie (killed, not yet reaped) is
dead, and a process id reused by a process started later is not the one
that was named."""

import os


def alive(pid: int, since: float | None = None) -> bool:
    """Whether ``pid`` runs (and, with ``since``, has run since that time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state, started = _proc_stat(pid)
    if state == b"Z":
        return False
    return since is None or started is None or started <= since + 1


def _proc_stat(pid: int):
    """(state, start time) of ``pid`` from Linux's /proc; (None, None) elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None, None
    return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def start_time(pid: int) -> float | None:
    return _proc_stat(pid)[1]
