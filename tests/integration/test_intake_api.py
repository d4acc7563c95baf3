"""Intake's API in-process over real NATS and PostgreSQL: tokens and roles, disclosure to the
partner that holds an active referral, erasure, and the body guards."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import nats
import pytest

from intake import store
from intake.auth import Role
from intake.bootstrap import create_app
from intake.settings import IntakeSettings
from intake.vault import new_master_key_spec
from rujuk_contracts import make_event, parse_event, subjects
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.events import (
    CaseDetailsDisclosed,
    CaseErased,
    CaseReported,
    CaseRouted,
    DeclineReason,
    Priority,
    ReferralDeclined,
    ReferralSummary,
    Service,
)
from rujuk_runtime.bus import event_headers
from tests.conftest import provisioned_database, remove_streams
from tests.integration.sop_support import (
    announce,
    invented_sop_text,
    published_event,
    shipped_sop_events,
    until_intake_knows,
)

pytestmark = pytest.mark.integration

# Visibly invented identifying data, distinctive enough to search for anywhere.
PII = {
    "name": "CONTOH Zuzu Fiktifwati",
    # NIK-shaped but invented (province code 99 does not exist)
    "nik": "9999123400000042",
    "phone": "+62 800 1111 2222",
    "address": "Jl. Khayalan Nomor 77",
    "narrative": "CONTOH-NARASI-Qx7 kejadian fiktif",
    "place": "Gang Rekaan Tiga",
    "reporter": "CONTOH Pelapor Rekaan",
}


def report(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "hotline",
        "district_code": "3514",
        "kecamatan": "Bangil",
        "village": "Desa Khayalan",
        "victim": {
            "name": PII["name"],
            "nik": PII["nik"],
            "age_years": 29,
            "sex": "female",
            "disability": True,
            "phone": PII["phone"],
            "address": PII["address"],
        },
        "reporter": {"name": PII["reporter"], "phone": "+62 800 3333 4444", "relationship": "self"},
        "incident": {
            "violence_types": ["physical"],
            "place": PII["place"],
            "narrative": PII["narrative"],
        },
        "consent": {"share_with_police": True},
    }
    body.update(overrides)
    return body


@dataclass
class Intake:
    client: httpx.AsyncClient
    database_url: str
    nats_url: str
    tokens: dict[str, str]  # name -> secret
    token_ids: dict[str, str]

    def as_(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.database_url, server_settings={"search_path": "intake"})

    async def file(self, body: dict[str, Any] | None = None) -> str:
        response = await self.client.post(
            "/v1/reports", json=body or report(), headers=self.as_("operator")
        )
        assert response.status_code == 202, response.text
        case_id: str = response.json()["case_id"]
        return case_id


@pytest.fixture(scope="module")
async def intake(nats_url: str, server_database_url: str) -> AsyncIterator[Intake]:
    await remove_streams(nats_url)
    async with provisioned_database(server_database_url) as database:
        database_url = database.admin_url
        settings = IntakeSettings(
            nats_url=nats_url,
            database_url=database.role_url("intake"),
            master_keys=new_master_key_spec("k1"),
            max_body_bytes=4096,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            conn = await asyncpg.connect(
                database.role_url("intake"), server_settings={"search_path": "intake"}
            )
            tokens, ids = {}, {}
            for name, role, agency, districts in (
                ("operator", Role.OPERATOR, None, None),
                ("operator-3514", Role.OPERATOR, None, ["3514"]),
                ("coordinator", Role.COORDINATOR, None, None),
                ("auditor", Role.AUDITOR, None, ["3514", "3513"]),
                ("health", Role.PARTNER, "puskesmas-contoh", None),
                ("police", Role.PARTNER, "polres-contoh", None),
                ("stranger", Role.PARTNER, "lembaga-lain", None),
                ("revoked", Role.OPERATOR, None, None),
            ):
                ids[name], tokens[name] = await store.create_token(
                    conn, role, agency_id=agency, districts=districts, label=f"test {name}"
                )
            await store.revoke_token(conn, ids["revoked"])
            await conn.close()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
                await announce(nats_url, *shipped_sop_events())  # as routing does at start
                await until_intake_knows(client, {"3513": 1, "3514": 1})
                yield Intake(client, database_url, nats_url, tokens, ids)


async def publish(nats_url: str, event: CloudEvent, subject: str) -> None:
    connection = await nats.connect(nats_url)
    try:
        await connection.jetstream().publish(
            subject, event.to_bytes(), headers=event_headers(event.id, None)
        )
    finally:
        await connection.close()


async def route(intake: Intake, case_id: str) -> dict[str, str]:
    """Routing's `case.routed` for the case: health to the Puskesmas, police to the Polres."""
    referrals = {"health": f"{case_id}-r1", "police": f"{case_id}-r2"}
    routed = CaseRouted(
        case_id=case_id,
        sop_id="test-sop",
        sop_version=1,
        rules_fired=["test"],
        referrals=[
            ReferralSummary(referral_id=referrals["health"], service=Service.HEALTH,
                            agency_id="puskesmas-contoh", priority=Priority.URGENT),
            ReferralSummary(referral_id=referrals["police"], service=Service.POLICE,
                            agency_id="polres-contoh", priority=Priority.URGENT),
        ],
    )  # fmt: skip
    await publish(intake.nats_url, make_event(routed, source="/test"), CaseRouted.subject())
    await wait_for(lambda s: len(s["referrals"]) == 2, intake, case_id)
    return referrals


async def wait_for(
    condition: Callable[[dict[str, Any]], bool], intake: Intake, case_id: str, timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await intake.client.get(f"/v1/cases/{case_id}", headers=intake.as_("operator"))
        status: dict[str, Any] = response.json()
        if condition(status):
            return status
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met in {timeout}s: {status}")
        await asyncio.sleep(0.1)


async def events_of(
    nats_url: str, subject: str, case_id: str, count: int
) -> list[tuple[CloudEvent, Any]]:
    """The case's events on ``subject``: at least ``count`` (waiting up to 10 s for them),
    and every other one the stream holds by then."""
    connection = await nats.connect(nats_url)
    try:
        js = connection.jetstream()
        sub = await js.pull_subscribe(subject, durable=None, stream=subjects.EVENTS_STREAM)
        found: list[tuple[CloudEvent, Any]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                messages = await sub.fetch(500, timeout=1)
            except (
                TimeoutError
            ):  # nats-py raises its own, or asyncio's when the deadline passes first
                if len(found) >= count:
                    break  # the stream has nothing more for this subject
                continue
            parsed = [parse_event(m.data) for m in messages]
            found += [(e, p) for e, p in parsed if e.subject == case_id]
        return found
    finally:
        await connection.close()


async def outbox_drained(intake: "Intake", timeout: float = 10.0) -> None:
    """Until intake's relay has published every event it committed."""
    deadline = time.monotonic() + timeout
    conn = await intake.db()
    try:
        while await conn.fetchval("SELECT count(*) FROM outbox"):
            assert time.monotonic() < deadline, "intake's outbox did not drain"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def test_tokens_and_roles(intake: Intake) -> None:
    post = intake.client.post
    missing = await post("/v1/reports", json=report())
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for secret in ("rujuk_not-a-real-token", intake.tokens["revoked"]):
        bad = await post(
            "/v1/reports", json=report(), headers={"Authorization": f"Bearer {secret}"}
        )
        assert bad.status_code == 401
        assert 'error="invalid_token"' in bad.headers["www-authenticate"]
    for name in ("health", "coordinator", "auditor"):
        wrong = await post("/v1/reports", json=report(), headers=intake.as_(name))
        assert wrong.status_code == 403, name
    case_id = await intake.file()
    for name, expected in (("operator", 200), ("coordinator", 200), ("auditor", 403),
                           ("health", 403)):  # fmt: skip
        got = await intake.client.get(f"/v1/cases/{case_id}", headers=intake.as_(name))
        assert got.status_code == expected, name
    conn = await intake.db()
    try:
        stored = await conn.fetch("SELECT secret_sha256 FROM access_tokens")
    finally:
        await conn.close()
    assert all(len(r["secret_sha256"]) == 32 for r in stored)  # hashes only, never the secret
    assert not any(s.encode() in r["secret_sha256"] for s in intake.tokens.values() for r in stored)


async def test_partner_reads_only_what_its_service_needs_and_each_read_is_an_event(
    intake: Intake,
) -> None:
    case_id = await intake.file()
    referrals = await route(intake, case_id)
    url = f"/v1/cases/{case_id}/details"

    health = await intake.client.get(url, params={"purpose": "medical_care"},
                                     headers=intake.as_("health"))  # fmt: skip
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["referral_id"] == referrals["health"]
    assert body["details"]["victim"]["name"] == PII["name"]
    assert body["details"]["victim"]["sex"] == "female"
    assert body["details"]["victim"]["disability"] is True
    assert body["details"]["incident"]["narrative"] == PII["narrative"]
    assert "nik" not in body["details"]["victim"]  # health does not need the NIK
    assert "address" not in body["details"]["victim"]
    assert "reporter" not in body["details"]

    police = await intake.client.get(url, params={"purpose": "police_investigation"},
                                     headers=intake.as_("police"))  # fmt: skip
    assert police.status_code == 200
    assert police.json()["details"]["victim"]["nik"] == PII["nik"]
    assert police.json()["details"]["incident"]["place"] == PII["place"]

    for name in ("stranger", "operator", "coordinator"):
        refused = await intake.client.get(url, params={"purpose": "case_review"},
                                          headers=intake.as_(name))  # fmt: skip
        assert refused.status_code == 403, name
    no_purpose = await intake.client.get(url, headers=intake.as_("health"))
    assert no_purpose.status_code == 422
    assert no_purpose.json()["detail"][0]["field"] == "query.purpose"

    disclosed = [p for _, p in await events_of(intake.nats_url, CaseDetailsDisclosed.subject(),
                                                 case_id, 2)]  # fmt: skip
    assert len(disclosed) == 2
    by_agency = {p.agency_id: p for p in disclosed}
    assert by_agency["puskesmas-contoh"].fields == body["fields"]
    assert by_agency["puskesmas-contoh"].purpose == "medical_care"
    assert by_agency["puskesmas-contoh"].token_id == intake.token_ids["health"]
    assert by_agency["polres-contoh"].referral_id == referrals["police"]
    raw = "".join(p.model_dump_json() for p in disclosed)
    assert not [v for v in PII.values() if v in raw]  # field names only, never values

    log = await intake.client.get(f"/v1/cases/{case_id}/disclosures", headers=intake.as_("auditor"))
    assert log.status_code == 200
    assert [e["agency_id"] for e in log.json()] == ["puskesmas-contoh", "polres-contoh"]

    # A referral that was declined no longer opens the case to its agency.
    declined = ReferralDeclined(
        case_id=case_id,
        referral_id=referrals["health"],
        agency_id="puskesmas-contoh",
        reason=DeclineReason.NO_CAPACITY,
    )
    await publish(intake.nats_url, make_event(declined, source="/test"), declined.subject())
    await wait_for(lambda s: any(r["state"] == "declined" for r in s["referrals"]), intake, case_id)
    after = await intake.client.get(
        url, params={"purpose": "medical_care"}, headers=intake.as_("health")
    )
    assert after.status_code == 403


async def test_erasure_shreds_the_key_and_disclosure_is_gone(intake: Intake) -> None:
    case_id = await intake.file()
    await route(intake, case_id)
    erase_url = f"/v1/cases/{case_id}/erase"
    reason = {"reason": "survivor_request"}
    assert (await intake.client.post(erase_url, json=reason, headers=intake.as_("operator"))
            ).status_code == 403  # fmt: skip
    erased = await intake.client.post(erase_url, json=reason, headers=intake.as_("coordinator"))
    assert erased.status_code == 200, erased.text
    assert erased.json()["already_erased"] is False
    again = await intake.client.post(erase_url, json=reason, headers=intake.as_("coordinator"))
    assert again.json() == {**erased.json(), "already_erased": True}

    gone = await intake.client.get(f"/v1/cases/{case_id}/details",
                                   params={"purpose": "medical_care"},
                                   headers=intake.as_("health"))  # fmt: skip
    assert gone.status_code == 410
    conn = await intake.db()
    try:
        row = await conn.fetchrow("SELECT wrapped_key, ciphertext, erased_at FROM vault "
                                  "WHERE case_id = $1", case_id)  # fmt: skip
        assert row is not None
    finally:
        await conn.close()
    assert row["wrapped_key"] is None
    assert row["erased_at"] is not None
    await asyncio.sleep(0.5)  # a second event, were there one, would be relayed by now
    events = await events_of(intake.nats_url, CaseErased.subject(), case_id, 1)
    assert len(events) == 1  # the second erasure published nothing
    assert events[0][1].erased_by == f"coordinator:{intake.token_ids['coordinator']}"
    status = await intake.client.get(f"/v1/cases/{case_id}", headers=intake.as_("coordinator"))
    assert status.json()["erased_at"] is not None
    missing = await intake.client.post(
        "/v1/cases/3514-0000000000/erase", json=reason, headers=intake.as_("coordinator")
    )
    assert missing.status_code == 404


async def test_bad_bodies_get_4xx_naming_the_problem(intake: Intake) -> None:
    headers = intake.as_("operator")
    big = report(incident={**report()["incident"], "narrative": "x" * 5000})
    too_large = await intake.client.post("/v1/reports", json=big, headers=headers)
    assert too_large.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked transfer
        yield b'{"channel": "hotline", "victim": {"name": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}}'

    chunked = await intake.client.post(
        "/v1/reports", content=chunks(), headers={**headers, "Content-Type": "application/json"}
    )
    assert chunked.status_code == 413, chunked.text

    wrong_type = await intake.client.post(
        "/v1/reports",
        content=b"channel=hotline",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert wrong_type.status_code == 415

    invalid = await intake.client.post(
        "/v1/reports", json=report(victim={**report()["victim"], "nik": "123"}), headers=headers
    )
    assert invalid.status_code == 422
    problems = invalid.json()["detail"]
    assert problems[0]["field"] == "victim.nik"
    assert "123" not in invalid.text  # the submitted value is not echoed

    garbage = await intake.client.post(
        "/v1/reports", content=b"{not json", headers={**headers, "Content-Type": "application/json"}
    )
    assert garbage.status_code == 422


async def test_whoami_names_the_tokens_role_and_agency_but_never_its_secret(
    intake: Intake,
) -> None:
    assert (await intake.client.get("/v1/whoami")).status_code == 401
    revoked = await intake.client.get("/v1/whoami", headers=intake.as_("revoked"))
    assert revoked.status_code == 401
    for name, role, agency, districts, scope in (
        ("operator", "operator", None, None, "province"),
        ("auditor", "auditor", None, ["3513", "3514"], "3513,3514"),
        ("health", "partner", "puskesmas-contoh", None, "agency:puskesmas-contoh"),
    ):
        got = await intake.client.get("/v1/whoami", headers=intake.as_(name))
        assert got.status_code == 200, name
        assert got.json() == {
            "token_id": intake.token_ids[name],
            "role": role,
            "agency_id": agency,
            "districts": districts,
            "scope": scope,
            "areas": None,  # a cadre's only
        }
        assert intake.tokens[name] not in got.text


async def test_idempotency_key_files_one_case_even_when_pressed_twice_at_once(
    intake: Intake,
) -> None:
    """Same key and body: the same case, one row, one `case reported` event, also for twins
    sent at the same moment. Same key, another body: 409 and nothing written."""
    headers = {**intake.as_("operator"), "Idempotency-Key": "tekan-dua-kali-contoh"}
    body = report()
    answers = await asyncio.gather(
        *(intake.client.post("/v1/reports", json=body, headers=headers) for _ in range(6))
    )
    assert [a.status_code for a in answers] == [202] * 6, [a.text for a in answers]
    case_ids = {a.json()["case_id"] for a in answers}
    assert len(case_ids) == 1
    (case_id,) = case_ids
    again = await intake.client.post("/v1/reports", json=body, headers=headers)
    assert again.status_code == 202
    assert again.json()["case_id"] == case_id

    other = await intake.client.post(
        "/v1/reports", json=report(village="Desa Lain Rekaan"), headers=headers
    )
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["detail"]

    conn = await intake.db()
    try:
        key = "tekan-dua-kali-contoh"
        rows = await conn.fetchval("SELECT count(*) FROM cases WHERE idempotency_key = $1", key)
        vaulted = await conn.fetchval("SELECT count(*) FROM vault WHERE case_id = $1", case_id)
    finally:
        await conn.close()
    assert (rows, vaulted) == (1, 1)
    await outbox_drained(intake)  # everything intake will publish is on the stream now
    reported = await events_of(intake.nats_url, CaseReported.subject(), case_id, 1)
    assert len(reported) == 1


async def written(intake: Intake) -> tuple[int, int]:
    """Cases and vault records in intake's tables."""
    conn = await intake.db()
    try:
        return (
            await conn.fetchval("SELECT count(*) FROM cases"),
            await conn.fetchval("SELECT count(*) FROM vault"),
        )
    finally:
        await conn.close()


async def test_a_report_for_a_district_without_an_sop_in_force_is_refused_and_nothing_kept(
    intake: Intake,
) -> None:
    before = await written(intake)
    for district in ("3515", "0818", "35.15"):
        response = await intake.client.post(
            "/v1/reports", json=report(district_code=district), headers=intake.as_("operator")
        )
        assert response.status_code == 422, response.text
        [problem] = response.json()["detail"]
        assert problem["field"] == "district_code"
        code = district.replace(".", "")
        assert f"no SOP in force for district {code}" in problem["problem"]
        assert problem["problem"].endswith("you can file for: 3513, 3514")
    assert await written(intake) == before


async def test_a_report_for_a_district_the_operator_does_not_serve_is_refused(
    intake: Intake,
) -> None:
    before = await written(intake)
    refused = await intake.client.post(
        "/v1/reports", json=report(district_code="3513"), headers=intake.as_("operator-3514")
    )
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["detail"]
    assert problem["field"] == "district_code"
    assert "your token does not serve district 3513" in problem["problem"]
    assert problem["problem"].endswith("you can file for: 3514")
    assert await written(intake) == before
    accepted = await intake.client.post(
        "/v1/reports", json=report(district_code="35.14"), headers=intake.as_("operator-3514")
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["case_id"].startswith("3514-")


async def test_a_district_comes_in_force_when_routing_announces_its_sop(intake: Intake) -> None:
    new_district = report(district_code="3598")
    refused = await intake.client.post(
        "/v1/reports", json=new_district, headers=intake.as_("operator")
    )
    assert refused.status_code == 422, refused.text
    await announce(intake.nats_url, published_event(invented_sop_text("3598", version=2)))
    await until_intake_knows(intake.client, {"3598": 2})
    accepted = await intake.client.post(
        "/v1/reports", json=new_district, headers=intake.as_("operator")
    )
    assert accepted.status_code == 202, accepted.text
    # An older version announced late (redelivered, reordered) does not replace the newer one.
    await announce(intake.nats_url, published_event(invented_sop_text("3598", version=1)))
    await announce(intake.nats_url, published_event(invented_sop_text("3597", version=1)))
    await until_intake_knows(intake.client, {"3597": 1})  # announced after the old one
    health = (await intake.client.get("/healthz")).json()
    assert health["sops_in_force"]["3598"] == 2
