"""Who is signed in: the person's bearer token and role, sealed (encrypted and authenticated)
in an HttpOnly, SameSite=Strict cookie, so the token never appears in a page or a URL and
any console replica can read it. Also the check that a POST came from the console itself."""

import base64
import hashlib
import json
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken

SESSION_COOKIE = "rujuk_session"
LANGUAGE_COOKIE = "lang"


@dataclass(frozen=True)
class Session:
    token: str
    token_id: str
    role: str
    agency_id: str | None


class SessionSealer:
    def __init__(self, secret: str, max_age_seconds: int) -> None:
        if len(secret) < 16:
            raise ValueError("CONSOLE_SESSION_SECRET must be set (16 characters or more)")
        # Fernet wants 32 url-safe base64 bytes; any secret string is stretched to that.
        key = base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
        self._fernet = Fernet(key)
        self.max_age_seconds = max_age_seconds

    def seal(self, session: Session) -> str:
        return self._fernet.encrypt(json.dumps(asdict(session)).encode()).decode()

    def open(self, sealed: str | None) -> Session | None:
        """The session, or None when the cookie is missing, forged, altered or too old."""
        if not sealed:
            return None
        try:
            plain = self._fernet.decrypt(sealed.encode(), ttl=self.max_age_seconds)
            return Session(**json.loads(plain))
        except (InvalidToken, ValueError, TypeError):
            return None


def same_origin(origin: str | None, referer: str | None, host: str | None) -> bool:
    """A state-changing request must say it comes from a page of this console: by its
    Origin header (every current browser sends it on a POST), else its Referer."""
    claimed = origin if origin and origin != "null" else referer
    if not claimed or not host:
        return False
    return urlsplit(claimed).netloc.lower() == host.lower()
