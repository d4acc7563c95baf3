"""An ASGI middleware that refuses a request body before the app parses it: 415 unless a POST,
PUT or PATCH body is JSON, 413 past a size limit."""

from collections.abc import Sequence

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyGuard:
    """415 unless a POST body is JSON; 413 past ``max_body_bytes``, by Content-Length or, when
    none is sent (chunked), by counting the streamed body as the app reads it.

    Given the app's ``routes``, it guards only requests that one of them takes (path and
    method): a PUT on a GET route is the app's to answer, 405 with ``Allow``, not a 415 about
    a body nobody would read."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, routes: Sequence[BaseRoute] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("POST", "PUT", "PATCH")
            or not self._taken(scope)
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.max_body_bytes:
            await _problem(413, self._too_large)(scope, receive, send)
            return
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if content_type.split(";")[0].strip().lower() != "application/json":
            await _problem(415, "kirim sebagai / send the body as application/json")(
                scope, receive, send
            )
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(413, self._too_large)  # FastAPI turns it into a 413
            return message

        await self.app(scope, counted, send)

    def _taken(self, scope: Scope) -> bool:
        """Whether a route takes this path with this method (without routes: every request)."""
        if self.routes is None:
            return True
        return any(route.matches(scope)[0] is Match.FULL for route in self.routes)

    @property
    def _too_large(self) -> str:
        return f"isi terlalu besar / body larger than {self.max_body_bytes} bytes"


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)
