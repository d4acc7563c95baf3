"""CPU time and peak memory of the processes a bench starts (Linux /proc): what a unit of work
costs each part, independent of what else the machine is doing at the time."""

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def cpu_seconds(pid: int, *, tree: bool = False) -> float:
    """User + system CPU of ``pid`` (and, with ``tree``, of its live descendants, e.g. the
    backends of a PostgreSQL postmaster)."""
    pids = descendants(pid) if tree else [pid]
    total = 0
    for each in pids:
        try:
            fields = _stat(each)
        except FileNotFoundError:  # exited meanwhile
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def _status_bytes(pid: int) -> dict[str, int]:
    """The kB-valued fields of /proc/<pid>/status (VmHWM, RssShmem, ...) in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith(" kB"):
            found[name] = int(value.split()[0]) * 1024
    return found


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (every core, every process; /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS


def peak_memory_bytes(pid: int, *, tree: bool = False) -> int:
    """Peak resident set (VmHWM) of ``pid``; with ``tree``, summed over its live descendants
    with shared memory (a PostgreSQL postmaster's shared buffers, which every backend maps)
    counted once: each one's peak less its shared pages now, plus the largest shared set."""
    if not tree:
        return _status_bytes(pid).get("VmHWM", 0)
    private, shared = 0, 0
    for each in descendants(pid):
        try:
            status = _status_bytes(each)
        except FileNotFoundError:  # exited meanwhile
            continue
        private += status.get("VmHWM", 0) - status.get("RssShmem", 0)
        shared = max(shared, status.get("RssShmem", 0))
    return private + shared


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat(int(entry.name))[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


class CpuMeter:
    """CPU spent by named processes between ``start()`` and ``per(count)``."""

    def __init__(self, pids: dict[str, tuple[int, bool]]) -> None:
        self.pids = pids  # name -> (pid, whole tree)
        self.started: dict[str, float] = {}
        self.machine_started = 0.0

    def start(self) -> None:
        self.started = {name: cpu_seconds(p, tree=t) for name, (p, t) in self.pids.items()}
        self.machine_started = machine_busy_seconds()

    def others_seconds(self) -> float:
        """CPU the rest of the machine (processes not metered) spent since ``start()``: what
        a busy machine took from the processes measured."""
        ours = sum(
            cpu_seconds(pid, tree=tree) - self.started[name]
            for name, (pid, tree) in self.pids.items()
        )
        return machine_busy_seconds() - self.machine_started - ours

    def spent_ms(self, count: int) -> dict[str, float]:
        """Milliseconds of CPU per unit of work, by process name."""
        return {
            name: 1000 * (cpu_seconds(pid, tree=tree) - self.started[name]) / max(count, 1)
            for name, (pid, tree) in self.pids.items()
        }

    def per(self, count: int) -> str:
        """'intake 2.41 ms, postgres 1.02 ms, ...' per unit of work."""
        return ", ".join(f"{name} {ms:.2f} ms" for name, ms in self.spent_ms(count).items())
