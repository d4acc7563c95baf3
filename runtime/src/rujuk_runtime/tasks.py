"""The background loops of a service (the outbox relay, a pull consumer, routing's deadline
watcher, notify's delivery worker, audit's checkpointer): each runs as one asyncio task that is
started once, woken when there is work, and stopped cleanly."""

import asyncio
from abc import ABC, abstractmethod
from typing import Any

RECANCEL_SECONDS = 1.0


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended; nothing for None. An exception the task
    ended with is raised here.

    The cancellation is sent again every ``RECANCEL_SECONDS`` until the task ends: on Python
    3.11 ``asyncio.wait_for`` swallows a cancellation that arrives as its inner wait finishes
    (CPython gh-86296), and nats-py's ``fetch`` waits that way, so a pull loop could take one
    cancellation for a timeout and carry on, and its stop would wait for ever."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_SECONDS)
    if not task.cancelled() and (error := task.exception()) is not None:
        raise error


class BackgroundTask(ABC):
    """A loop (``run``) in a task of its own. ``stop`` cancels it, waits for it to end, then
    calls ``stopped`` so the subclass can release what it holds (a connection, a last
    checkpoint). A stopped task may be started again."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.stopped()

    @property
    def woken(self) -> bool:
        """Whether a wake is waiting to be taken."""
        return self._wakeup.is_set()

    def wake(self) -> None:
        """There is work: end the current ``wait_for_wake`` at once."""
        self._wakeup.set()

    def clear_wake(self) -> None:
        """Forget earlier wakes: call it before looking for work, so that a wake arriving
        during the look is kept for the next wait."""
        self._wakeup.clear()

    async def wait_for_wake(self, timeout: float) -> bool:
        """Wait until woken or ``timeout`` seconds passed; True when woken."""
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @abstractmethod
    async def run(self) -> None:
        """The loop; it runs until cancelled."""

    async def stopped(self) -> None:  # noqa: B027 - nothing to release by default
        """After the loop has ended: release what it held."""
