"""Who is signed in. The browser holds a cookie sealed (encrypted and authenticated) with the
console's secret: a random session id and the person's bearer token, so the token never
appears in a page, a URL or the database. The server holds the session itself (who, until
when, whether it ended), keyed by the id's sha256, so signing out or revoking the token ends
it wherever the cookie went. Also the check that a POST came from the console itself."""

import base64
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken

SESSION_COOKIE = "rujuk_session"
LANGUAGE_COOKIE = "lang"
SESSION_ID_BYTES = 32  # 256 random bits
# Ended and expired sessions are kept this long (what ended, and why, for ops), then deleted.
KEEP_ENDED = timedelta(days=1)


@dataclass(frozen=True)
class Session:
    """The signed-in person, as pages use it. ``districts``: those an operator, coordinator
    or auditor token serves (sorted), None for a province-level token and for a partner
    (bound to ``agency_id``), as intake's ``GET /v1/whoami`` said at sign-in."""

    token: str
    token_id: str
    role: str
    agency_id: str | None
    districts: tuple[str, ...] | None = None
    expires_at: datetime | None = None  # when the session ends at the latest


@dataclass(frozen=True)
class SessionCookie:
    """What the sealed cookie holds."""

    session_id: str
    token: str


class EndReason(StrEnum):
    SIGNED_OUT = "signed_out"
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 (a reason, not a secret)


@dataclass(frozen=True)
class SessionRecord:
    """A session as the server keeps it: the id's sha256, never the id or the token."""

    key: bytes
    token_id: str
    role: str
    agency_id: str | None
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None
    ended_reason: EndReason | None = None
    districts: tuple[str, ...] | None = None  # as in Session

    def active(self, now: datetime) -> bool:
        return self.ended_at is None and now < self.expires_at

    def ended(self, reason: EndReason, now: datetime) -> "SessionRecord":
        """Ended now, unless it had ended already (the first end and its reason stay)."""
        return self if self.ended_at else replace(self, ended_at=now, ended_reason=reason)


def new_session_id() -> str:
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def session_key(session_id: str) -> bytes:
    """What the server stores and looks a session up by."""
    return hashlib.sha256(session_id.encode()).digest()


class SessionSealer:
    def __init__(self, secret: str, max_age_seconds: int) -> None:
        if len(secret) < 16:
            raise ValueError("CONSOLE_SESSION_SECRET must be set (16 characters or more)")
        # Fernet wants 32 url-safe base64 bytes; any secret string is stretched to that.
        key = base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
        self._fernet = Fernet(key)
        self.max_age_seconds = max_age_seconds

    def seal(self, cookie: SessionCookie) -> str:
        return self._fernet.encrypt(json.dumps(asdict(cookie)).encode()).decode()

    def open(self, sealed: str | None) -> SessionCookie | None:
        """What the cookie holds, or None when it is missing, forged, altered, too old or of
        an earlier shape (a cookie from before server-side sessions opens nothing)."""
        if not sealed:
            return None
        try:
            plain = self._fernet.decrypt(sealed.encode(), ttl=self.max_age_seconds)
            cookie = SessionCookie(**json.loads(plain))
        except (InvalidToken, ValueError, TypeError):
            return None
        if not isinstance(cookie.session_id, str) or not isinstance(cookie.token, str):
            return None
        return cookie


class TokenChecks:
    """When each token was last found valid by intake, in this process: a token is asked
    about again once ``interval`` seconds have passed. Times are the caller's monotonic clock.
    """

    MAX_REMEMBERED = 10_000

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._checked: dict[str, float] = {}

    def due(self, token_id: str, now: float) -> bool:
        checked = self._checked.get(token_id)
        return checked is None or now - checked >= self.interval

    def checked(self, token_id: str, now: float) -> None:
        if self.interval <= 0:
            return
        if len(self._checked) >= self.MAX_REMEMBERED:
            self._checked = {t: at for t, at in self._checked.items() if now - at < self.interval}
            if len(self._checked) >= self.MAX_REMEMBERED:
                self._checked.clear()
        self._checked[token_id] = now

    def forget(self, token_id: str) -> None:
        self._checked.pop(token_id, None)


def same_origin(origin: str | None, referer: str | None, host: str | None) -> bool:
    """A state-changing request must say it comes from a page of this console: by its
    Origin header (every current browser sends it on a POST), else its Referer."""
    claimed = origin if origin and origin != "null" else referer
    if not claimed or not host:
        return False
    return urlsplit(claimed).netloc.lower() == host.lower()
