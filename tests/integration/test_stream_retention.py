"""The upgrade path of the streams' retention, on a real nats-server: streams an older rujuk
made without limits (and discarding old messages) take the current limits when a service
starts, and keep their messages."""

import nats
import pytest
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from rujuk_runtime.bus import (
    DUPLICATE_WINDOW_SECONDS,
    STREAM_RETENTION,
    STREAM_SUBJECTS,
    ensure_streams,
)

pytestmark = pytest.mark.integration


def as_an_older_rujuk_made_it(name: str) -> StreamConfig:
    """The configuration of rujuk before retention (only the replay stream had an age)."""
    return StreamConfig(
        name=name,
        subjects=[STREAM_SUBJECTS[name]],
        storage=StorageType.FILE,
        num_replicas=1,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
    )


async def test_streams_without_limits_take_them_at_start_and_keep_their_messages(
    clean_bus: str,
) -> None:
    connection = await nats.connect(clean_bus)
    try:
        js = connection.jetstream()
        for name, subject in STREAM_SUBJECTS.items():
            await js.add_stream(as_an_older_rujuk_made_it(name))
            await js.publish(subject.replace(">", "old.message"), b"{}")
            before = await js.stream_info(name)
            assert not before.config.max_age
            assert before.config.max_bytes in (None, -1)

        await ensure_streams(js)  # what every service does as it starts

        for name, retention in STREAM_RETENTION.items():
            after = await js.stream_info(name)
            assert after.config.max_age == retention.max_age_seconds, name
            assert after.config.max_bytes == retention.max_bytes, name
            assert after.config.discard == DiscardPolicy.NEW, name
            assert after.config.description == retention.description, name
            assert after.state.messages == 1, name  # kept: younger than the new max_age
        await ensure_streams(js)  # and again, as the next service starts: nothing changes
    finally:
        await connection.close()
