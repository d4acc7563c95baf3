"""The background loops of a service (the outbox relay, a pull consumer, routing's deadline
watcher, notify's delivery worker, audit's checkpointer): each runs as one asyncio task that is
started once, woken when there is work, and stopped cleanly."""

import asyncio
import contextlib
from abc import ABC, abstractmethod


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait until it has ended; nothing for None."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


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
