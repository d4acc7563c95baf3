"""The console's session store says "unavailable" for every way a database that goes away
shows itself, so pages answer 503 with a plain message instead of a 500."""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from console.session import new_session_id, session_key
from console.store import PostgresSessions, SessionsUnavailable


class BrokenConnection:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def fetchrow(self, *_: Any) -> None:
        raise self.error


class PoolOfBrokenConnections:
    def __init__(self, error: Exception) -> None:
        self.error = error

    @contextlib.asynccontextmanager
    async def acquire(self, timeout: float) -> AsyncIterator[BrokenConnection]:
        yield BrokenConnection(self.error)


@pytest.mark.parametrize(
    "error",
    [
        # A connection the server dropped mid-query (seen when a test stopped the database).
        asyncpg.exceptions.InternalClientError("cannot switch to state 11"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        ConnectionRefusedError("refused"),
        TimeoutError(),
    ],
)
async def test_a_database_that_goes_away_mid_query_is_unavailable(error: Exception) -> None:
    sessions = PostgresSessions("postgresql://unused")
    sessions._pool = PoolOfBrokenConnections(error)  # type: ignore[assignment]
    with pytest.raises(SessionsUnavailable, match=type(error).__name__):
        await sessions.find(session_key(new_session_id()))
