"""Sign-ins: start one, find it again on every request, end it (signing out, a revoked token).

Orchestration only, over two ports the app wires in: where sessions are kept (``store.py``,
PostgreSQL) and intake's answer about a token (``GET /v1/whoami``, through ``upstream.py``).
"""

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from console.session import (
    KEEP_ENDED,
    EndReason,
    Session,
    SessionCookie,
    SessionRecord,
    SessionSealer,
    TokenChecks,
    new_session_id,
    session_key,
)
from rujuk_runtime.logs import get_logger

log = get_logger(__name__)

# Intake's verdict on a token: True valid, False refused (unknown or revoked), None no answer.
TokenCheck = Callable[[str], Awaitable[bool | None]]


class SessionRecords(Protocol):
    async def add(self, record: SessionRecord) -> None: ...

    async def find(self, key: bytes) -> SessionRecord | None: ...

    async def end(self, key: bytes, reason: EndReason, at: datetime) -> bool:
        """End one session; False when it had ended already or is not known."""
        ...

    async def end_all_of_token(self, token_id: str, reason: EndReason, at: datetime) -> int:
        """End every session still open with the token; how many."""
        ...

    async def delete_ended_before(self, cutoff: datetime) -> int:
        """Forget sessions that ended or expired before ``cutoff``; how many."""
        ...


class SignIns:
    """Every request's session is looked up where all console replicas keep them; its token
    is asked about at intake again once ``check_interval`` seconds have passed (in this
    process), so a revoked token's sessions end even on pages that call no service."""

    def __init__(
        self,
        records: SessionRecords,
        sealer: SessionSealer,
        check_token: TokenCheck,
        *,
        check_interval: float,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._records = records
        self._sealer = sealer
        self._check_token = check_token
        self._checks = TokenChecks(check_interval)
        self._now = now
        self._monotonic = monotonic

    @property
    def lifetime(self) -> timedelta:
        return timedelta(seconds=self._sealer.max_age_seconds)

    @property
    def max_age_seconds(self) -> int:
        """How long the session cookie is kept (the seal refuses it after that, too)."""
        return self._sealer.max_age_seconds

    async def start(
        self,
        token: str,
        token_id: str,
        role: str,
        agency_id: str | None,
        districts: Sequence[str] | None = None,
    ) -> str:
        """A new session for a token intake has just vouched for; the sealed cookie.
        ``districts``: those the token serves; None for a province-level token or a partner."""
        now = self._now()
        await self._records.delete_ended_before(now - KEEP_ENDED)
        session_id = new_session_id()
        await self._records.add(
            SessionRecord(
                key=session_key(session_id),
                token_id=token_id,
                role=role,
                agency_id=agency_id,
                created_at=now,
                expires_at=now + self.lifetime,
                districts=None if districts is None else tuple(sorted(set(districts))),
            )
        )
        self._checks.checked(token_id, self._monotonic())
        return self._sealer.seal(SessionCookie(session_id=session_id, token=token))

    async def resume(self, sealed: str | None) -> Session | None:
        """The signed-in person, or None: no cookie, a forged or old one, a session that ended
        or expired, or a token intake now refuses (which ends all of its sessions)."""
        cookie = self._sealer.open(sealed)
        if cookie is None:
            return None
        record = await self._records.find(session_key(cookie.session_id))
        if record is None or not record.active(self._now()):
            return None
        if self._checks.due(record.token_id, self._monotonic()):
            verdict = await self._check_token(cookie.token)
            if verdict is False:
                await self.token_refused(record.token_id)
                return None
            # No answer (intake down) lets the page go on: every service still checks the
            # token on each call, and intake is asked again after the interval.
            self._checks.checked(record.token_id, self._monotonic())
        return Session(
            token=cookie.token,
            token_id=record.token_id,
            role=record.role,
            agency_id=record.agency_id,
            districts=record.districts,
            expires_at=record.expires_at,
        )

    async def sign_out(self, sealed: str | None) -> bool:
        """End the cookie's session; False when there was none to end."""
        cookie = self._sealer.open(sealed)
        if cookie is None:
            return False
        return await self._records.end(
            session_key(cookie.session_id), EndReason.SIGNED_OUT, self._now()
        )

    async def token_refused(self, token_id: str) -> int:
        """A service refused the token (401): it was revoked, so every session signed in with
        it ends, not only the one that met the refusal."""
        self._checks.forget(token_id)
        reason = EndReason.TOKEN_REVOKED
        ended = await self._records.end_all_of_token(token_id, reason, self._now())
        log.info("sessions ended", token_id=token_id, reason=reason.value, sessions=ended)
        return ended
