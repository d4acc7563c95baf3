"""Each stream's retention: every stream has one, each keeps messages longer than the duplicate
window and its readers' catch-up needs, and together they fit in the store the shipped
nats-server configurations give JetStream (a stream whose max_bytes does not fit is refused)."""

import re
from pathlib import Path

import pytest
from nats.js.api import DiscardPolicy

from rujuk_contracts import subjects
from rujuk_runtime.bus import (
    DAY_SECONDS,
    DUPLICATE_WINDOW_SECONDS,
    STREAM_RETENTION,
    stream_configs,
)
from rujuk_runtime.nats_auth import RUJUK_STREAMS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SHIPPED_NATS_CONFIGS = (
    DEPLOY / "systemd" / "nats-server.conf",
    DEPLOY / "nats" / "nats-server.conf",
    DEPLOY / "nats" / "cluster" / "node.conf",
)
UNITS = {"MB": 1024**2, "GB": 1024**3}


def max_file_store(config: Path) -> int:
    found = re.search(r"max_file_store:\s*(\d+)\s*(MB|GB)", config.read_text())
    assert found, f"{config} gives JetStream no max_file_store"
    return int(found[1]) * UNITS[found[2]]


def test_every_stream_rujuk_makes_has_a_retention() -> None:
    assert set(STREAM_RETENTION) == set(RUJUK_STREAMS)
    for config in stream_configs(1):
        assert (config.max_age or 0) > DUPLICATE_WINDOW_SECONDS, config.name
        assert (config.max_bytes or 0) > 0, config.name


def test_a_full_stream_refuses_new_messages_rather_than_drop_unread_ones() -> None:
    for config in stream_configs(3):
        assert config.discard == DiscardPolicy.NEW, config.name
        assert config.num_replicas == 3


def test_events_outlive_a_month_of_nightly_backups_and_a_partners_feed_a_month() -> None:
    """A database restored from any backup of the last month finds in RUJUK_EVENTS every event
    after it (docs/operations.md, "Retention")."""
    events = STREAM_RETENTION[subjects.EVENTS_STREAM]
    assert events.max_age_days >= 60
    assert STREAM_RETENTION[subjects.PARTNER_STREAM].max_age_days >= 14
    assert STREAM_RETENTION[subjects.REPLAY_STREAM].max_age_seconds >= 7 * DAY_SECONDS


@pytest.mark.parametrize("config", SHIPPED_NATS_CONFIGS, ids=lambda p: p.parent.name)
def test_the_streams_limits_fit_in_the_store_each_shipped_server_gives_jetstream(
    config: Path,
) -> None:
    # Each node of a cluster keeps a replica of every stream: the sum is per node.
    reserved = sum(retention.max_bytes for retention in STREAM_RETENTION.values())
    assert reserved <= 0.9 * max_file_store(config)
