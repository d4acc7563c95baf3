"""How long a service trusts what it looked up about a token: a verified token is remembered
for the cache time and no longer; an unknown one is never remembered; a token event clears."""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from rujuk_runtime.access import Principal, Role, TokenVerifier, hash_secret

COORDINATOR = Principal("tok-000000000001", Role.COORDINATOR, None, None)


class FakePool:
    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[object]:
        yield object()


class Tokens:
    """What the projection holds, and a clock the test moves."""

    def __init__(self) -> None:
        self.live: dict[bytes, Principal] = {hash_secret("secret-c"): COORDINATOR}
        self.now = 1000.0

    async def lookup(self, _conn: Any, digest: bytes) -> Principal | None:
        return self.live.get(digest)

    def verifier(self, ttl: float) -> TokenVerifier:
        return TokenVerifier(
            FakePool,  # type: ignore[arg-type]
            ttl=ttl,
            lookup=self.lookup,
            clock=lambda: self.now,
        )


async def test_a_verified_token_is_looked_up_once_per_cache_time() -> None:
    tokens = Tokens()
    verifier = tokens.verifier(ttl=5)
    for _ in range(100):
        assert await verifier.principal("secret-c") == COORDINATOR
    assert verifier.lookups == 1
    tokens.now += 5.01
    assert await verifier.principal("secret-c") == COORDINATOR
    assert verifier.lookups == 2


async def test_a_revoked_token_works_at_most_until_the_cache_time_runs_out() -> None:
    tokens = Tokens()
    verifier = tokens.verifier(ttl=5)
    assert await verifier.principal("secret-c") == COORDINATOR
    tokens.live.clear()  # revoked in the projection
    tokens.now += 4.9
    assert await verifier.principal("secret-c") == COORDINATOR  # still remembered
    tokens.now += 0.2
    assert await verifier.principal("secret-c") is None


async def test_a_projected_token_event_makes_the_process_forget_at_once() -> None:
    tokens = Tokens()
    verifier = tokens.verifier(ttl=5)
    assert await verifier.principal("secret-c") == COORDINATOR
    tokens.live.clear()
    verifier.forget()
    assert await verifier.principal("secret-c") is None


async def test_an_unknown_token_is_not_remembered_so_a_new_one_works_once_projected() -> None:
    tokens = Tokens()
    verifier = tokens.verifier(ttl=5)
    assert await verifier.principal("secret-new") is None
    tokens.live[hash_secret("secret-new")] = COORDINATOR  # its token.issued arrives
    assert await verifier.principal("secret-new") == COORDINATOR


async def test_no_cache_time_looks_every_token_up() -> None:
    tokens = Tokens()
    verifier = tokens.verifier(ttl=0)
    for _ in range(3):
        await verifier.principal("secret-c")
    assert verifier.lookups == 3
