"""The pieces every service shares from rujuk_runtime: the background-task base, what a
message says about itself, and the body guard of an HTTP door."""

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel

from rujuk_runtime.body_guard import BodyGuard
from rujuk_runtime.messages import deliveries, message_id, stream_sequence
from rujuk_runtime.tasks import BackgroundTask, cancel_and_wait


class Ticker(BackgroundTask):
    """Counts its rounds; each round waits to be woken."""

    def __init__(self) -> None:
        super().__init__("uji-ticker")
        self.rounds = 0
        self.released = 0

    async def run(self) -> None:
        while True:
            self.clear_wake()
            self.rounds += 1
            await self.wait_for_wake(60)

    async def stopped(self) -> None:
        self.released += 1


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_background_task_runs_when_woken_and_releases_what_it_holds_at_stop() -> None:
    ticker = Ticker()
    ticker.start()
    await settle()
    assert (ticker.running, ticker.rounds) == (True, 1)
    ticker.wake()
    await settle()
    assert ticker.rounds == 2
    with pytest.raises(RuntimeError, match="uji-ticker is already running"):
        ticker.start()
    await ticker.stop()
    assert (ticker.running, ticker.released) == (False, 1)
    ticker.start()  # a stopped task may start again
    await settle()
    assert ticker.rounds == 3
    await ticker.stop()
    assert ticker.released == 2


async def test_a_wake_during_the_look_for_work_is_kept_for_the_next_wait() -> None:
    ticker = Ticker()
    ticker.clear_wake()
    ticker.wake()
    assert await ticker.wait_for_wake(0.01) is True
    ticker.clear_wake()
    assert await ticker.wait_for_wake(0.01) is False


async def test_a_task_that_swallows_a_cancellation_is_still_stopped() -> None:
    """As nats-py's fetch does on Python 3.11 when the cancellation meets its own timeout."""
    swallowed: list[bool] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)  # taken for a timeout: the loop goes on

    task = asyncio.create_task(stubborn())
    await settle()
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled()
    assert swallowed == [True]


async def test_the_error_a_task_ended_with_is_raised_by_its_stop() -> None:
    async def broken() -> None:
        raise RuntimeError("rusak untuk uji / broken for the test")

    task = asyncio.create_task(broken())
    await settle()
    with pytest.raises(RuntimeError, match="broken for the test"):
        await cancel_and_wait(task)


def jetstream_message(headers: dict[str, str] | None, sequence: int, delivered: int) -> Any:
    metadata = SimpleNamespace(
        stream="RUJUK_EVENTS",
        sequence=SimpleNamespace(stream=sequence),
        num_delivered=delivered,
    )
    return SimpleNamespace(headers=headers, metadata=metadata)


class NotFromJetStream:
    headers = None

    @property
    def metadata(self) -> Any:
        raise ValueError("not a JetStream message")


def test_a_message_is_named_by_its_publishers_id_else_by_its_place_in_the_stream() -> None:
    assert message_id(jetstream_message({"Nats-Msg-Id": "evt-1"}, 7, 1)) == "evt-1"
    assert message_id(jetstream_message(None, 7, 3)) == "RUJUK_EVENTS:7"
    assert stream_sequence(jetstream_message(None, 7, 3)) == 7
    assert deliveries(jetstream_message(None, 7, 3)) == 3


def test_a_message_not_from_jetstream_has_no_id_no_sequence_and_one_delivery() -> None:
    message: Any = NotFromJetStream()
    assert (message_id(message), stream_sequence(message), deliveries(message)) == (None, None, 1)


class Echo(BaseModel):
    text: str


router = APIRouter()


@router.post("/echo")
async def echo(body: Echo) -> Echo:
    return body


def guarded_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodyGuard, max_body_bytes=64)
    app.include_router(router)
    return app


async def post(content: bytes, content_type: str, *, chunked: bool = False) -> Any:
    transport = ASGITransport(app=guarded_app())
    async with AsyncClient(transport=transport, base_url="http://uji") as client:
        if chunked:

            async def chunks() -> Any:
                for start in range(0, len(content), 16):
                    yield content[start : start + 16]

            return await client.post(
                "/echo", content=chunks(), headers={"content-type": content_type}
            )
        return await client.post("/echo", content=content, headers={"content-type": content_type})


async def test_the_body_guard_takes_json_within_the_limit() -> None:
    response = await post(b'{"text": "contoh"}', "application/json; charset=utf-8")
    assert (response.status_code, response.json()) == (200, {"text": "contoh"})


async def test_the_body_guard_refuses_a_body_that_is_not_json_with_415() -> None:
    response = await post(b"text=contoh", "application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


async def test_the_body_guard_refuses_a_declared_or_streamed_body_past_its_limit_with_413() -> None:
    large = b'{"text": "' + b"x" * 100 + b'"}'
    declared = await post(large, "application/json")
    streamed = await post(large, "application/json", chunked=True)
    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert "64 bytes" in declared.json()["detail"]
