"""The processes of a topology, named by pid and start time (``/proc/<pid>/stat``), so that a
reused pid is never taken for one of ours nor signalled: whether one lives, its memory, stopping
them (SIGTERM, then SIGKILL to its whole process group)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

STOP_TIMEOUT_S = 15.0  #: ``down`` waits this long after SIGTERM before SIGKILL


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of ``pid``, from ``/proc``; None: no such."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    return fields[0], fields[19]


def start_time(pid: int) -> str | None:
    found = _stat(pid)
    return found[1] if found else None


def alive(pid: int, started: str | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (a zombie does not: our
    processes are detached, and whoever adopted them may be slow to reap them)."""
    if not Path("/proc/self/stat").exists():  # no /proc: trust the pid alone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    found = _stat(pid)
    if found is None or found[0] in ("Z", "X"):
        return False
    return started is None or found[1] == started


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (``VmRSS``), None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _signal(pid: int, sig: int) -> None:
    """Signal ``pid``; SIGKILL goes to its whole process group (its own session: ``spawn``), so
    that a seed's generating process goes with the host that started it."""
    try:
        if sig == signal.SIGKILL and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_processes(procs: list[dict[str, Any]], timeout_s: float = STOP_TIMEOUT_S) -> list[int]:
    """SIGTERM every live process of ``procs`` (``pid`` and ``start_time``), SIGKILL those left
    after ``timeout_s``; returns the pids still running after that (none, normally)."""
    live = [p for p in procs if alive(p["pid"], p.get("start_time"))]
    for p in live:
        _signal(p["pid"], signal.SIGTERM)
    for sig, wait_s in ((signal.SIGKILL, timeout_s), (None, 5.0)):
        deadline = time.monotonic() + wait_s
        while live and time.monotonic() < deadline:
            time.sleep(0.05)
            live = [p for p in live if alive(p["pid"], p.get("start_time"))]
        if sig is not None:
            for p in live:
                _signal(p["pid"], sig)
    return [p["pid"] for p in live]
