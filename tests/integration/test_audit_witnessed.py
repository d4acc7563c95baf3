"""The witnessed ledger on a real PostgreSQL: heads signed, sent to a witness (the witness's
own HTTP app), cosigned and stored; then whoever runs the database, holding the log's key too,
rewrites the tail and its heads, and verify names the first head no witness cosigned."""

import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from audit import note, signing, store, witness_server
from audit.chain import FailureKind
from audit.checkpoints import Checkpointer
from audit.cosigning import Cosigner, WitnessEndpoint, request_body
from audit.heads import HeadCopy
from audit.verification import HeadPolicy, verify_connection
from rujuk_runtime.db import create_pool
from tests.integration.test_audit_checkpoints import behind_the_triggers, interleaved
from tests.unit.test_audit_chain import case_story

pytestmark = pytest.mark.integration

KEY = signing.generate()
ORIGIN = "example.org/rujuk-audit-test"
WITNESS_KEY = signing.generate()
WITNESS = WITNESS_KEY.signer("witness.example/w1")
WITNESS_VKEY = WITNESS.verifier(note.COSIGNATURE_V1)


class Published:
    """Stands in for JetStream: keeps what the checkpointer publishes (the stream's copy)."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> Any:
        self.notes.append(data.decode())


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "audit")
    yield pool
    await pool.close()


@pytest.fixture
def witness_node() -> witness_server.Witness:
    folder = Path(tempfile.mkdtemp(prefix="rujuk-witness-"))
    logs = witness_server.log_keys([KEY.signer(ORIGIN).verifier(note.ED25519).vkey()])
    return witness_server.Witness(WITNESS, logs, folder / "state.json")


def signer_of(pool: asyncpg.Pool, node: witness_server.Witness, stream: Published) -> Checkpointer:
    transport = httpx.ASGITransport(app=witness_server.create_app(node))
    cosigner = Cosigner(
        [WitnessEndpoint(WITNESS_VKEY, "http://witness")], lambda: pool, transport=transport
    )
    return Checkpointer(
        KEY,
        lambda: pool,
        lambda: stream,
        every=1000,
        interval=60,
        origin=ORIGIN,
        cosign=cosigner,  # type: ignore[arg-type, return-value]
    )


async def verify(pool: asyncpg.Pool, node: witness_server.Witness, stream: Published) -> Any:
    copies = [HeadCopy("stream RUJUK_AUDIT", text) for text in stream.notes]
    copies += [HeadCopy("witness w1", latest.note) for latest in node.state.values()]
    policy = HeadPolicy(copies=copies, witnesses=[WITNESS_VKEY], quorum=1)
    async with pool.acquire() as conn:
        return await verify_connection(conn, public_key=KEY.public_raw, policy=policy)


async def test_heads_are_cosigned_and_a_rewritten_tail_names_the_first_head_not_cosigned(
    pool: asyncpg.Pool, witness_node: witness_server.Witness
) -> None:
    stream = Published()
    heads = signer_of(pool, witness_node, stream)
    events = interleaved()  # 10 events of two cases
    async with pool.acquire() as conn:
        await store.append_batch(conn, events[:4])
        await heads.checkpoint_now()
        await store.append_batch(conn, events[4:7])
        await heads.checkpoint_now()
        await store.append_batch(conn, events[7:])
        await heads.checkpoint_now()
        cosigned = {head.size: len(head.cosignatures) for head in await store.heads(conn)}
    honest = await verify(pool, witness_node, stream)

    # Whoever runs the database (and holds audit's key) rewrites entries 5-10 and the heads
    # over them, then signs new heads: the witness refuses them.
    await behind_the_triggers(
        pool,
        "DELETE FROM cosignatures WHERE size > 4; DELETE FROM tree_heads WHERE size > 4; "
        "DELETE FROM ledger WHERE seq > 4; "
        "DELETE FROM tree_nodes WHERE (node_index + 1) * (1::bigint << level) > 4",
    )
    forged = [e.model_copy(update={"source": "/rujuk/forger"}) for e in events[4:]]
    async with pool.acquire() as conn:
        await store.append_batch(conn, forged[:3])
        await heads.checkpoint_now()
        await store.append_batch(conn, forged[3:])
        await heads.checkpoint_now()
    tampered = await verify(pool, witness_node, stream)
    # Shown the forged head of size 10 with the size it last cosigned, the witness says why.
    async with pool.acquire() as conn:
        forged_head = await store.latest_head(conn)
    assert forged_head is not None
    transport = httpx.ASGITransport(app=witness_server.create_app(witness_node))
    async with httpx.AsyncClient(transport=transport, base_url="http://witness") as client:
        refused = await client.post(
            "/add-checkpoint", content=request_body(10, [], forged_head.note)
        )

    assert cosigned == {4: 1, 7: 1, 10: 1}
    assert honest.ok, honest.failure
    assert (honest.heads, honest.latest_head.witnesses) == (3, ("witness.example/w1",))
    assert tampered.failure is not None
    assert (tampered.failure.kind, tampered.failure.seq) == (FailureKind.NOT_WITNESSED, 7)
    assert "the head of size 7" in tampered.failure.detail
    assert "the last head a quorum cosigned is of size 4" in tampered.failure.detail
    kinds = {(p.kind, p.seq) for p in tampered.problems}
    assert (FailureKind.INCONSISTENT_HEADS, 10) in kinds  # the witness's 10 and the forged 10
    assert (FailureKind.HEAD_MISMATCH, 7) in kinds  # the stream still holds the honest 7
    assert (refused.status_code, "fork refused" in refused.text) == (422, True)


async def test_a_head_missing_from_the_database_and_a_stale_head_fail_verify(
    pool: asyncpg.Pool, witness_node: witness_server.Witness
) -> None:
    stream = Published()
    heads = signer_of(pool, witness_node, stream)
    async with pool.acquire() as conn:
        await store.append_batch(conn, case_story())
        await heads.checkpoint_now()
    await behind_the_triggers(pool, "DELETE FROM cosignatures; DELETE FROM tree_heads")
    missing = await verify(pool, witness_node, stream)
    async with pool.acquire() as conn:
        await store.append_batch(conn, interleaved()[:6])  # arrives; no new head is signed
        result = await verify_connection(
            conn,
            public_key=KEY.public_raw,
            policy=HeadPolicy(
                copies=[HeadCopy("stream RUJUK_AUDIT", text) for text in stream.notes],
                interval=timedelta(seconds=60),
                now=datetime.now(UTC) + timedelta(minutes=5),
            ),
        )

    assert missing.failure is not None
    assert (missing.failure.kind, missing.failure.seq) == (FailureKind.NOT_WITNESSED, 0)
    assert any(p.kind is FailureKind.HEAD_MISSING and p.seq == 5 for p in missing.problems)
    stale = [p for p in result.problems if p.kind is FailureKind.STALE_HEAD]
    assert len(stale) == 1
    assert "entries 6-" in stale[0].detail
    assert "heads are due every 60 s" in stale[0].detail
    assert result.failure is not None
