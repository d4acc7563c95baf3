"""Free text a person types about an action (issue 18, part 2), on real NATS and PostgreSQL
with intake and audit in-process: it is kept only sealed under its case's key at intake, it
is in no event, outbox row, ledger entry or readable column, reading it back is a logged and
announced disclosure for those who may, and erasing the case shreds it."""

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import nats
import pytest

from audit.bootstrap import create_app as create_audit
from audit.cli import case_history
from audit.settings import AuditSettings
from intake import store
from intake.auth import Role
from intake.bootstrap import create_app as create_intake
from intake.settings import IntakeSettings
from intake.vault import SealedRecord, Vault, new_master_key_spec
from rujuk.samples import INVENTED_NIK
from rujuk_contracts import make_event, parse_event, subjects
from rujuk_contracts.events import (
    CaseDetailsDisclosed,
    CaseErased,
    CaseNoteRead,
    CaseRouted,
    DisclosurePurpose,
    EraseReason,
    NoteKind,
    Priority,
    ReferralSummary,
    Service,
)
from rujuk_runtime.bus import event_headers
from rujuk_runtime.embedded import pg_binary
from tests.conftest import provisioned_database, remove_streams
from tests.integration.sop_support import announce, shipped_sop_events, until_intake_knows
from tests.integration.test_intake_api import report

pytestmark = pytest.mark.integration

HEALTH, POLICE, STRANGER = "puskesmas-contoh", "polres-contoh", "lembaga-lain"
# What testers typed (issue 18): a victim's name, address, NIK and phone. All invented.
TYPED = {
    NoteKind.DECLINE_NOTE: f"CONTOH Siti Rekaan, NIK {INVENTED_NIK}, HP +62 800 5555 0018",
    NoteKind.CLOSE_NOTE: "CONTOH Siti Rekaan pindah ke Jl. Khayalan Baru No. 5",
    NoteKind.DISCLOSURE_NOTE: "visum untuk CONTOH Siti Rekaan di Gang Rekaan Sembilan",
}
ERASE_NOTE = "atas permintaan CONTOH Siti Rekaan sendiri, HP +62 800 5555 0019"


@dataclass
class Services:
    intake: httpx.AsyncClient
    vault: Vault
    admin_url: str
    audit_url: str
    nats_url: str
    tokens: dict[str, str]

    def as_(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.admin_url, server_settings={"search_path": "intake"})

    async def file_and_route(self) -> str:
        """A 3514 case, referred to health and police."""
        filed = await self.intake.post("/v1/reports", json=report(), headers=self.as_("operator"))
        assert filed.status_code == 202, filed.text
        case_id: str = filed.json()["case_id"]
        routed = CaseRouted(
            case_id=case_id,
            sop_id="test-sop",
            sop_version=1,
            rules_fired=["test"],
            referrals=[
                ReferralSummary(referral_id=f"{case_id}-01", service=Service.HEALTH,
                                agency_id=HEALTH, priority=Priority.URGENT),
                ReferralSummary(referral_id=f"{case_id}-02", service=Service.POLICE,
                                agency_id=POLICE, priority=Priority.URGENT),
            ],
        )  # fmt: skip
        event = make_event(routed, source="/test")
        connection = await nats.connect(self.nats_url)
        try:
            await connection.jetstream().publish(
                CaseRouted.subject(), event.to_bytes(), headers=event_headers(event.id, None)
            )
        finally:
            await connection.close()
        deadline = time.monotonic() + 15
        while True:  # until intake projected the referrals
            status = await self.intake.get(f"/v1/cases/{case_id}", headers=self.as_("coord"))
            if len(status.json()["referrals"]) == 2:
                return case_id
            assert time.monotonic() < deadline, status.text
            await asyncio.sleep(0.1)

    async def write(self, case_id: str, kind: NoteKind, who: str, text: str) -> httpx.Response:
        return await self.intake.post(
            f"/v1/cases/{case_id}/notes", json={"kind": kind, "text": text}, headers=self.as_(who)
        )

    async def read(self, case_id: str, note_id: str, who: str) -> httpx.Response:
        return await self.intake.get(f"/v1/cases/{case_id}/notes/{note_id}", headers=self.as_(who))


@pytest.fixture(scope="module")
async def services(nats_url: str, server_database_url: str) -> AsyncIterator[Services]:
    await remove_streams(nats_url)
    async with provisioned_database(server_database_url) as database:
        intake_app = create_intake(
            IntakeSettings(
                nats_url=nats_url,
                database_url=database.role_url("intake"),
                master_keys=new_master_key_spec("k1"),
            )
        )
        audit_app = create_audit(
            AuditSettings(nats_url=nats_url, database_url=database.role_url("audit"))
        )
        async with contextlib.AsyncExitStack() as stack:
            for app in (intake_app, audit_app):
                await stack.enter_async_context(app.router.lifespan_context(app))
            conn = await asyncpg.connect(
                database.role_url("intake"), server_settings={"search_path": "intake"}
            )
            tokens = {}
            try:
                for name, role, agency, districts in (
                    ("operator", Role.OPERATOR, None, ["3514"]),
                    ("coord", Role.COORDINATOR, None, ["3514"]),
                    ("coord-3513", Role.COORDINATOR, None, ["3513"]),
                    ("auditor", Role.AUDITOR, None, ["3514"]),
                    ("auditor-3513", Role.AUDITOR, None, ["3513"]),
                    ("health", Role.PARTNER, HEALTH, None),
                    ("police", Role.PARTNER, POLICE, None),
                    ("stranger", Role.PARTNER, STRANGER, None),
                ):
                    _, tokens[name] = await store.create_token(
                        conn, role, agency_id=agency, districts=districts
                    )
            finally:
                await conn.close()
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=intake_app), base_url="http://intake"
                )
            )
            await announce(nats_url, *shipped_sop_events())  # as routing does at start
            await until_intake_knows(client, {"3513": 1, "3514": 1})
            yield Services(
                client,
                intake_app.state.vault,
                database.admin_url,
                database.role_url("audit"),
                nats_url,
                tokens,
            )


async def events_about(nats_url: str, case_id: str, *, at_least: int = 1) -> list[bytes]:
    """Every message of the events stream about the case, raw, once ``at_least`` are in."""
    connection = await nats.connect(nats_url)
    try:
        js = connection.jetstream()
        deadline = time.monotonic() + 10
        while True:
            sub = await js.pull_subscribe(
                subjects.EVENTS_WILDCARD, durable=None, stream=subjects.EVENTS_STREAM
            )
            found: list[bytes] = []
            with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
                while messages := await sub.fetch(500, timeout=1):
                    found += [m.data for m in messages if parse_event(m.data)[0].subject == case_id]
            await sub.unsubscribe()
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
    finally:
        await connection.close()


async def ledger_once(services: Services, case_id: str, event_type: str, count: int) -> list[str]:
    """The case's ledger entries (their CloudEvents as stored), once ``count`` of a type are."""
    deadline = time.monotonic() + 20
    while True:
        entries = await case_history(services.audit_url, case_id)
        if sum(e.event_type == event_type for e in entries) >= count:
            return [e.event for e in entries]
        assert time.monotonic() < deadline, [e.event_type for e in entries]
        await asyncio.sleep(0.2)


def pg_dump(admin_url: str) -> str:
    return subprocess.run(
        [str(pg_binary("pg_dump")), "--no-owner", admin_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


async def readable_rows(admin_url: str) -> list[str | bytes]:
    """Every value of every row of rujuk's tables, as a SELECT reads it: text as text, bytea
    as its bytes (a dump shows those as hex, where no text would be found)."""
    conn = await asyncpg.connect(admin_url)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('intake', 'routing', 'notify', 'audit', 'console')"
        )
        values: list[str | bytes] = []
        for t in tables:
            name = f'"{t["table_schema"]}"."{t["table_name"]}"'
            for row in await conn.fetch(f"SELECT * FROM {name}"):  # noqa: S608
                values += [v if isinstance(v, bytes) else str(v) for v in row.values()]
        return values
    finally:
        await conn.close()


def found_in(texts: list[str], *haystacks: str | bytes) -> list[str]:
    found = []
    for text in texts:
        for haystack in haystacks:
            needle: str | bytes = text.encode() if isinstance(haystack, bytes) else text
            if needle in haystack:  # type: ignore[operator]
                found.append(text)
    return found


async def test_a_note_is_kept_sealed_under_its_cases_key_and_in_nothing_else(
    services: Services,
) -> None:
    case_id = await services.file_and_route()
    written = {
        NoteKind.DECLINE_NOTE: await services.write(
            case_id, NoteKind.DECLINE_NOTE, "health", TYPED[NoteKind.DECLINE_NOTE]
        ),
        NoteKind.CLOSE_NOTE: await services.write(
            case_id, NoteKind.CLOSE_NOTE, "coord", TYPED[NoteKind.CLOSE_NOTE]
        ),
        NoteKind.DISCLOSURE_NOTE: await services.write(
            case_id, NoteKind.DISCLOSURE_NOTE, "health", TYPED[NoteKind.DISCLOSURE_NOTE]
        ),
    }
    for kind, response in written.items():
        assert response.status_code == 201, response.text
        assert response.json()["kind"] == kind
        assert response.json()["case_id"] == case_id
    ids = {kind: r.json()["note_id"] for kind, r in written.items()}

    # A disclosure gives a purpose code and names the partner's own words by id.
    disclosed = await services.intake.get(
        f"/v1/cases/{case_id}/details",
        params={"purpose": "medical_care", "note_ref": ids[NoteKind.DISCLOSURE_NOTE]},
        headers=services.as_("health"),
    )
    assert disclosed.status_code == 200, disclosed.text

    # In the database the text is ciphertext under the case's key: it opens to the text,
    # and the text's bytes are not in it.
    conn = await services.db()
    try:
        notes = await conn.fetch(
            "SELECT note_id, kind, sealed FROM case_notes WHERE case_id = $1", case_id
        )
        vault_row = await conn.fetchrow(
            "SELECT key_id, wrapped_key, ciphertext FROM vault WHERE case_id = $1", case_id
        )
        logged = await conn.fetchrow(
            "SELECT purpose, note_ref FROM disclosures WHERE case_id = $1", case_id
        )
    finally:
        await conn.close()
    assert vault_row is not None
    assert logged is not None
    case_key = SealedRecord(*vault_row.values())
    rows = {r["kind"]: r for r in notes}
    for kind, text in TYPED.items():
        row = rows[kind.value]
        assert text.encode() not in row["sealed"]
        assert services.vault.open_note(case_id, case_key, row["note_id"], row["sealed"]) == text
    assert tuple(logged) == ("medical_care", ids[NoteKind.DISCLOSURE_NOTE])

    # Read back by those who may: each read is an access-log row and a case.note_read event.
    decline_id = ids[NoteKind.DECLINE_NOTE]
    for who in ("coord", "auditor", "health"):
        read = await services.read(case_id, decline_id, who)
        assert read.status_code == 200, (who, read.text)
        assert read.json()["text"] == TYPED[NoteKind.DECLINE_NOTE]
        assert read.json()["author_agency_id"] == HEALTH
    # Not by others: the same 404 as for a note that is not there.
    absent_id = "note-" + "0" * 32
    missing = await services.read(case_id, absent_id, "coord")
    assert missing.status_code == 404
    for who in ("police", "stranger", "coord-3513", "auditor-3513"):
        refused = await services.read(case_id, decline_id, who)
        assert refused.status_code == 404, who
        assert refused.json()["detail"].replace(decline_id, "N") == (
            missing.json()["detail"].replace(absent_id, "N")
        )
    assert (await services.read(case_id, decline_id, "operator")).status_code == 403
    other_case = await services.file_and_route()
    assert (await services.read(other_case, decline_id, "coord")).status_code == 404

    log = await services.intake.get(
        f"/v1/cases/{case_id}/disclosures", headers=services.as_("auditor")
    )
    assert log.status_code == 200
    note_reads = [e for e in log.json() if e["note_id"]]
    assert [(e["role"], e["fields"]) for e in note_reads] == [
        ("coordinator", ["note.decline_note"]),
        ("auditor", ["note.decline_note"]),
        ("partner", ["note.decline_note"]),
    ]
    [details] = [e for e in log.json() if not e["note_id"]]
    assert (details["purpose"], details["note_ref"]) == (
        "medical_care",
        ids[NoteKind.DISCLOSURE_NOTE],
    )

    # On the bus: the disclosure and each read name the note, never its words.
    raw = await events_about(services.nats_url, case_id, at_least=5)
    payloads = [parse_event(m)[1] for m in raw]
    reads = [p for p in payloads if isinstance(p, CaseNoteRead)]
    assert [(r.note_id, r.kind, r.role) for r in reads] == [
        (decline_id, NoteKind.DECLINE_NOTE, Role.COORDINATOR),
        (decline_id, NoteKind.DECLINE_NOTE, Role.AUDITOR),
        (decline_id, NoteKind.DECLINE_NOTE, Role.PARTNER),
    ]
    [disclosure] = [p for p in payloads if isinstance(p, CaseDetailsDisclosed)]
    assert disclosure.purpose is DisclosurePurpose.MEDICAL_CARE
    assert disclosure.note_ref == ids[NoteKind.DISCLOSURE_NOTE]

    # Nowhere in clear: events, the ledger, any row a SELECT reads, a dump of the database.
    ledger = await ledger_once(services, case_id, CaseNoteRead.event_type(), 3)
    texts = list(TYPED.values())
    assert found_in(texts, *raw) == []
    assert found_in(texts, *ledger) == []
    assert found_in(texts, *await readable_rows(services.admin_url)) == []
    assert found_in(texts, pg_dump(services.admin_url)) == []


async def test_who_may_write_which_note(services: Services) -> None:
    case_id = await services.file_and_route()
    conn = await services.db()
    try:
        before = await conn.fetchval("SELECT count(*) FROM case_notes")
    finally:
        await conn.close()
    text = TYPED[NoteKind.DECLINE_NOTE]
    no_referral = await services.write(case_id, NoteKind.DECLINE_NOTE, "stranger", text)
    unknown_as_stranger = await services.write(
        "3514-0000000000", NoteKind.DECLINE_NOTE, "stranger", text
    )
    assert no_referral.status_code == unknown_as_stranger.status_code == 403
    assert no_referral.json() == unknown_as_stranger.json()  # the same: ids cannot be probed
    other_district = await services.write(case_id, NoteKind.CLOSE_NOTE, "coord-3513", text)
    unknown = await services.write("3514-0000000000", NoteKind.CLOSE_NOTE, "coord", text)
    assert other_district.status_code == unknown.status_code == 404
    assert other_district.json()["detail"].replace(case_id, "X") == (
        unknown.json()["detail"].replace("3514-0000000000", "X")
    )
    wrong_kind = await services.write(case_id, NoteKind.DECLINE_NOTE, "coord", text)
    assert wrong_kind.status_code == 403
    assert "close_note" in wrong_kind.json()["detail"]
    assert (await services.write(case_id, NoteKind.CLOSE_NOTE, "health", text)).status_code == 403
    assert (await services.write(case_id, NoteKind.CLOSE_NOTE, "operator", text)).status_code == 403
    for body, field in (
        ({"kind": "close_note", "text": "   "}, "text"),
        ({"kind": "close_note", "text": "x" * 1001}, "text"),
        ({"kind": "erase_note", "text": text}, "kind"),
        ({"kind": "close_note"}, "text"),
    ):
        bad = await services.intake.post(
            f"/v1/cases/{case_id}/notes", json=body, headers=services.as_("coord")
        )
        assert bad.status_code == 422, body
        assert bad.json()["detail"][0]["field"] == field
        assert text not in bad.text
    conn = await services.db()
    try:
        assert await conn.fetchval("SELECT count(*) FROM case_notes") == before  # none kept
    finally:
        await conn.close()


async def test_a_purpose_is_a_code_and_a_note_ref_names_the_partners_own_disclosure_note(
    services: Services,
) -> None:
    case_id = await services.file_and_route()
    url = f"/v1/cases/{case_id}/details"
    typed = "ingin tahu alamat CONTOH Siti Rekaan"
    free_text = await services.intake.get(
        url, params={"purpose": typed}, headers=services.as_("health")
    )
    assert free_text.status_code == 422
    [problem] = free_text.json()["detail"]
    assert problem["field"] == "query.purpose"
    assert all(code in problem["problem"] for code in DisclosurePurpose)
    assert typed not in free_text.text
    mine = await services.write(case_id, NoteKind.DISCLOSURE_NOTE, "health", "alasan")
    theirs = await services.write(case_id, NoteKind.DISCLOSURE_NOTE, "police", "alasan")
    a_decline = await services.write(case_id, NoteKind.DECLINE_NOTE, "health", "alasan")
    elsewhere_case = await services.file_and_route()
    elsewhere = await services.write(elsewhere_case, NoteKind.DISCLOSURE_NOTE, "health", "x")
    for note in (theirs, a_decline, elsewhere):
        refused = await services.intake.get(
            url,
            params={"purpose": "medical_care", "note_ref": note.json()["note_id"]},
            headers=services.as_("health"),
        )
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["field"] == "query.note_ref"
    not_an_id = await services.intake.get(
        url, params={"purpose": "medical_care", "note_ref": typed}, headers=services.as_("health")
    )
    assert not_an_id.status_code == 422
    conn = await services.db()
    try:  # nothing of the refused reads was recorded
        assert (
            await conn.fetchval("SELECT count(*) FROM disclosures WHERE case_id = $1", case_id) == 0
        )
    finally:
        await conn.close()
    fine = await services.intake.get(
        url,
        params={"purpose": "first_contact", "note_ref": mine.json()["note_id"]},
        headers=services.as_("health"),
    )
    assert fine.status_code == 200


async def test_erasure_shreds_every_note_of_the_case_and_keeps_no_erase_note(
    services: Services,
) -> None:
    case_id = await services.file_and_route()
    note = await services.write(case_id, NoteKind.CLOSE_NOTE, "coord", TYPED[NoteKind.CLOSE_NOTE])
    note_id = note.json()["note_id"]
    erase_url = f"/v1/cases/{case_id}/erase"

    typed_reason = await services.intake.post(
        erase_url, json={"reason": ERASE_NOTE}, headers=services.as_("coord")
    )
    assert typed_reason.status_code == 422
    assert all(code in typed_reason.json()["detail"][0]["problem"] for code in EraseReason)
    assert (await services.read(case_id, note_id, "coord")).status_code == 200  # not erased

    erased = await services.intake.post(
        erase_url,
        json={"reason": "survivor_request", "note": ERASE_NOTE},
        headers=services.as_("coord"),
    )
    assert erased.status_code == 200, erased.text
    conn = await services.db()
    try:
        sealed = await conn.fetch("SELECT sealed FROM case_notes WHERE case_id = $1", case_id)
    finally:
        await conn.close()
    assert [r["sealed"] for r in sealed] == [None]
    for who in ("coord", "auditor"):
        assert (await services.read(case_id, note_id, who)).status_code == 410
    assert (await services.write(case_id, NoteKind.CLOSE_NOTE, "coord", "lagi")).status_code == 410
    assert (
        await services.write(case_id, NoteKind.DECLINE_NOTE, "health", "lagi")
    ).status_code == 410

    raw = await events_about(services.nats_url, case_id, at_least=3)
    [erasure] = [p for p in (parse_event(m)[1] for m in raw) if isinstance(p, CaseErased)]
    assert erasure.reason is EraseReason.SURVIVOR_REQUEST
    ledger = await ledger_once(services, case_id, CaseErased.event_type(), 1)
    texts = [ERASE_NOTE, TYPED[NoteKind.CLOSE_NOTE]]
    assert found_in(texts, *raw) == []
    assert found_in(texts, *ledger) == []
    assert found_in(texts, *await readable_rows(services.admin_url)) == []
    assert found_in(texts, pg_dump(services.admin_url)) == []
