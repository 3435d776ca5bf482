"""CPU time and memory of benchmarked processes, read straight from /proc.

CPU comes from utime+stime in /proc/<pid>/stat (whole process, all threads) so it costs nothing
while load runs; RSS comes from VmRSS in /proc/<pid>/status.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # comm may contain spaces and parentheses: the fields start after the last ')'.
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)  # fields[0] is field 3 (state); utime is 14, stime is 15
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def threads_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time of the process's main thread and of all its other threads together (nanosecond
    run times from /proc/<pid>/task/<tid>/schedstat): what an event loop pays against what
    its worker threads (a ledger writer, an executor) pay."""
    main = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):  # a thread that just ended
            ran = int((task / "schedstat").read_text().split()[0]) / 1e9
            if task.name == str(pid):
                main = ran
            else:
                others += ran
    return main, others


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0  # a zombie has no VmRSS


def descendants(pid: int) -> list[int]:
    """pid and all its live descendants (LiteLLM may fork helpers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in descendants(pid):
        with contextlib.suppress(OSError):  # exited between listing and reading
            total += cpu_seconds(member)
    return total


def tree_rss_mb(pid: int) -> float:
    total = 0.0
    for member in descendants(pid):
        with contextlib.suppress(OSError):
            total += rss_mb(member)
    return total


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: tree_cpu_seconds(pid) for name, pid in pids.items()}


def rss_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: round(tree_rss_mb(pid), 1) for name, pid in pids.items()}


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before}


def loopback_only(pid: int) -> list[str]:
    """Remote addresses of pid's TCP sockets that are not loopback (empty = all local)."""
    inodes = set()
    for member in descendants(pid):
        fd_dir = Path(f"/proc/{member}/fd")
        try:
            for fd in fd_dir.iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    foreign = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            remote, inode = parts[2], parts[9]
            if inode in inodes and not _is_local(remote):
                foreign.append(remote)
    return foreign


def _is_local(hex_addr: str) -> bool:
    address = hex_addr.split(":")[0]
    if len(address) == 8:  # IPv4, little-endian hex: 127.x.x.x ends in 7F; 0.0.0.0 = listening
        return address.endswith("7F") or address == "00000000"
    # IPv6: ::1, ::, or IPv4-mapped loopback
    return address in (
        "00000000000000000000000001000000",
        "00000000000000000000000000000000",
    ) or (address.startswith("0000000000000000FFFF0000") and address.endswith("7F"))
