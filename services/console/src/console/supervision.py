"""What `rujuk up`'s supervisor says about the stack's processes (its status file, see
``rujuk.supervise``), read into what the console's banner shows: each process that is
crash-looping, since when, and the log file to read. Logic only: the door reads the file."""

import json
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class CrashLoop:
    process: str
    since: datetime | None
    log: str


def crash_loops(text: str | None) -> list[CrashLoop]:
    """The crash-looping processes the status file names; none for no file, or one that
    cannot be read (a banner is help, never a reason for a page to fail)."""
    if not text:
        return []
    try:
        processes = json.loads(text).get("processes", {})
        found = []
        for name, status in sorted(processes.items()):
            if status.get("crash_looping"):
                since = status.get("since")
                found.append(
                    CrashLoop(
                        str(name),
                        datetime.fromisoformat(since) if isinstance(since, str) else None,
                        str(status.get("log") or ""),
                    )
                )
        return found
    except (ValueError, AttributeError, TypeError):
        return []
