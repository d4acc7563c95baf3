"""An ASGI middleware that refuses a request body before the app parses it: 415 unless a POST,
PUT or PATCH body is JSON, 413 past a size limit."""

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyGuard:
    """415 unless a POST body is JSON; 413 past ``max_body_bytes``, by Content-Length or, when
    none is sent (chunked), by counting the streamed body as the app reads it."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
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

    @property
    def _too_large(self) -> str:
        return f"isi terlalu besar / body larger than {self.max_body_bytes} bytes"


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)
