"""A service's stop ends even when one of its steps never does, or fails."""

import asyncio

import pytest

from rujuk_runtime import service


async def test_a_stop_step_that_never_ends_is_abandoned_and_the_stop_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "STOP_STEP_SECONDS", 0.05)
    never = asyncio.get_running_loop().create_future()
    finished: list[str] = []

    async def quick() -> None:
        finished.append("quick")

    async with asyncio.timeout(2):
        await service._bounded(never, "a step that hangs")
        await service._bounded(quick(), "the next step")
    assert finished == ["quick"]
    assert never.cancelled()


async def test_a_stop_step_that_fails_is_logged_and_the_stop_goes_on() -> None:
    finished: list[str] = []

    async def broken() -> None:
        raise RuntimeError("rusak untuk uji / broken for the test")

    async def quick() -> None:
        finished.append("quick")

    await service._bounded(broken(), "a step that fails")
    await service._bounded(quick(), "the next step")
    assert finished == ["quick"]
