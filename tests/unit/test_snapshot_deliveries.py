"""What a snapshot's deliver subject brings, read as nats-server sends it: chunks numbered in
their replies, the end (empty, or status 204), error statuses; and a snapshot file's S2 frames."""

import io

import pytest

from rujuk.snapshots import ChunkTally, Delivery, SnapshotError, s2_frames_problem

ACK = "$JS.SNAPSHOT.ACK.RUJUK_PARTNER.aBcDeF123"


def _numbered(tally: ChunkTally, sizes: list[int]) -> None:
    for index, size in enumerate(sizes, start=1):
        assert tally.read(b"x" * size, f"{ACK}.{size}.{index}", None) is Delivery.CHUNK


def test_full_chunks_then_a_short_one_then_status_204_is_a_whole_snapshot() -> None:
    tally = ChunkTally("RUJUK_PARTNER")
    _numbered(tally, [1024, 1024])
    assert tally.read(b"x" * 10, "", None) is Delivery.CHUNK
    assert tally.read(b"", "", {"Status": "204"}) is Delivery.END
    assert (tally.chunks, tally.total_bytes) == (3, 2058)


def test_one_short_chunk_then_an_empty_message_is_a_whole_snapshot() -> None:
    tally = ChunkTally("RUJUK_DLQ")
    assert tally.read(b"x" * 10, "", None) is Delivery.CHUNK
    assert tally.read(b"", "", None) is Delivery.END


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({"Status": "408", "Description": "No Flow Response"}, "408 No Flow Response"),
        ({"Status": "408", "Description": "No Interest"}, "408 No Interest"),
        ({"Status": "500", "Description": "unexpected EOF"}, "500 unexpected EOF"),
        ({"Status": "409"}, "409"),
    ],
)
def test_an_error_status_fails_the_snapshot_with_its_description(
    headers: dict[str, str], says: str
) -> None:
    tally = ChunkTally("RUJUK_PARTNER")
    _numbered(tally, [1024])
    with pytest.raises(SnapshotError, match=f"^snapshot of RUJUK_PARTNER: {says}$"):
        tally.read(b"", "", headers)


def test_a_flow_control_status_is_neither_data_nor_the_end() -> None:
    tally = ChunkTally("RUJUK_EVENTS")
    assert tally.read(b"", "_INBOX.fc", {"Status": "100"}) is Delivery.CONTROL
    assert tally.chunks == 0


def test_a_lost_chunk_is_noticed_by_the_next_ones_number() -> None:
    tally = ChunkTally("RUJUK_EVENTS")
    _numbered(tally, [1024])
    with pytest.raises(SnapshotError, match="chunk 3 came after chunk 1"):
        tally.read(b"x" * 1024, f"{ACK}.1024.3", None)


def test_a_chunk_of_another_size_than_the_server_sent_is_refused() -> None:
    tally = ChunkTally("RUJUK_EVENTS")
    with pytest.raises(SnapshotError, match="chunk 1 has 1000 bytes, the server sent 1024"):
        tally.read(b"x" * 1000, f"{ACK}.1024.1", None)


def test_no_chunk_may_follow_the_last_one() -> None:
    tally = ChunkTally("RUJUK_EVENTS")
    tally.read(b"x" * 10, "", None)
    with pytest.raises(SnapshotError, match="after the last one"):
        tally.read(b"x" * 10, "", None)


S2_START = b"\xff\x06\x00\x00S2sTwO"


def _frame(kind: int, data: bytes) -> bytes:
    return bytes([kind]) + len(data).to_bytes(3, "little") + data


def test_whole_s2_frames_pass() -> None:
    whole = S2_START + _frame(0x00, b"c" * 300) + _frame(0x01, b"u" * 70_000)
    assert s2_frames_problem(io.BytesIO(whole)) is None


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (S2_START + _frame(0x00, b"c" * 300)[:-1], "ends inside a frame"),
        (S2_START + _frame(0x00, b"c" * 300)[:2], "ends inside the header"),
        (b"\x1f\x8b gzip, not S2", "does not start as an S2 stream"),
        (b"", "does not start as an S2 stream"),
    ],
    ids=["cut-in-a-frame", "cut-in-a-header", "not-s2", "empty"],
)
def test_a_file_that_is_not_whole_s2_frames_is_named(content: bytes, says: str) -> None:
    assert says in (s2_frames_problem(io.BytesIO(content)) or "")
