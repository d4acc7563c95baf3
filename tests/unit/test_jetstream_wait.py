"""A starting service asks JetStream again while it cannot answer yet, and only then; the
real case (a cluster without its leader) is in tests/integration/test_nats_cluster.py."""

import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import BadRequestError, ServiceUnavailableError

from rujuk_runtime.bus import when_jetstream_answers


class Answers:
    """A JetStream request that fails with each of ``failures`` in turn, then answers."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.asked = 0

    async def __call__(self) -> str:
        self.asked += 1
        if self.failures:
            raise self.failures.pop(0)
        return "created"


async def test_not_ready_answers_are_asked_again_until_one_succeeds() -> None:
    request = Answers(NatsTimeoutError(), NoRespondersError(), ServiceUnavailableError())
    assert await when_jetstream_answers(request, "stream X", wait=10) == "created"
    assert request.asked == 4


async def test_a_refusal_is_raised_at_once() -> None:
    request = Answers(BadRequestError())
    with pytest.raises(BadRequestError):
        await when_jetstream_answers(request, "stream X", wait=10)
    assert request.asked == 1


async def test_no_answer_within_the_wait_is_raised() -> None:
    request = Answers(*[NatsTimeoutError() for _ in range(100)])
    with pytest.raises(NatsTimeoutError):
        await when_jetstream_answers(request, "stream X", wait=1)
    assert 2 <= request.asked <= 4  # 0.25 + 0.5 s of backoff fit in the second
