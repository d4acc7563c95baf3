"""`rujuk up`'s supervisor: a process of the stack that exits (a service, or the embedded NATS
or PostgreSQL) is started again on the same port with the same data, after a backoff that
starts under a second; one that keeps crashing is reported loudly and retried at the capped
backoff, while everything else keeps serving.

A crash loop is said three ways: a log line (with the log file to read), the metrics
``rujuk_process_*`` that the supervisor serves on a loopback port (recorded in the stack's
connection.json as RUJUK_UP_METRICS_URL), and a banner on every console page: the supervisor
keeps a small status file (``Stack.supervision_file``: no secret, no identifying data) that
the console reads."""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from rujuk.stack import Stack, StackError
from rujuk_runtime.embedded import EmbeddedServerError
from rujuk_runtime.private_files import write_private

METRICS_URL = "RUJUK_UP_METRICS_URL"  # in connection.json


@dataclass
class Backoff:
    """When to restart a process that exited, and whether it is crash-looping."""

    first_seconds: float = 0.5
    cap_seconds: float = 30.0
    window_seconds: float = 60.0
    loop_after: int = 5  # exits within the window that make a crash loop
    settle_seconds: float = 10.0  # up this long after a crash loop: it is back
    exits: dict[str, list[float]] = field(default_factory=dict)

    def exited(self, name: str, now: float) -> float:
        """Record an exit; the seconds to wait before starting it again."""
        recent = [t for t in self.exits.get(name, []) if now - t < self.window_seconds]
        self.exits[name] = [*recent, now]
        return float(min(self.cap_seconds, self.first_seconds * 2 ** len(recent)))

    def looping(self, name: str, now: float) -> bool:
        recent = [t for t in self.exits.get(name, []) if now - t < self.window_seconds]
        return len(recent) >= self.loop_after


class Metrics:
    """What the supervisor sees, for Prometheus: a registry of its own (not the process's
    default one), so that two supervisors in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.restarts = Counter(
            "rujuk_process_restarts",
            "Times the supervisor started a process of the stack again",
            ["process"],
            registry=self.registry,
        )
        self.crash_looping = Gauge(
            "rujuk_process_crash_looping",
            "1 while the process keeps crashing (Backoff.loop_after exits within the window)",
            ["process"],
            registry=self.registry,
        )
        self.up = Gauge(
            "rujuk_process_up", "1 while the process runs", ["process"], registry=self.registry
        )
        self.server: WSGIServer | None = None

    def serve(self) -> str:
        """Serve /metrics on a free loopback port; its URL."""
        server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.server = server
        return f"http://127.0.0.1:{server.server_port}/metrics"

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@dataclass
class Supervisor:
    """Call ``check`` every fraction of a second; it returns what to tell the person."""

    stack: Stack
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.monotonic
    due: dict[str, float] = field(default_factory=dict)  # name -> when to start it again
    restarts: dict[str, int] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)  # name -> its last restart
    looping_since: dict[str, datetime] = field(default_factory=dict)  # crash-looping ones
    metrics: Metrics = field(default_factory=Metrics)

    def processes(self) -> list[str]:
        """Every process the stack runs (servers first)."""
        servers = [
            n for n, s in (("nats", self.stack.nats), ("postgres", self.stack.postgres)) if s
        ]
        return servers + list(self.stack.services)

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
        exited = self.exited()
        for name in exited:
            if name in self.due:
                continue
            delay = self.backoff.exited(name, now)
            self.due[name] = now + delay
            said.append(
                f"{name} berhenti; dinyalakan lagi dalam {delay:.1f} s / "
                f"{name} exited; starting it again in {delay:.1f} s"
            )
            if self.backoff.looping(name, now):
                self.looping_since.setdefault(name, datetime.now(UTC))
                said.append(
                    f"PERINGATAN: {name} terus mogok ({self.backoff.loop_after}x dalam "
                    f"{self.backoff.window_seconds:.0f} s); lihat lognya / WARNING: {name} keeps "
                    f"crashing ({self.backoff.loop_after} times in "
                    f"{self.backoff.window_seconds:.0f} s); see its log: {self._log_of(name)}"
                )
        for name, when in sorted(self.due.items(), key=lambda item: item[1]):
            if when <= self.clock():
                said.append(self._restart(name))
        for name in sorted(self.looping_since):
            running_for = self.clock() - self.started_at.get(name, self.clock())
            if (
                name not in exited
                and name not in self.due
                and running_for >= self.backoff.settle_seconds
            ):
                del self.looping_since[name]
                said.append(
                    f"{name} berjalan lagi {running_for:.0f} s tanpa mogok / "
                    f"{name} is back: running {running_for:.0f} s without crashing"
                )
        self._measure(exited)
        if said:
            self.publish()
        return said

    def _measure(self, exited: list[str]) -> None:
        for name in self.processes():
            self.metrics.up.labels(name).set(0 if name in exited else 1)
            self.metrics.crash_looping.labels(name).set(1 if name in self.looping_since else 0)
            self.metrics.restarts.labels(name).inc(0)  # shown from 0, before any restart

    def status(self) -> dict[str, Any]:
        """What the status file holds: per process whether it runs, its restarts and, while it
        crash-loops, since when and the log to read. No secret, no identifying data."""
        exited = set(self.exited())
        return {
            "written_at": datetime.now(UTC).isoformat(),
            "processes": {
                name: {
                    "up": name not in exited,
                    "restarts": self.restarts.get(name, 0),
                    "crash_looping": name in self.looping_since,
                    "since": since.isoformat() if (since := self.looping_since.get(name)) else None,
                    "log": self._log_of(name),
                }
                for name in self.processes()
            },
        }

    def publish(self) -> None:
        """Write the status file for the console (replaced whole: never read half-written)."""
        write_private(self.stack.supervision_file, json.dumps(self.status()))

    def serve_metrics(self) -> str:
        url = self.metrics.serve()
        self.stack.connection_extra[METRICS_URL] = url
        return url

    def close(self) -> None:
        """Stop serving the metrics and remove the status file (no stale banner next run)."""
        self.metrics.close()
        self.stack.supervision_file.unlink(missing_ok=True)

    def _restart(self, name: str) -> str:
        del self.due[name]
        self.restarts[name] = self.restarts.get(name, 0) + 1
        self.metrics.restarts.labels(name).inc()
        self.started_at[name] = self.clock()
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


def start_supervised(
    stack: Stack, backoff: Backoff | None = None, timeout: float = 60
) -> Supervisor:
    """What `rujuk up` does: the metrics served, the stack started (connection.json naming the
    metrics' URL), the status file written; the caller then calls ``check`` until it stops,
    and ``close`` after ``stack.stop()``. On a failure to start, everything is stopped."""
    supervisor = Supervisor(stack, backoff or Backoff())
    stack.supervision_file.unlink(missing_ok=True)  # a run killed before it could remove it
    try:
        supervisor.serve_metrics()
        stack.start(timeout)
        supervisor.publish()
    except BaseException:
        stack.stop()
        supervisor.close()
        raise
    return supervisor
