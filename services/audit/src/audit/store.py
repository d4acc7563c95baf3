"""The ledger's PostgreSQL adapter: append an event, read a case, stream the whole chain."""

import base64
import contextlib
import hashlib
import operator
import struct
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from audit import chain, merkle, scope
from audit.chain import Entry, Head, UnrepresentableEvent
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.events import CASE_ID_PATTERN
from rujuk_contracts.ledger import Checkpoint
from rujuk_runtime.db import Connection, columns

SCHEMA = "audit"
# One key for every replica: whoever holds it owns the head until its transaction ends.
LEDGER_LOCK_KEY = int.from_bytes(hashlib.sha256(b"rujuk.audit.ledger").digest()[:8], "big") >> 1


async def lock_ledger(conn: Connection) -> None:
    """Hold the ledger's lock to the end of the transaction: nothing is appended meanwhile."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LEDGER_LOCK_KEY)


STREAM_CHUNK_SIZE = 10_000

# The ledger's columns are chain.Entry's fields, in its order (chain.ENTRY_FIELDS), with their
# SQL types here: rows read back make an Entry as they come (``_entry``).
_COLUMN_TYPES = dict(
    zip(
        chain.ENTRY_FIELDS,
        ("bigint", "text", "text", "text", "text", "timestamptz", "timestamptz", "json",
         "bytea", "bytea"),
        strict=True,
    )
)  # fmt: skip
_COLUMNS = ", ".join(_COLUMN_TYPES)
_row: Callable[[Entry], tuple[object, ...]] = operator.attrgetter(*_COLUMN_TYPES)

_INSERT_ENTRY = (
    f"INSERT INTO ledger ({_COLUMNS}) "  # noqa: S608
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(_COLUMN_TYPES) + 1))}) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING true"
)


class LedgerMissing(RuntimeError):
    """The database has no audit ledger yet."""

    def __init__(self) -> None:
        super().__init__(
            "this database has no audit ledger (schema 'audit'): has it been provisioned "
            "(`rujuk db provision`)?"
        )


async def connect(database_url: str) -> asyncpg.Connection:
    """A connection for reading the ledger, its SQL unqualified like the service's pool."""
    return await asyncpg.connect(
        database_url,
        server_settings={"search_path": SCHEMA, "application_name": "rujuk-audit-cli"},
    )


async def head(conn: Connection) -> Head:
    """The last entry's seq and hash, or the genesis head of an empty ledger."""
    row = await conn.fetchrow("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
    return chain.GENESIS if row is None else Head(row["seq"], bytes(row["hash"]))


async def append(
    conn: Connection, event: CloudEvent, *, recorded_at: datetime | None = None
) -> Entry | None:
    """Chain ``event`` onto the ledger and its tree; None if its id is already there (no seq
    is used). ``append_batch`` of one event: same transaction and lock rules."""
    result = await append_batch(conn, [event], recorded_at=recorded_at)
    if result.refused:
        raise UnrepresentableEvent(result.refused[0][1])
    return result.entries[0] if result.entries else None


def snapshot(conn: Connection) -> contextlib.AbstractAsyncContextManager[object]:
    """A read-only, repeatable-read transaction: every read inside sees the ledger as of one
    moment, even while the service appends."""
    return conn.transaction(isolation="repeatable_read", readonly=True)


def _in_scope(parameter: int) -> str:
    """SQL keeping the entries of the districts in ``$parameter`` (text[]; NULL keeps every
    entry), by the rule of ``audit.scope``: a case's by its id, an SOP's by its payload."""
    districts = f"${parameter}::text[]"
    case_types = " OR ".join(f"event_type LIKE '{prefix}%'" for prefix in scope.CASE_TYPE_PREFIXES)
    payload_types = " OR ".join(
        f"event_type LIKE '{prefix}%'" for prefix in scope.PAYLOAD_TYPE_PREFIXES
    )
    return (
        f"({districts} IS NULL "
        f"OR (({case_types}) AND case_id ~ '{CASE_ID_PATTERN}' "
        f"AND left(case_id, 4) = ANY({districts})) "
        f"OR (({payload_types}) AND event -> 'data' ->> 'district_code' = ANY({districts})))"
    )


_CASE_ENTRIES = (
    f"SELECT {_COLUMNS} FROM ledger "  # noqa: S608
    f"WHERE case_id = $1 AND {_in_scope(2)} ORDER BY seq"
)


async def case_entries(
    conn: Connection, case_id: str, districts: Sequence[str] | None = None
) -> list[Entry]:
    """Every entry of one case (or other subject), in ledger order; with ``districts``, only
    those of these districts (``audit.scope``)."""
    try:
        rows = await conn.fetch(
            _CASE_ENTRIES,
            case_id,
            None if districts is None else list(districts),
        )
    except asyncpg.UndefinedTableError as exc:
        raise LedgerMissing from exc
    return [_entry(row) for row in rows]


async def stream_entries(
    conn: asyncpg.Connection, *, chunk_size: int = STREAM_CHUNK_SIZE
) -> AsyncGenerator[list[Entry], None]:
    """The whole ledger in seq order, in chunks, through a server-side cursor.

    One read-only, repeatable-read transaction: the chain is read as of one moment even while
    the service appends. ``conn`` must not be in a transaction; close the iterator when done
    (``contextlib.aclosing``) if you stop early.
    """
    async with snapshot(conn):
        try:
            cursor = await conn.cursor(
                f"SELECT {_COLUMNS} FROM ledger ORDER BY seq"  # noqa: S608
            )
        except asyncpg.UndefinedTableError as exc:
            raise LedgerMissing from exc
        while rows := await cursor.fetch(chunk_size):
            yield [_entry(row) for row in rows]


# An entry's canonical body (chain.body_of) built by the server, for verification's hot
# path: asyncpg then decodes four columns instead of ten, and no datetime is made or
# formatted. Only for rows where plain concatenation *is* the canonical form: no string
# holds a character JSON escapes (a quote, a backslash, a control character; [:cntrl:]
# casts wider, which only sends more rows to the reference path) and both times lie in
# years 1-9999 (four-digit years, as Python writes them). Other rows get NULL and are built
# by chain.body_of from their Entry. Tests hold the two equal, time format included.
_UTC_TIME = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
_PLAIN = (
    r"""(actor || case_id || event_id || event_type) !~ '[[:cntrl:]"\\]' """
    "AND event_time >= '0001-01-01T00:00:00Z' AND event_time < '10000-01-01T00:00:00Z' "
    "AND recorded_at >= '0001-01-01T00:00:00Z' AND recorded_at < '10000-01-01T00:00:00Z'"
)
_BODY = (
    f"""CASE WHEN {_PLAIN} THEN '{{"actor":"' || actor || '","case_id":"' || case_id """
    """|| '","event":' || event::text || ',"event_id":"' || event_id """
    f"""|| '","event_time":"' || {_UTC_TIME.format("event_time")} """
    """|| '","event_type":"' || event_type """
    f"""|| '","recorded_at":"' || {_UTC_TIME.format("recorded_at")} """
    """|| '","seq":' || seq::text || '}' END"""
)


_BODIES = f"SELECT seq, prev_hash, hash, {_BODY} FROM ledger ORDER BY seq"  # noqa: S608
_BODIES_FROM = f"SELECT seq, prev_hash, hash, {_BODY} FROM ledger WHERE seq >= $1 ORDER BY seq"  # noqa: S608

BodyRow = tuple[int, bytes, bytes, bytes]  # seq, prev_hash, hash, canonical body


async def stream_bodies(
    conn: asyncpg.Connection, *, chunk_size: int = STREAM_CHUNK_SIZE
) -> AsyncGenerator[list[BodyRow], None]:
    """The whole ledger as ``(seq, prev_hash, hash, canonical body)`` rows, for
    ``ChainVerifier.feed_bodies``: what ``stream_entries`` gives, reduced to what the hash
    covers, at a fraction of the cost. Same snapshot and cursor rules as ``stream_entries``.
    """
    async with snapshot(conn):
        async for chunk in cursor_bodies(conn, chunk_size=chunk_size):
            yield chunk


async def cursor_bodies(
    conn: Connection, *, first_seq: int | None = None, chunk_size: int = STREAM_CHUNK_SIZE
) -> AsyncGenerator[list[BodyRow], None]:
    """``stream_bodies`` from ``first_seq`` on, in the caller's transaction. A row the server
    cannot build (see ``_PLAIN``) is built by ``chain.body_of`` from its Entry."""
    try:
        cursor = await (
            conn.cursor(_BODIES) if first_seq is None else conn.cursor(_BODIES_FROM, first_seq)
        )
    except asyncpg.UndefinedTableError as exc:
        raise LedgerMissing from exc
    while rows := await cursor.fetch(chunk_size):
        missing = [row[0] for row in rows if row[3] is None]
        fallback: dict[int, bytes] = {}
        if missing:  # rare: built by the reference code, from the same snapshot
            found = await conn.fetch(
                f"SELECT {_COLUMNS} FROM ledger WHERE seq = ANY($1::bigint[])",  # noqa: S608
                missing,
            )
            fallback = {row["seq"]: chain.body_of(_entry(row)) for row in found}
        yield [
            (seq, prev_hash, digest, fallback[seq] if body is None else body.encode())
            for seq, prev_hash, digest, body in rows
        ]


# PostgreSQL's binary COPY: a header, then per row a field count (int16; -1 ends the data)
# and per field a length (int32; -1 for NULL) and the value. Our four fields: int8 seq,
# bytea prev_hash and hash (32 bytes each, by the table's CHECKs), text body.
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_ROW = struct.Struct(">hiqi32si32si")


async def copy_bodies(conn: Connection, sink: Callable[[list[BodyRow]], bool]) -> int | None:
    """Stream the ledger's ``(seq, prev_hash, hash, body)`` rows to ``sink``, in order, with
    ``COPY (...) TO STDOUT (FORMAT binary)``: the server keeps sending while the rows are
    hashed, and nothing is decoded but the four fields. Run it in a repeatable-read
    transaction.

    Stops handing rows to ``sink`` once it returns False (it found a failure), or at the
    first row the server cannot build (``_PLAIN``) or whose shape is not the expected one,
    and returns that row's seq: read the rest with ``cursor_bodies(first_seq=...)`` in the
    same transaction. Returns None otherwise.
    """
    buffer = b""
    header_done = False
    stopped: int | None = None
    finished = False
    unwanted = False

    async def receive(data: bytes) -> None:
        nonlocal buffer, header_done, stopped, finished, unwanted
        if stopped is not None or finished or unwanted:
            return  # the rest of the COPY is read but not used
        buffer = buffer + data if buffer else bytes(data)
        offset = 0
        if not header_done:
            if len(buffer) < 19:
                return
            if buffer[:11] != _COPY_SIGNATURE:
                raise ValueError("unexpected COPY header")
            (extension,) = struct.unpack_from(">i", buffer, 15)
            offset = 19 + extension
            header_done = True
        rows: list[BodyRow] = []
        size = len(buffer)
        unpack = _COPY_ROW.unpack_from
        fixed = _COPY_ROW.size
        while True:
            if size - offset < 2:
                break
            if size - offset < fixed:
                if struct.unpack_from(">h", buffer, offset)[0] == -1:
                    finished = True
                    break
                break
            fields, seq_size, seq, prev_size, prev_hash, hash_size, digest, body_size = unpack(
                buffer, offset
            )
            if fields == -1:
                finished = True
                break
            if fields != 4 or seq_size != 8 or prev_size != 32 or hash_size != 32 or body_size < 0:
                if seq_size != 8:
                    raise ValueError("unexpected row in the ledger's COPY")
                stopped = seq
                break
            end = offset + fixed + body_size
            if end > size:
                break
            rows.append((seq, prev_hash, digest, buffer[offset + fixed : end]))
            offset = end
        buffer = buffer[offset:]
        if rows and not sink(rows):
            unwanted = True

    try:
        await conn.copy_from_query(_BODIES, output=receive, format="binary")
    except asyncpg.UndefinedTableError as exc:
        raise LedgerMissing from exc
    if stopped is None and not finished and not unwanted:
        raise ValueError("the ledger's COPY ended early")
    return stopped


def _entry(row: asyncpg.Record) -> Entry:
    return Entry(*row.values())  # the columns are selected in Entry's field order


@dataclass
class BatchAppend:
    """What one batch did: the entries it chained, the ids already there, the refused."""

    entries: list[Entry]
    duplicates: list[str]
    refused: list[tuple[int, str]]  # (index in the batch, reason)


async def append_batch(
    conn: Connection,
    events: Sequence[CloudEvent],
    *,
    recorded_at: datetime | None = None,
    texts: Sequence[str | UnrepresentableEvent] | None = None,
    position: tuple[str, int] | None = None,
) -> BatchAppend:
    """Chain ``events`` onto the ledger in order: one lock, one read (the ids already there and
    the head), one INSERT that also records ``position`` (stream, last sequence read), if given.

    An event whose id is already recorded (or repeats within the batch) takes no seq; one
    with no canonical form is refused with the reason and the rest go on. ``texts``, if
    given, are ``chain.canonical_event`` of each event made beforehand (or the error it
    raised), so that work need not wait for the lock (see ``chain.canonical_texts``). Runs in
    its own transaction or a savepoint of the caller's; the advisory lock is held to the end
    of the outermost transaction, as in ``append``.
    """
    moment = recorded_at or datetime.now(UTC)
    result = BatchAppend([], [], [])
    async with conn.transaction():
        await lock_ledger(conn)
        # Read after the lock (its own statement, so that this one's snapshot sees what the
        # writer before us committed): the ids already recorded, the head and the tree's
        # frontier, at once.
        found = await conn.fetchrow(_KNOWN_AND_HEAD, [event.id for event in events])
        assert found is not None
        known = set(found["known"])
        current = (
            chain.GENESIS if found["seq"] is None else Head(found["seq"], bytes(found["hash"]))
        )
        frontier = [bytes(digest) for digest in found["frontier"]]
        if len(frontier) != current.seq.bit_count():
            raise TreeNotBuilt(current.seq)
        size = current.seq
        leaves: list[bytes] = []
        for index, event in enumerate(events):
            if event.id in known:
                result.duplicates.append(event.id)
                continue
            try:
                text = None if texts is None else texts[index]
                if isinstance(text, UnrepresentableEvent):
                    raise text
                entry, body = chain.sealed_entry(current, event, moment, text=text)
            except UnrepresentableEvent as exc:
                result.refused.append((index, str(exc)))
                continue
            known.add(event.id)
            result.entries.append(entry)
            leaves.append(merkle.leaf_hash(body))
            current = Head(entry.seq, entry.hash)
        if result.entries:
            nodes, _ = merkle.append_leaves(frontier, size, leaves)
            rows = columns((_row(entry) for entry in result.entries), len(_COLUMN_TYPES))
            node_rows = columns(nodes, 3)
            if position is not None:  # all in one statement
                await conn.execute(
                    _INSERT_ENTRIES_NODES_KEEP_POSITION, *rows, *node_rows, *position
                )
            else:
                await conn.execute(_INSERT_ENTRIES_AND_NODES, *rows, *node_rows)
        elif position is not None:
            await conn.execute(_KEEP_POSITION, *position)
    return result


class TreeNotBuilt(RuntimeError):
    """The ledger has entries the Merkle tree does not cover yet (a ledger from before the
    tree): ``audit.tree.ensure_tree`` builds it after verifying their chain."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"the ledger's {size} entries are not all in its Merkle tree yet: audit builds it at "
            "start, or run `rujuk audit migrate-tree` / pohon Merkle belum dibangun"
        )


# The frontier of the tree over the head's seq entries: the complete subtree per bit of seq.
_FRONTIER_OF = """ARRAY(SELECT n.hash FROM generate_series(62, 0, -1) AS l
    JOIN tree_nodes n ON n.level = l AND n.node_index = ({size} >> l) - 1
    WHERE ({size} >> l) & 1 = 1 ORDER BY l DESC)"""
_KNOWN_AND_HEAD = f"""
SELECT ARRAY(SELECT event_id FROM ledger WHERE event_id = ANY($1::text[])) AS known, h.seq, h.hash,
  {_FRONTIER_OF.format(size="h.seq")} AS frontier
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1) AS h ON true
"""  # noqa: S608
# Constants only in these f-strings (S608 is about input, and there is none).
_INSERT_ENTRIES = (
    f"INSERT INTO ledger ({_COLUMNS}) SELECT * FROM unnest("  # noqa: S608
    + ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(_COLUMN_TYPES.values(), start=1))
    + ")"
)
_NODE_PARAMETERS = len(_COLUMN_TYPES)
_INSERT_NODES = (
    "INSERT INTO tree_nodes (level, node_index, hash) SELECT * FROM unnest("  # noqa: S608
    f"${_NODE_PARAMETERS + 1}::smallint[], ${_NODE_PARAMETERS + 2}::bigint[], "
    f"${_NODE_PARAMETERS + 3}::bytea[])"
)
_INSERT_ENTRIES_AND_NODES = f"WITH entries AS ({_INSERT_ENTRIES}) {_INSERT_NODES}"
_POSITION_UPSERT = (
    "ON CONFLICT (stream) DO UPDATE "
    "SET last_seq = greatest(stream_position.last_seq, EXCLUDED.last_seq)"
)
_KEEP_POSITION = (
    f"INSERT INTO stream_position (stream, last_seq) VALUES ($1, $2) {_POSITION_UPSERT}"  # noqa: S608
)
_INSERT_ENTRIES_NODES_KEEP_POSITION = (
    f"WITH entries AS ({_INSERT_ENTRIES}), nodes AS ({_INSERT_NODES}) "  # noqa: S608
    f"INSERT INTO stream_position (stream, last_seq) "
    f"VALUES (${_NODE_PARAMETERS + 4}, ${_NODE_PARAMETERS + 5}) {_POSITION_UPSERT}"
)


async def stream_position(conn: Connection, stream: str) -> int | None:
    """The last sequence of ``stream`` whose message the ledger has taken: 0 for a new ledger,
    None for a ledger written before positions were recorded."""
    value: int | None = await conn.fetchval(
        "SELECT last_seq FROM stream_position WHERE stream = $1", stream
    )
    if value is None and not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM ledger)"):
        return 0  # a new ledger reads the stream from its start
    return value


async def entries_between(conn: Connection, first_seq: int, last_seq: int) -> list[Entry]:
    """Entries ``first_seq`` to ``last_seq`` inclusive, in order."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM ledger WHERE seq BETWEEN $1 AND $2 ORDER BY seq",  # noqa: S608
        first_seq,
        last_seq,
    )
    return [_entry(row) for row in rows]


_REPLAY_SELECTION = (
    f"SELECT {_COLUMNS} FROM ledger "  # noqa: S608
    "WHERE ($1::text IS NULL OR case_id = $1) "
    "AND ($2::timestamptz IS NULL OR event_time >= $2) "
    f"AND ($3::timestamptz IS NULL OR event_time < $3) AND {_in_scope(4)} ORDER BY seq"
)


async def replay_selection(
    conn: Connection,
    *,
    case_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    districts: Sequence[str] | None = None,
) -> list[Entry]:
    """The entries a replay re-publishes: one case, and/or event times in [since, until);
    with ``districts``, only those of these districts (``audit.scope``)."""
    rows = await conn.fetch(
        _REPLAY_SELECTION,
        case_id,
        since,
        until,
        None if districts is None else list(districts),
    )
    return [_entry(row) for row in rows]


# Checkpoints


@dataclass(frozen=True)
class StoredCheckpoint:
    checkpoint: Checkpoint
    public_key: bytes  # as audit stored it; trust it only as far as the database


async def insert_checkpoint(conn: Connection, checkpoint: Checkpoint, public_key: bytes) -> bool:
    """Store a checkpoint; False if one for that seq exists (e.g. another replica's)."""
    inserted = await conn.fetchval(
        "INSERT INTO checkpoints (seq, hash, signed_at, key_id, public_key, signature) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (seq) DO NOTHING RETURNING true",
        checkpoint.seq,
        checkpoint.hash_bytes(),
        checkpoint.time,
        checkpoint.key_id,
        public_key,
        checkpoint.signature_bytes(),
    )
    return bool(inserted)


async def checkpoints(conn: Connection) -> list[StoredCheckpoint]:
    """Every checkpoint, oldest first."""
    try:
        rows = await conn.fetch(
            "SELECT seq, hash, signed_at, key_id, public_key, signature "
            "FROM checkpoints ORDER BY seq"
        )
    except asyncpg.UndefinedTableError as exc:
        raise LedgerMissing from exc
    return [_checkpoint(row) for row in rows]


async def latest_checkpoint(conn: Connection) -> StoredCheckpoint | None:
    try:
        row = await conn.fetchrow(
            "SELECT seq, hash, signed_at, key_id, public_key, signature "
            "FROM checkpoints ORDER BY seq DESC LIMIT 1"
        )
    except asyncpg.UndefinedTableError as exc:
        raise LedgerMissing from exc
    return None if row is None else _checkpoint(row)


def _checkpoint(row: asyncpg.Record) -> StoredCheckpoint:
    checkpoint = Checkpoint(
        seq=row["seq"],
        hash=bytes(row["hash"]).hex(),
        time=row["signed_at"],
        key_id=row["key_id"],
        signature=base64.b64encode(bytes(row["signature"])).decode(),
    )
    return StoredCheckpoint(checkpoint, bytes(row["public_key"]))


# Parked messages


@dataclass(frozen=True)
class ParkedMessage:
    dlq_seq: int
    service: str
    reason: str
    original_subject: str
    size: int
    parked_at: datetime


async def record_parked(conn: Connection, messages: Sequence[ParkedMessage]) -> int:
    """Count parked messages (each once, by its dead-letter stream seq); how many were new."""
    if not messages:
        return 0
    inserted = await conn.fetch(
        "INSERT INTO parked (dlq_seq, service, reason, original_subject, size, parked_at) "
        "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::int[], "
        "$6::timestamptz[]) ON CONFLICT (dlq_seq) DO NOTHING RETURNING dlq_seq",
        [m.dlq_seq for m in messages],
        [m.service for m in messages],
        [m.reason for m in messages],
        [m.original_subject for m in messages],
        [m.size for m in messages],
        [m.parked_at for m in messages],
    )
    return len(inserted)


async def parked_counts(conn: Connection) -> dict[str, int]:
    """How many messages each service parked."""
    try:
        rows = await conn.fetch("SELECT service, count(*) AS n FROM parked GROUP BY service")
    except asyncpg.UndefinedTableError as exc:
        raise LedgerMissing from exc
    return {row["service"]: row["n"] for row in sorted(rows, key=lambda r: r["service"])}


# The Merkle tree and its signed heads


async def tree_size(conn: Connection) -> int:
    """How many entries the tree covers (its leaves)."""
    value = await conn.fetchval(
        "SELECT coalesce(max(node_index) + 1, 0) FROM tree_nodes WHERE level = 0"
    )
    return int(value)


_HEAD_AND_FRONTIER = f"""
SELECT h.seq, {_FRONTIER_OF.format(size="h.seq")} AS frontier
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (SELECT seq FROM ledger ORDER BY seq DESC LIMIT 1) AS h ON true
"""  # noqa: S608


async def tree_head(conn: Connection) -> tuple[int, bytes]:
    """The ledger's size and the root of its tree; TreeNotBuilt if the tree lags behind."""
    row = await conn.fetchrow(_HEAD_AND_FRONTIER)
    assert row is not None
    size = row["seq"] or 0
    frontier = [bytes(digest) for digest in row["frontier"]]
    if len(frontier) != size.bit_count():
        raise TreeNotBuilt(size)
    return size, merkle.fold(frontier)


async def read_nodes(
    conn: Connection, keys: Sequence[merkle.NodeKey]
) -> dict[merkle.NodeKey, bytes]:
    """The stored nodes of ``keys`` (those that exist), in one indexed read."""
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT n.level, n.node_index, n.hash "
        "FROM unnest($1::smallint[], $2::bigint[]) AS k(level, node_index) "
        "JOIN tree_nodes n USING (level, node_index)",
        [level for level, _ in keys],
        [index for _, index in keys],
    )
    return {(row["level"], row["node_index"]): bytes(row["hash"]) for row in rows}


async def inclusion_proofs(
    conn: Connection, indexes: Sequence[int], size: int
) -> dict[int, list[bytes]]:
    """The audit path of each leaf in ``indexes`` in the tree of ``size``, in one read."""
    ranges = {index: merkle.inclusion_ranges(index, size) for index in indexes}
    nodes = await read_nodes(
        conn, sorted(set(merkle.nodes_for(r for v in ranges.values() for r in v)))
    )
    return {index: merkle.hashes_for(path, nodes) for index, path in ranges.items()}


async def consistency_proof(conn: Connection, old_size: int, new_size: int) -> list[bytes]:
    ranges = merkle.consistency_ranges(old_size, new_size)
    return merkle.hashes_for(ranges, await read_nodes(conn, merkle.nodes_for(ranges)))


async def insert_nodes(conn: Connection, nodes: Sequence[tuple[int, int, bytes]]) -> None:
    """Bulk-insert nodes (building the tree over an existing ledger)."""
    await conn.copy_records_to_table(
        "tree_nodes", records=nodes, columns=["level", "node_index", "hash"], schema_name=SCHEMA
    )


@dataclass(frozen=True)
class StoredHead:
    """A signed tree head as audit stored it, with the cosignature lines stored beside it."""

    size: int
    root_hash: bytes
    signed_at: datetime
    origin: str
    public_key: bytes  # as audit stored it; trust it only as far as the database
    note: str  # the signed note: the checkpoint and audit's signatures
    cosignatures: tuple[str, ...] = ()  # signature lines


async def insert_head(conn: Connection, head: StoredHead) -> bool:
    """Store a head; False if one of that size exists (another replica's)."""
    inserted = await conn.fetchval(
        "INSERT INTO tree_heads (size, root_hash, signed_at, origin, public_key, note) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (size) DO NOTHING RETURNING true",
        head.size,
        head.root_hash,
        head.signed_at,
        head.origin,
        head.public_key,
        head.note,
    )
    return bool(inserted)


_HEADS = """
SELECT h.size, h.root_hash, h.signed_at, h.origin, h.public_key, h.note,
       ARRAY(SELECT c.line FROM cosignatures c WHERE c.size = h.size
             ORDER BY c.witness, c.key_id) AS lines
FROM tree_heads h
"""


async def heads(conn: Connection) -> list[StoredHead]:
    """Every signed head, smallest first, with its cosignatures."""
    try:
        rows = await conn.fetch(_HEADS + " ORDER BY h.size")
    except asyncpg.UndefinedTableError as exc:
        raise LedgerMissing from exc
    return [_head(row) for row in rows]


async def latest_head(conn: Connection) -> StoredHead | None:
    row = await conn.fetchrow(_HEADS + " ORDER BY h.size DESC LIMIT 1")
    return None if row is None else _head(row)


async def head_covering(conn: Connection, size: int) -> StoredHead | None:
    """The newest head, if it covers at least ``size`` entries."""
    row = await conn.fetchrow(_HEADS + " WHERE h.size >= $1 ORDER BY h.size DESC LIMIT 1", size)
    return None if row is None else _head(row)


def _head(row: asyncpg.Record) -> StoredHead:
    return StoredHead(
        size=row["size"],
        root_hash=bytes(row["root_hash"]),
        signed_at=row["signed_at"],
        origin=row["origin"],
        public_key=bytes(row["public_key"]),
        note=row["note"],
        cosignatures=tuple(row["lines"]),
    )


@dataclass(frozen=True)
class Cosignature:
    witness: str
    key_id: bytes
    cosigned_at: datetime
    line: str


async def insert_cosignatures(conn: Connection, size: int, found: Sequence[Cosignature]) -> int:
    """Store a head's cosignatures (each once); how many were new."""
    if not found:
        return 0
    rows = await conn.fetch(
        "INSERT INTO cosignatures (size, witness, key_id, cosigned_at, line) "
        "SELECT $1, * FROM unnest($2::text[], $3::bytea[], $4::timestamptz[], $5::text[]) "
        "ON CONFLICT DO NOTHING RETURNING true",
        size,
        [c.witness for c in found],
        [c.key_id for c in found],
        [c.cosigned_at for c in found],
        [c.line for c in found],
    )
    return len(rows)


async def last_cosigned_size(conn: Connection, witness: str, key_id: bytes) -> int:
    """The largest head this witness cosigned for audit (0 if none)."""
    value = await conn.fetchval(
        "SELECT coalesce(max(size), 0) FROM cosignatures WHERE witness = $1 AND key_id = $2",
        witness,
        key_id,
    )
    return int(value)


async def entries_since(conn: Connection, size: int) -> datetime | None:
    """When the first entry after the first ``size`` was recorded (None if there is none)."""
    value: datetime | None = await conn.fetchval(
        "SELECT recorded_at FROM ledger WHERE seq = $1", size + 1
    )
    return value
