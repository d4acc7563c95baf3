"""The console's session store in a dict: what ``console.store.PostgresSessions`` answers,
for tests of pages without PostgreSQL. ``tests/integration/test_console_sessions.py`` holds
both to the same specification."""

from datetime import datetime

from console.session import EndReason, SessionRecord


class MemorySessions:
    def __init__(self) -> None:
        self.rows: dict[bytes, SessionRecord] = {}

    async def add(self, record: SessionRecord) -> None:
        if record.key in self.rows:
            raise ValueError("a session with this key exists")
        self.rows[record.key] = record

    async def find(self, key: bytes) -> SessionRecord | None:
        return self.rows.get(key)

    async def end(self, key: bytes, reason: EndReason, at: datetime) -> bool:
        row = self.rows.get(key)
        if row is None or row.ended_at is not None:
            return False
        self.rows[key] = row.ended(reason, at)
        return True

    async def end_all_of_token(self, token_id: str, reason: EndReason, at: datetime) -> int:
        open_ones = [r for r in self.rows.values() if r.token_id == token_id and not r.ended_at]
        for row in open_ones:
            self.rows[row.key] = row.ended(reason, at)
        return len(open_ones)

    async def delete_ended_before(self, cutoff: datetime) -> int:
        old = [
            key
            for key, row in self.rows.items()
            if (row.ended_at is not None and row.ended_at < cutoff) or row.expires_at < cutoff
        ]
        for key in old:
            del self.rows[key]
        return len(old)
