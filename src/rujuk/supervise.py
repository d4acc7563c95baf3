"""`rujuk up`'s supervisor: a process of the stack that exits (a service, or the embedded NATS
or PostgreSQL) is started again on the same port with the same data, after a backoff that
starts under a second; one that keeps crashing is reported loudly and retried at the capped
backoff, while everything else keeps serving."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rujuk.stack import Stack, StackError
from rujuk_runtime.embedded import EmbeddedServerError


@dataclass
class Backoff:
    """When to restart a process that exited, and whether it is crash-looping."""

    first_seconds: float = 0.5
    cap_seconds: float = 30.0
    window_seconds: float = 60.0
    loop_after: int = 5  # exits within the window that make a crash loop
    exits: dict[str, list[float]] = field(default_factory=dict)

    def exited(self, name: str, now: float) -> float:
        """Record an exit; the seconds to wait before starting it again."""
        recent = [t for t in self.exits.get(name, []) if now - t < self.window_seconds]
        self.exits[name] = [*recent, now]
        return float(min(self.cap_seconds, self.first_seconds * 2 ** len(recent)))

    def looping(self, name: str, now: float) -> bool:
        recent = [t for t in self.exits.get(name, []) if now - t < self.window_seconds]
        return len(recent) >= self.loop_after


@dataclass
class Supervisor:
    """Call ``check`` every fraction of a second; it returns what to tell the person."""

    stack: Stack
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.monotonic
    due: dict[str, float] = field(default_factory=dict)  # name -> when to start it again
    restarts: dict[str, int] = field(default_factory=dict)

    def exited(self) -> list[str]:
        """The stack's processes that are not running (servers first: services need them)."""
        found = []
        for name, server in (("nats", self.stack.nats), ("postgres", self.stack.postgres)):
            if server is not None and (server.process is None or server.process.poll() is not None):
                found.append(name)
        return found + self.stack.exited_services()

    def check(self) -> list[str]:
        said = []
        now = self.clock()
        for name in self.exited():
            if name in self.due:
                continue
            delay = self.backoff.exited(name, now)
            self.due[name] = now + delay
            said.append(
                f"{name} berhenti; dinyalakan lagi dalam {delay:.1f} s / "
                f"{name} exited; starting it again in {delay:.1f} s"
            )
            if self.backoff.looping(name, now):
                said.append(
                    f"PERINGATAN: {name} terus mogok ({self.backoff.loop_after}x dalam "
                    f"{self.backoff.window_seconds:.0f} s); lihat lognya / WARNING: {name} keeps "
                    f"crashing ({self.backoff.loop_after} times in "
                    f"{self.backoff.window_seconds:.0f} s); see its log: {self._log_of(name)}"
                )
        for name, when in sorted(self.due.items(), key=lambda item: item[1]):
            if when <= self.clock():
                said.append(self._restart(name))
        return said

    def _restart(self, name: str) -> str:
        del self.due[name]
        self.restarts[name] = self.restarts.get(name, 0) + 1
        try:
            if name == "nats" and self.stack.nats is not None:
                self.stack.nats.start()
            elif name == "postgres" and self.stack.postgres is not None:
                self.stack.postgres.start()
            else:
                self.stack.start_service(name)
        except (StackError, EmbeddedServerError, OSError) as exc:
            self.due[name] = self.clock() + self.backoff.exited(name, self.clock())
            return f"{name} gagal dinyalakan / could not start {name}: {exc}"
        port = self._port_of(name)
        return f"{name} dinyalakan lagi / started again on port {port}"

    def _port_of(self, name: str) -> int | None:
        if name == "nats" and self.stack.nats is not None:
            return self.stack.nats.port
        if name == "postgres" and self.stack.postgres is not None:
            return self.stack.postgres.port
        service = self.stack.services.get(name)
        return service.port if service else None

    def _log_of(self, name: str) -> str:
        if name == "nats" and self.stack.nats is not None:
            return str(self.stack.nats.folder / "nats-server.log")
        if name == "postgres" and self.stack.postgres is not None:
            return str(self.stack.postgres.folder / "postgres.log")
        service = self.stack.services.get(name)
        return str(service.log_file) if service else str(self.stack.folder / "logs")
