"""The console without the services: its catalogue, its report form against intake's model,
and its pages against fake upstream APIs (httpx MockTransport)."""

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from console import form, formats, views
from console.bootstrap import create_app
from console.http import PageProblem, period
from console.i18n import CATALOGUE, ENGLISH, INDONESIAN
from console.session import (
    SESSION_COOKIE,
    EndReason,
    SessionCookie,
    SessionRecord,
    SessionSealer,
    TokenChecks,
    new_session_id,
    same_origin,
    session_key,
)
from console.settings import ConsoleSettings
from console.signins import SignIns
from console.store import SessionsUnavailable
from intake.report import Report
from rujuk_contracts.events import DeliveryChannel, DisclosurePurpose, EscalationReason
from tests.fake_sessions import MemorySessions

TEMPLATES = Path(form.__file__).parent / "templates"
ORIGIN = "http://console.test"
CASE_ID = "3514-ABCDEFGHJK"
NOTE_ID = "note-" + "ab" * 16
Handler = Callable[[httpx.Request], httpx.Response]


# --- the catalogue and the form ------------------------------------------------------------


def test_both_languages_have_every_key() -> None:
    assert set(INDONESIAN) == set(ENGLISH)
    assert all(text.strip() for texts in CATALOGUE.values() for text in texts.values())


def test_every_key_the_templates_use_is_in_the_catalogue() -> None:
    used = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(
            re.findall(r"""\bt\(\s*["']([a-z_]+(?:\.[a-z_]+)+)["']\s*[,)]""", template.read_text())
        )
    assert used, "no t('...') found: the pattern no longer matches the templates"
    assert used - set(INDONESIAN) == set()


def _schema_leaves(schema: dict[str, Any], defs: dict[str, Any], prefix: str = "") -> dict:
    """Leaf paths of the report's JSON Schema -> their enum values (an independent walk)."""
    leaves: dict[str, tuple[str, ...]] = {}
    for name, spec in schema.get("properties", {}).items():
        spec = next((s for s in spec.get("anyOf", []) if s.get("type") != "null"), spec)
        ref = spec.get("$ref") or (spec.get("items") or {}).get("$ref")
        target = defs[ref.rsplit("/", 1)[-1]] if ref else {}
        if target.get("properties"):
            leaves |= _schema_leaves(target, defs, f"{prefix}{name}.")
        else:
            leaves[f"{prefix}{name}"] = tuple(target.get("enum", ()))
    return leaves


def test_the_report_form_has_every_field_and_choice_of_intakes_model() -> None:
    schema = Report.model_json_schema()
    expected = _schema_leaves(schema, schema["$defs"])
    offered = {f.path: f.choices for f in form.REPORT_FIELDS}
    assert offered == expected


def test_every_input_group_and_choice_has_a_label_in_both_languages() -> None:
    keys = {f"field.{f.path}" for f in form.REPORT_FIELDS}
    keys |= {f"group.{g.name}" for g in form.groups()}
    keys |= {f"enum.{f.enum_kind}.{c}" for f in form.REPORT_FIELDS for c in f.choices}
    for texts in CATALOGUE.values():
        assert keys - set(texts) == set()


def test_a_filled_form_becomes_a_report_intake_accepts() -> None:
    submitted = [
        ("channel", "hotline"),
        ("district_code", "3514"),
        ("kecamatan", "Bangil"),
        ("victim.name", "CONTOH Korban"),
        ("victim.age_years", "14"),
        ("victim.sex", "female"),
        ("reporter.relationship", "parent"),
        ("incident.violence_types", "sexual"),
        ("incident.violence_types", "physical"),
        ("incident.occurred_at", "2026-11-20T21:30"),
        ("risk.hours_since_sexual_assault", "30"),
        ("risk.injury", "on"),
        ("consent.share_with_health", "on"),
        ("consent.given_by", ""),
        ("unknown", "x"),
    ]
    body = form.report_body(form.values_from(submitted), ZoneInfo("Asia/Jakarta"))
    report = Report.model_validate(body)
    assert report.victim.age_years == 14
    assert set(report.incident.violence_types) == {"sexual", "physical"}
    assert report.incident.occurred_at == datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    assert report.risk.injury
    assert not report.risk.immediate_danger
    assert report.consent.share_with_health
    assert not report.consent.share_with_police
    assert "unknown" not in body


@pytest.mark.parametrize("typed", ["NaN", "1e309", "-inf"])
def test_a_number_json_cannot_carry_goes_to_intake_as_typed(typed: str) -> None:
    submitted = [("risk.hours_since_sexual_assault", typed), ("victim.age_years", "14")]
    body = form.report_body(form.values_from(submitted), ZoneInfo("Asia/Jakarta"))
    assert body["risk"]["hours_since_sexual_assault"] == typed  # intake names the field
    assert body["victim"]["age_years"] == 14
    json.dumps(body, allow_nan=False)  # what httpx sends: raised ValueError, a 500, before


def test_intakes_problems_go_next_to_the_inputs_they_name() -> None:
    placed = form.place_problems(
        [
            {"field": "victim.nik", "problem": "String should match pattern"},
            {"field": "incident.violence_types.0", "problem": "Input should be 'physical', …"},
            {
                "field": "victim",
                "problem": "Value error, give victim.birth_date or victim.age_years",
            },
            {
                "field": "body",
                "problem": "Value error, risk.hours_since_sexual_assault is given "
                "but incident.violence_types has no 'sexual'",
            },
            {"field": "body", "problem": "body is not valid UTF-8 JSON"},
        ]
    )
    assert set(placed.by_path) == {
        "victim.nik",
        "incident.violence_types",
        "victim",
        "risk.hours_since_sexual_assault",
    }
    assert placed.general == ["body is not valid UTF-8 JSON"]


def test_a_sealed_cookie_cannot_be_read_altered_or_kept_past_its_age() -> None:
    sealer = SessionSealer("a-secret-of-sixteen-or-more", max_age_seconds=60)
    cookie = SessionCookie(session_id=new_session_id(), token="rujuk_secret")
    sealed = sealer.seal(cookie)
    assert "rujuk_secret" not in sealed
    assert cookie.session_id not in sealed
    assert sealer.open(sealed) == cookie
    assert sealer.open(sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]) is None
    assert SessionSealer("another-secret-sixteen", 60).open(sealed) is None
    assert SessionSealer("a-secret-of-sixteen-or-more", -1).open(sealed) is None
    with pytest.raises(ValueError, match="CONSOLE_SESSION_SECRET"):
        SessionSealer("", 60)


def test_a_cookie_sealed_before_server_side_sessions_opens_nothing() -> None:
    sealer = SessionSealer("a-secret-of-sixteen-or-more", max_age_seconds=60)
    stateless = {"token": "rujuk_secret", "token_id": "tok-1", "role": "partner", "agency_id": "a"}
    sealed = sealer._fernet.encrypt(json.dumps(stateless).encode()).decode()
    assert sealer.open(sealed) is None
    assert sealer.open(sealer._fernet.encrypt(b'{"session_id": 1, "token": []}').decode()) is None


def test_a_session_id_has_256_random_bits_and_is_kept_only_as_its_sha256() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 43 for i in ids)  # 32 bytes, url-safe base64 without padding
    one = ids.pop()
    assert session_key(one) == hashlib.sha256(one.encode()).digest()


def test_a_session_is_active_until_it_ends_or_expires_and_keeps_its_first_end() -> None:
    start = datetime(2026, 11, 23, 8, tzinfo=UTC)
    record = SessionRecord(b"k" * 32, "tok-1", "partner", "a", start, start + timedelta(hours=12))
    assert record.active(start + timedelta(hours=11, minutes=59))
    assert not record.active(start + timedelta(hours=12))
    ended = record.ended(EndReason.SIGNED_OUT, start + timedelta(hours=1))
    assert not ended.active(start + timedelta(hours=1))
    again = ended.ended(EndReason.TOKEN_REVOKED, start + timedelta(hours=2))
    assert (again.ended_reason, again.ended_at) == (EndReason.SIGNED_OUT, ended.ended_at)


def test_a_token_is_checked_again_once_its_interval_has_passed() -> None:
    checks = TokenChecks(interval=5)
    assert checks.due("tok-1", now=100)
    checks.checked("tok-1", now=100)
    assert not checks.due("tok-1", now=104.9)
    assert checks.due("tok-1", now=105)
    assert checks.due("tok-2", now=101)
    checks.forget("tok-1")
    assert checks.due("tok-1", now=101)
    every_time = TokenChecks(interval=0)
    every_time.checked("tok-1", now=100)
    assert every_time.due("tok-1", now=100)


def test_token_checks_stay_bounded_in_memory() -> None:
    checks = TokenChecks(interval=5)
    for n in range(TokenChecks.MAX_REMEMBERED + 10):
        checks.checked(f"tok-{n}", now=n / 10_000)
    assert len(checks._checked) <= TokenChecks.MAX_REMEMBERED
    assert not checks.due(f"tok-{TokenChecks.MAX_REMEMBERED + 9}", now=1.0)


class Clock:
    """Wall time and monotonic time that a test moves on."""

    def __init__(self) -> None:
        self.wall = datetime(2026, 11, 23, 8, tzinfo=UTC)
        self.seconds = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.seconds += seconds


class Intake:
    """Intake's verdicts on tokens, and how often it was asked."""

    def __init__(self) -> None:
        self.verdicts: dict[str, bool | None] = {}
        self.asked = 0

    async def check(self, token: str) -> bool | None:
        self.asked += 1
        return self.verdicts.get(token, False)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def intake() -> Intake:
    return Intake()


def sign_ins(records: MemorySessions, intake: Intake, clock: Clock, hours: int = 12) -> SignIns:
    sealer = SessionSealer("a-secret-of-sixteen-or-more", max_age_seconds=hours * 3600)
    return SignIns(
        records, sealer, intake.check, check_interval=5, now=clock.now, monotonic=clock.monotonic
    )


async def test_a_session_is_kept_by_its_ids_hash_and_never_with_the_token(
    intake: Intake, clock: Clock
) -> None:
    records = MemorySessions()
    signins = sign_ins(records, intake, clock)
    sealed = await signins.start("secret-pt", "tok-pt", "partner", "pkm-bangil")
    (record,) = records.rows.values()
    assert "secret-pt" not in repr(record)
    assert record.expires_at == clock.now() + timedelta(hours=12)
    session = await signins.resume(sealed)
    assert session is not None
    assert (session.token, session.token_id, session.role, session.agency_id) == (
        "secret-pt",
        "tok-pt",
        "partner",
        "pkm-bangil",
    )
    assert intake.asked == 0  # intake vouched for the token at sign-in


async def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(
    intake: Intake, clock: Clock
) -> None:
    records = MemorySessions()
    signins = sign_ins(records, intake, clock)
    intake.verdicts["secret-op"] = True
    sealed = await signins.start("secret-op", "tok-op", "operator", None)
    other = await signins.start("secret-op", "tok-op", "operator", None)
    assert await signins.sign_out(sealed)
    assert await signins.resume(sealed) is None
    assert not await signins.sign_out(sealed)  # once
    (ended,) = [r for r in records.rows.values() if r.ended_at]
    assert ended.ended_reason == EndReason.SIGNED_OUT
    assert await signins.resume(other) is not None  # the same token elsewhere goes on
    assert not await signins.sign_out(None)
    assert not await signins.sign_out("forged")


async def test_a_session_ends_when_its_hours_are_over(intake: Intake, clock: Clock) -> None:
    signins = sign_ins(MemorySessions(), intake, clock, hours=1)
    intake.verdicts["secret-co"] = True
    sealed = await signins.start("secret-co", "tok-co", "coordinator", None)
    clock.advance(3599)
    assert await signins.resume(sealed) is not None
    clock.advance(1)
    assert await signins.resume(sealed) is None


async def test_a_token_intake_refuses_ends_every_session_signed_in_with_it(
    intake: Intake, clock: Clock
) -> None:
    records = MemorySessions()
    signins = sign_ins(records, intake, clock)
    intake.verdicts |= {"secret-pt": True, "secret-au": True}
    first = await signins.start("secret-pt", "tok-pt", "partner", "pkm-bangil")
    second = await signins.start("secret-pt", "tok-pt", "partner", "pkm-bangil")
    auditor = await signins.start("secret-au", "tok-au", "auditor", None)
    intake.verdicts["secret-pt"] = False  # revoked
    assert await signins.resume(first) is not None  # checked at sign-in, less than 5 s ago
    clock.advance(5)
    assert await signins.resume(first) is None
    assert intake.asked == 1
    assert await signins.resume(second) is None  # ended with the first, intake not asked
    assert intake.asked == 1
    reasons = {r.token_id: r.ended_reason for r in records.rows.values()}
    assert reasons == {"tok-pt": EndReason.TOKEN_REVOKED, "tok-au": None}
    assert await signins.resume(auditor) is not None


async def test_intake_is_asked_about_a_token_at_most_once_per_interval(
    intake: Intake, clock: Clock
) -> None:
    signins = sign_ins(MemorySessions(), intake, clock)
    intake.verdicts["secret-op"] = True
    sealed = await signins.start("secret-op", "tok-op", "operator", None)
    for _ in range(21):  # a page and its fragments every 0.5 s, from 0 s to 10 s
        assert await signins.resume(sealed) is not None
        clock.advance(0.5)
    assert intake.asked == 2  # at 5 s and at 10 s


async def test_without_an_answer_from_intake_the_page_goes_on_and_intake_is_asked_later(
    intake: Intake, clock: Clock
) -> None:
    signins = sign_ins(MemorySessions(), intake, clock)
    intake.verdicts["secret-op"] = True
    sealed = await signins.start("secret-op", "tok-op", "operator", None)
    clock.advance(5)
    intake.verdicts["secret-op"] = None  # intake is down
    assert await signins.resume(sealed) is not None
    assert await signins.resume(sealed) is not None
    assert intake.asked == 1
    clock.advance(5)
    intake.verdicts["secret-op"] = False
    assert await signins.resume(sealed) is None


async def test_a_sign_in_deletes_sessions_that_ended_or_expired_a_day_before(
    intake: Intake, clock: Clock
) -> None:
    records = MemorySessions()
    signins = sign_ins(records, intake, clock, hours=1)
    intake.verdicts["secret-op"] = True
    signed_out = await signins.start("secret-op", "tok-op", "operator", None)
    await signins.start("secret-op", "tok-op", "operator", None)  # expires after an hour
    await signins.sign_out(signed_out)
    clock.advance(23 * 3600)
    await signins.start("secret-op", "tok-op", "operator", None)
    assert len(records.rows) == 3  # ended 23 h ago, expired 22 h ago: kept
    clock.advance(2 * 3600 + 1)
    await signins.start("secret-op", "tok-op", "operator", None)
    assert len(records.rows) == 2  # the first two gone; the third, expired 1 h ago, kept


def test_a_post_is_same_origin_only_by_its_origin_or_referer() -> None:
    assert same_origin("http://console.test", None, "console.test")
    assert same_origin(None, "http://console.test/inbox", "console.test")
    assert not same_origin("https://evil.example", "http://console.test/", "console.test")
    assert not same_origin(None, None, "console.test")
    assert not same_origin("null", None, "console.test")


# --- views ----------------------------------------------------------------------------------


def _referral(rid: str, priority: str, requested_minutes_ago: int, **extra: Any) -> dict:
    now = datetime.now(UTC)
    return {
        "referral_id": rid,
        "case_id": CASE_ID,
        "agency_id": "pkm-bangil",
        "service": "health",
        "priority": priority,
        "state": "delivered",
        "requested_at": (now - timedelta(minutes=requested_minutes_ago)).isoformat(),
        "acknowledgement_deadline": (now + timedelta(minutes=30)).isoformat(),
        "deadline_missed": False,
        "escalation_step": 0,
        "acknowledged_at": None,
        **extra,
    }


def test_the_inbox_puts_the_most_urgent_then_the_newest_first() -> None:
    referrals = [
        _referral("old-routine", "routine", 5),
        _referral("old-urgent", "urgent", 50),
        _referral("new-urgent", "urgent", 1),
        _referral("emergency", "emergency", 90),
    ]
    order = [i.referral_id for i in views.inbox(referrals, datetime.now(UTC))]
    assert order == ["emergency", "new-urgent", "old-urgent", "old-routine"]


def test_a_referral_offers_only_the_replies_its_state_allows() -> None:
    now = datetime.now(UTC)
    for state, replies in (
        ("delivered", {"acknowledge", "accept", "decline"}),
        ("acknowledged", {"accept", "decline"}),
        ("accepted", {"complete"}),
        ("completed", set()),
    ):
        (item,) = views.inbox([_referral("r", "urgent", 1, state=state)], now)
        assert set(item.replies) == replies


def test_the_timeline_sets_each_first_answer_against_its_deadline() -> None:
    t0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)

    def entry(seq: int, minutes: int, kind: str, **data: Any) -> dict:
        return {
            "seq": seq,
            "time": (t0 + timedelta(minutes=minutes)).isoformat(),
            "since_report_seconds": minutes * 60.0,
            "actor": "/rujuk/x",
            "event_type": f"id.rujuk.{kind}.v1",
            "summary": kind,
            "event": {"data": {"case_id": CASE_ID, **data}},
        }

    deadline = (t0 + timedelta(minutes=60)).isoformat()
    steps = views.timeline(
        {
            "entries": [
                entry(1, 0, "case.reported"),
                entry(
                    2, 1, "referral.requested", referral_id="a", acknowledgement_deadline=deadline
                ),
                entry(
                    3, 1, "referral.requested", referral_id="b", acknowledgement_deadline=deadline
                ),
                entry(4, 20, "referral.acknowledged", referral_id="a"),
                entry(5, 25, "referral.accepted", referral_id="a"),
                entry(6, 90, "referral.declined", referral_id="b", reason="no_capacity"),
            ]
        }
    )
    assert [s.on_time for s in steps] == [None, None, None, True, None, False]
    assert steps[3].margin == timedelta(minutes=40)
    assert steps[5].margin == timedelta(minutes=-30)  # past the deadline
    assert [s.handoff for s in steps] == [False, True, True, True, True, True]


# --- pages against fake services ----------------------------------------------------------


class FakeServices:
    """Answers as the services would; ``routes[(service, method, path)]`` can be replaced."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, httpx.Request]] = []
        self.tokens = {
            "op": ("operator", None),
            "pt": ("partner", "pkm-bangil"),
            "co": ("coordinator", None),
            "au": ("auditor", None),
            "op14": ("operator", None),
            "co14": ("coordinator", None),
            "co2": ("coordinator", None),
            "au14": ("auditor", None),
        }
        # The districts each token serves; a token not named here is province level.
        self.districts: dict[str, list[str]] = {
            "op14": ["3514"],
            "co14": ["3514"],
            "co2": ["3513", "3514"],
            "au14": ["3514"],
        }
        self.routes: dict[tuple[str, str, str], Handler] = {}

    def transport(self, service: str) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.calls.append((service, request))
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            if token not in self.tokens:
                return httpx.Response(401, json={"detail": "unknown or revoked token"})
            route = self.routes.get((service, request.method, request.url.path))
            if route is not None:
                return route(request)
            if (service, request.url.path) == ("intake", "/v1/whoami"):
                role, agency = self.tokens[token]
                districts = self.districts.get(token)
                scope = f"agency:{agency}" if agency else ",".join(districts or ["province"])
                return httpx.Response(
                    200,
                    json={
                        "token_id": f"tok-{token}",
                        "role": role,
                        "agency_id": agency,
                        "districts": None if agency else districts,
                        "scope": scope,
                    },
                )
            if (service, request.url.path) == ("routing", "/v1/cases/unrouted"):
                return httpx.Response(200, json={"cases": [], "limit": 100, "offset": 0,
                                                 "next_offset": None})  # fmt: skip
            if (service, request.url.path) == ("routing", "/v1/oncall/alerts"):
                return httpx.Response(200, json=NO_ALERTS)
            return httpx.Response(404, json={"detail": f"no {request.url.path}"})

        return httpx.MockTransport(handle)

    def answer(self, service: str, method: str, path: str, status: int, **kwargs: Any) -> None:
        self.routes[service, method, path] = lambda _: httpx.Response(status, **kwargs)

    def sent(self, service: str, path: str) -> list[httpx.Request]:
        return [r for s, r in self.calls if s == service and r.url.path == path]


@pytest.fixture
def fake() -> FakeServices:
    return FakeServices()


@pytest.fixture
def sessions() -> MemorySessions:
    return MemorySessions()


def console_app(fake: FakeServices, sessions: Any, **settings: Any) -> FastAPI:
    configured = ConsoleSettings(
        session_secret="test-secret-for-the-console-0123456789", **settings
    )
    transports = {name: fake.transport(name) for name in ("intake", "routing", "notify", "audit")}
    return create_app(configured, transports=transports, sessions=sessions)


@pytest.fixture
def app(fake: FakeServices, sessions: MemorySessions) -> FastAPI:
    return console_app(fake, sessions)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=ORIGIN, headers={"Origin": ORIGIN}) as test_client:
        yield test_client


def another_browser(app: FastAPI) -> TestClient:
    """A second client of the same running console, with a cookie jar of its own."""
    return TestClient(app, base_url=ORIGIN, headers={"Origin": ORIGIN})


def sign_in(client: TestClient, token: str) -> httpx.Response:
    return client.post("/signin", data={"token": token}, follow_redirects=False)


def test_sign_in_keeps_the_token_in_a_sealed_strict_cookie_never_in_the_page(
    client: TestClient,
) -> None:
    response = sign_in(client, "op")
    assert response.status_code == 303
    assert response.headers["location"] == "/reports/new"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "op" not in client.cookies[SESSION_COOKIE].split(".")  # sealed, not plain
    page = client.get("/reports/new")
    assert page.status_code == 200
    assert ">op<" not in page.text
    assert "tok-op" not in page.text
    assert sign_in(client, "not-a-token").status_code == 401
    signed_out = client.post("/signout", follow_redirects=False)
    assert SESSION_COOKIE not in client.cookies or not client.cookies[SESSION_COOKIE]
    assert signed_out.headers["location"].startswith("/signin")


@pytest.mark.parametrize("typed", ["tok\u00e9n", "op\r\nX-Injected: 1", "o p", "\x00", "x" * 513])
def test_a_token_no_header_can_carry_is_refused_at_sign_in_and_never_sent(
    client: TestClient, fake: FakeServices, typed: str
) -> None:
    response = sign_in(client, typed)
    assert response.status_code == 401  # the sign-in page, saying the token is not known
    assert fake.sent("intake", "/v1/whoami") == []  # before: a 500 (non-ASCII) or a 503


def test_a_post_from_another_site_is_refused(client: TestClient) -> None:
    sign_in(client, "op")
    refused = client.post(
        "/reports", data={"channel": "hotline"}, headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403
    no_origin = client.post("/signout", headers={"Origin": "", "Referer": ""})
    assert no_origin.status_code == 403


def test_intakes_422_shows_next_to_each_field_with_the_form_refilled(
    client: TestClient, fake: FakeServices
) -> None:
    problems = [
        {"field": "victim.nik", "problem": "String should match pattern '^\\d{16}$'"},
        {"field": "incident.violence_types", "problem": "Field required"},
    ]
    fake.answer("intake", "POST", "/v1/reports", 422, json={"detail": problems})
    sign_in(client, "op")
    page = client.post("/reports", data={"victim.name": "CONTOH Nama", "victim.nik": "12"})
    assert page.status_code == 422
    assert 'value="CONTOH Nama"' in page.text
    assert 'value="12"' in page.text
    nik = page.text.index('id="f-victim-nik"')
    assert page.text.index("String should match pattern", nik) - nik < 600
    assert "Field required" in page.text
    (sent,) = fake.sent("intake", "/v1/reports")
    assert sent.headers["idempotency-key"]
    assert json.loads(sent.content)["victim"] == {
        "name": "CONTOH Nama",
        "nik": "12",
        "disability": False,
    }


def test_a_filed_report_leads_to_its_case_page(client: TestClient, fake: FakeServices) -> None:
    fake.answer(
        "intake",
        "POST",
        "/v1/reports",
        202,
        json={"case_id": CASE_ID, "status": "accepted", "status_url": "x"},
    )
    fake.answer(
        "intake",
        "GET",
        f"/v1/cases/{CASE_ID}",
        200,
        json={
            "case_id": CASE_ID,
            "district_code": "3514",
            "channel": "hotline",
            "reported_at": "2026-11-23T01:00:00Z",
            "status": "routed",
            "violence_types": ["sexual"],
            "erased_at": None,
            "referrals": [
                {
                    "referral_id": f"{CASE_ID}-r1",
                    "agency_id": "pkm-bangil",
                    "service": "health",
                    "priority": "emergency",
                    "state": "delivered",
                    "updated_at": "2026-11-23T01:00:01Z",
                }
            ],
        },
    )
    sign_in(client, "op")
    filed = client.post("/reports", data={"channel": "hotline"}, follow_redirects=False)
    assert filed.headers["location"] == f"/cases/{CASE_ID}?filed=1"
    page = client.get(filed.headers["location"])
    assert page.status_code == 200
    assert "pkm-bangil" in page.text
    assert "Terkirim" in page.text
    english = client.get(f"/lang?to=en&next=/cases/{CASE_ID}")
    assert english.status_code == 200
    assert "Delivered" in english.text
    assert 'lang="en"' in english.text


def test_the_case_page_says_how_the_desa_picked_an_agency_and_nothing_for_others(
    client: TestClient, fake: FakeServices
) -> None:
    def referral(number: int, agency_id: str, picked_by: str | None) -> dict[str, object]:
        return {
            "referral_id": f"{CASE_ID}-r{number}",
            "agency_id": agency_id,
            "service": "psychosocial",
            "priority": "urgent",
            "state": "requested",
            "updated_at": "2026-11-23T01:00:01Z",
            "picked_by": picked_by,
        }

    case = {
        "case_id": CASE_ID,
        "district_code": "3513",
        "channel": "outreach",
        "reported_at": "2026-11-23T01:00:00Z",
        "status": "routed",
        "violence_types": ["physical"],
        "erased_at": None,
        "referrals": [
            referral(1, "rumah-sae-desa-contoh", "village"),
            referral(2, "rumah-sae-kecamatan-contoh", "kecamatan_timeout"),
            referral(3, "upt-ppa-contoh", None),
        ],
    }
    fake.answer("intake", "GET", f"/v1/cases/{CASE_ID}", 200, json=case)
    sign_in(client, "op")

    def cells(text: str) -> dict[str, str]:
        """Each referral's row, by its number."""
        return {n: text.split(f'data-referral="{CASE_ID}-r{n}"')[1].split("</tr>")[0]
                for n in "123"}  # fmt: skip

    indonesian = cells(client.get(f"/cases/{CASE_ID}/status").text)
    assert "Dipilih desa" in indonesian["1"]
    # Nobody at the desa is asked: intake, which alone knows the case's desa, did not say in
    # time which agency lists it (ROUTING_VILLAGE_PICK_TIMEOUT_SECONDS).
    assert "Kecamatan: desa kasus tidak dapat dicocokkan tepat waktu" in indonesian["2"]
    assert "tidak menjawab" not in indonesian["2"]
    assert 'class="picked-by late"' in indonesian["2"]
    assert "picked-by" not in indonesian["3"]
    client.get(f"/lang?to=en&next=/cases/{CASE_ID}")
    english = cells(client.get(f"/cases/{CASE_ID}").text)
    assert "Picked by the village" in english["1"]
    assert "Kecamatan: the village could not be matched in time" in english["2"]
    assert "did not answer" not in english["2"]
    assert "picked-by" not in english["3"]


@pytest.mark.parametrize(
    ("answer", "status", "says"),
    [
        (httpx.Response(404, json={"detail": "no case"}), 404, "no case"),
        (httpx.Response(403, json={"detail": "role may not"}), 403, "tidak diizinkan"),
        (httpx.Response(500, text="boom"), 503, "tidak dapat dihubungi"),
    ],
)
def test_upstream_refusals_become_clear_pages_never_a_traceback(
    client: TestClient, fake: FakeServices, answer: httpx.Response, status: int, says: str
) -> None:
    fake.routes["intake", "GET", f"/v1/cases/{CASE_ID}"] = lambda r: answer
    sign_in(client, "op")
    page = client.get(f"/cases/{CASE_ID}")
    assert page.status_code == status
    assert says in page.text
    assert "Traceback" not in page.text


def test_a_service_that_is_down_or_a_bad_case_id_gives_a_page_not_a_500(
    client: TestClient, fake: FakeServices
) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    fake.routes["intake", "GET", f"/v1/cases/{CASE_ID}"] = down
    sign_in(client, "op")
    assert client.get(f"/cases/{CASE_ID}").status_code == 503
    assert client.get("/cases/not-a-case").status_code == 404
    assert client.get("/cases/..%2F..%2Fv1%2Fwhoami").status_code == 404
    assert client.get("/no/such/page").status_code == 404


def test_a_token_revoked_meanwhile_sends_the_person_to_sign_in(
    client: TestClient, fake: FakeServices
) -> None:
    sign_in(client, "op")
    del fake.tokens["op"]
    page = client.get(f"/cases/{CASE_ID}", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/signin?expired=1"
    fragment = client.get(f"/cases/{CASE_ID}/status", headers={"HX-Request": "true"})
    assert fragment.headers["hx-redirect"].startswith("/signin?")


HOMES = {"op": "/reports/new", "pt": "/inbox", "co": "/coordinator", "au": "/audit"}


@pytest.mark.parametrize("token", sorted(HOMES))
def test_a_cookie_replayed_after_signing_out_gets_the_sign_in_page(
    app: FastAPI, client: TestClient, sessions: MemorySessions, token: str
) -> None:
    sign_in(client, token)
    captured = client.cookies[SESSION_COOKIE]
    assert client.get(HOMES[token], follow_redirects=False).status_code != 303  # signed in
    client.post("/signout")
    (record,) = sessions.rows.values()
    assert record.ended_reason == EndReason.SIGNED_OUT
    replay = another_browser(app)
    replay.cookies.set(SESSION_COOKIE, captured)
    for path in (*HOMES.values(), f"/cases/{CASE_ID}/details", "/"):
        page = replay.get(path, follow_redirects=False)
        assert page.status_code == 303, path
        assert page.headers["location"].startswith("/signin"), path
    assert "/signin" in replay.get(HOMES[token]).url.path


def test_signing_in_again_ends_the_browsers_previous_session(
    app: FastAPI, client: TestClient, sessions: MemorySessions
) -> None:
    sign_in(client, "op")
    first = client.cookies[SESSION_COOKIE]
    assert sign_in(client, "co").headers["location"] == "/coordinator"
    assert sorted(str(r.ended_reason) for r in sessions.rows.values()) == ["None", "signed_out"]
    replay = another_browser(app)
    replay.cookies.set(SESSION_COOKIE, first)
    assert replay.get("/reports/new", follow_redirects=False).status_code == 303


def test_a_revoked_token_ends_every_session_signed_in_with_it(
    app: FastAPI, client: TestClient, fake: FakeServices, sessions: MemorySessions
) -> None:
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": []})
    sign_in(client, "pt")
    elsewhere = another_browser(app)
    sign_in(elsewhere, "pt")
    sign_in(another_browser(app), "au")
    del fake.tokens["pt"]  # revoked
    page = client.get("/inbox", follow_redirects=False)  # routing answers 401
    assert page.headers["location"] == "/signin?expired=1"
    reasons = sorted((r.token_id, str(r.ended_reason)) for r in sessions.rows.values())
    assert reasons == [("tok-au", "None"), ("tok-pt", "token_revoked"), ("tok-pt", "token_revoked")]
    # The other browser's next page calls no service and intake is not asked: ended anyway.
    asked = len(fake.sent("intake", "/v1/whoami"))
    other = elsewhere.get(f"/cases/{CASE_ID}/details", follow_redirects=False)
    assert other.headers["location"] == "/signin?expired=1"
    assert len(fake.sent("intake", "/v1/whoami")) == asked


def test_a_page_that_calls_no_service_asks_intake_about_the_token(
    fake: FakeServices, sessions: MemorySessions
) -> None:
    app = console_app(fake, sessions, token_cache_seconds=0)  # ask on every request
    with TestClient(app, base_url=ORIGIN, headers={"Origin": ORIGIN}) as client:
        sign_in(client, "op")
        assert client.get("/reports/new").status_code == 200
        del fake.tokens["op"]
        page = client.get("/reports/new", follow_redirects=False)
    assert page.headers["location"] == "/signin?expired=1"
    (record,) = sessions.rows.values()
    assert record.ended_reason == EndReason.TOKEN_REVOKED


class DownSessions(MemorySessions):
    async def find(self, key: bytes) -> SessionRecord | None:
        raise SessionsUnavailable("ConnectionRefusedError")

    async def add(self, record: SessionRecord) -> None:
        raise SessionsUnavailable("ConnectionRefusedError")


def test_without_the_sessions_database_pages_say_so_never_a_traceback(
    fake: FakeServices,
) -> None:
    with TestClient(
        console_app(fake, DownSessions()), base_url=ORIGIN, headers={"Origin": ORIGIN}
    ) as client:
        refused = sign_in(client, "op")
        assert refused.status_code == 503
        assert "basis data konsol" in refused.text
        sealer = SessionSealer("test-secret-for-the-console-0123456789", 3600)
        client.cookies.set(SESSION_COOKIE, sealer.seal(SessionCookie(new_session_id(), "op")))
        page = client.get("/reports/new")
        assert page.status_code == 503
        assert "Traceback" not in page.text


def test_the_language_link_goes_back_only_to_a_page_of_the_console(client: TestClient) -> None:
    for target, expected in (
        ("/inbox", "/inbox"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example", "/"),
    ):
        response = client.get("/lang", params={"to": "en", "next": target}, follow_redirects=False)
        assert response.headers["location"] == expected
    assert client.cookies["lang"] == "en"


def test_each_role_sees_only_its_pages(client: TestClient) -> None:
    assert client.get("/inbox", follow_redirects=False).headers["location"].startswith("/signin")
    sign_in(client, "op")
    for path in ("/inbox", "/coordinator", f"/audit/cases/{CASE_ID}"):
        assert client.get(path).status_code == 403, path


def test_the_partner_inbox_and_its_replies(client: TestClient, fake: FakeServices) -> None:
    referrals = [_referral("r-routine", "routine", 1), _referral("r-emergency", "emergency", 9)]
    fake.answer(
        "routing",
        "GET",
        "/v1/referrals",
        200,
        json={"referrals": referrals, "limit": 200, "offset": 0, "next_offset": None},
    )
    fake.answer(
        "notify",
        "POST",
        "/v1/referrals/r-emergency/replies",
        202,
        json={"event_id": "e1", "status": "accepted"},
    )
    sign_in(client, "pt")
    page = client.get("/inbox")
    assert page.text.index("r-emergency") < page.text.index("r-routine")
    assert 'class="countdown' in page.text
    assert "<time datetime=" in page.text
    (listed,) = fake.sent("routing", "/v1/referrals")
    assert listed.url.params["agency_id"] == "pkm-bangil"
    assert listed.url.params["open"] == "true"
    fake.answer(
        "intake",
        "POST",
        f"/v1/cases/{CASE_ID}/notes",
        201,
        json={"note_id": NOTE_ID, "case_id": CASE_ID, "kind": "decline_note",
              "created_at": "2026-12-01T00:00:00Z"},
    )  # fmt: skip
    assert f'name="case_id" value="{CASE_ID}"' in page.text  # the decline form says its case
    declined = client.post(
        "/referrals/r-emergency/reply",
        data={"reply": "decline", "reason": "no_capacity", "note": "penuh, CONTOH Korban",
              "case_id": CASE_ID},
    )  # fmt: skip
    assert declined.status_code == 200
    assert "Balasan dikirim" in declined.text
    # The note's text goes to intake's vault, with the partner's own token; the reply names
    # it by id only.
    (kept,) = fake.sent("intake", f"/v1/cases/{CASE_ID}/notes")
    assert json.loads(kept.content) == {"kind": "decline_note", "text": "penuh, CONTOH Korban"}
    assert kept.headers["authorization"] == "Bearer pt"
    (sent,) = fake.sent("notify", "/v1/referrals/r-emergency/replies")
    assert json.loads(sent.content) == {
        "reply": "decline",
        "reason": "no_capacity",
        "note_ref": NOTE_ID,
    }
    assert "CONTOH" not in sent.content.decode()
    assert sent.headers["authorization"] == "Bearer pt"
    without_note = client.post(
        "/referrals/r-emergency/reply", data={"reply": "decline", "reason": "no_capacity"}
    )
    assert without_note.status_code == 200
    assert len(fake.sent("intake", f"/v1/cases/{CASE_ID}/notes")) == 1  # no empty note kept
    assert json.loads(fake.sent("notify", "/v1/referrals/r-emergency/replies")[-1].content) == {
        "reply": "decline",
        "reason": "no_capacity",
    }


def test_opening_details_warns_first_and_only_the_confirmation_reads_them(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer(
        "intake",
        "GET",
        f"/v1/cases/{CASE_ID}/details",
        200,
        json={
            "case_id": CASE_ID,
            "agency_id": "pkm-bangil",
            "referral_id": "r1",
            "services": ["health"],
            "fields": ["victim.name"],
            "details": {"victim": {"name": "CONTOH Korban", "sex": "female"}},
        },
    )
    fake.answer(
        "intake",
        "POST",
        f"/v1/cases/{CASE_ID}/notes",
        201,
        json={"note_id": NOTE_ID, "case_id": CASE_ID, "kind": "disclosure_note",
              "created_at": "2026-12-01T00:00:00Z"},
    )  # fmt: skip
    sign_in(client, "pt")
    warning = client.get(f"/cases/{CASE_ID}/details")
    assert "akan dicatat" in warning.text
    assert "CONTOH Korban" not in warning.text
    for code in DisclosurePurpose:  # the purposes offered are the codes, each with its label
        assert f'<option value="{code}">' in warning.text
    assert "Pelayanan medis" in warning.text
    assert fake.sent("intake", f"/v1/cases/{CASE_ID}/details") == []
    shown = client.post(
        f"/cases/{CASE_ID}/details",
        data={"purpose": "medical_care", "note": "visum untuk CONTOH Korban"},
    )
    assert "CONTOH Korban" in shown.text
    assert "telah dicatat" in shown.text
    (kept,) = fake.sent("intake", f"/v1/cases/{CASE_ID}/notes")
    assert json.loads(kept.content) == {"kind": "disclosure_note",
                                        "text": "visum untuk CONTOH Korban"}  # fmt: skip
    (read,) = fake.sent("intake", f"/v1/cases/{CASE_ID}/details")
    assert dict(read.url.params) == {"purpose": "medical_care", "note_ref": NOTE_ID}
    # Without words: the code alone, and no note is kept.
    client.post(f"/cases/{CASE_ID}/details", data={"purpose": "first_contact", "note": "  "})
    assert dict(fake.sent("intake", f"/v1/cases/{CASE_ID}/details")[-1].url.params) == {
        "purpose": "first_contact"
    }
    assert len(fake.sent("intake", f"/v1/cases/{CASE_ID}/notes")) == 1


STATS = {
    "period": {"from": "2026-11-01", "to": "2026-11-30", "timezone": "Asia/Jakarta"},
    "cases_total": 3,
    "cases_by_violence_type": [
        {"violence_type": "sexual", "cases": 2},
        {"violence_type": "physical", "cases": 1},
    ],
    "cases_by_month": [{"month": "2026-11", "cases": 3}],
    "acknowledgement_by_agency": [
        {
            "agency_id": "pkm-bangil",
            "acknowledged": 2,
            "median_minutes": 12.5,
            "worst_minutes": 40.0,
        }
    ],
    "deadlines": {"met": 3, "missed": 1, "pending": 0, "met_share": 0.75},
    "open_referrals": [],
    "escalations_total": 0,
    "escalations_by_reason": [],
}


def test_the_coordinator_sees_open_referrals_charts_and_a_csv(
    client: TestClient, fake: FakeServices
) -> None:
    missed = _referral("r-late", "urgent", 90, deadline_missed=True, escalation_step=1)
    fake.answer(
        "routing",
        "GET",
        "/v1/referrals",
        200,
        json={"referrals": [missed], "limit": 500, "offset": 0, "next_offset": None},
    )
    fake.answer("routing", "GET", "/v1/stats", 200, json=STATS)
    fake.answer(
        "routing",
        "GET",
        "/v1/stats.csv",
        200,
        text="section,key\r\n",
        headers={"content-type": "text/csv"},
    )
    sign_in(client, "co")
    page = client.get("/coordinator?from=2026-11-01&to=2026-11-30")
    assert page.status_code == 200
    assert page.text.count("<svg") == 5
    assert "75,0%" in page.text  # Indonesian writes a decimal comma
    assert "r-late" in page.text
    (asked,) = fake.sent("routing", "/v1/stats")
    assert asked.url.params["from"] == "2026-11-01"
    assert asked.url.params["to"] == "2026-11-30"
    refreshed = client.get("/coordinator/open", headers={"HX-Request": "true"})
    assert 'id="open"' in refreshed.text
    assert "r-late" in refreshed.text
    assert "<html" not in refreshed.text  # a fragment, swapped into the page
    csv = client.get("/coordinator/stats.csv?from=2026-11-01&to=2026-11-30")
    assert csv.text == "section,key\r\n"
    assert "attachment" in csv.headers["content-disposition"]


def test_a_province_year_charts_the_slowest_agencies_and_tables_them_all(
    client: TestClient, fake: FakeServices
) -> None:
    # 40 agencies, agency k taking k minutes at the median and 2k at worst
    agencies = [
        {
            "agency_id": f"agency-{k:02d}",
            "acknowledged": 3,
            "median_minutes": float(k),
            "worst_minutes": float(2 * k),
        }
        for k in range(1, 41)
    ]
    fake.answer(
        "routing",
        "GET",
        "/v1/referrals",
        200,
        json={"referrals": [], "limit": 500, "offset": 0, "next_offset": None},
    )
    fake.answer(
        "routing", "GET", "/v1/stats", 200, json={**STATS, "acknowledgement_by_agency": agencies}
    )
    sign_in(client, "co")
    page = client.get("/coordinator?from=2026-01-01&to=2026-12-31").text
    median = page[page.index('id="chart-median-title"') : page.index('id="chart-worst-title"')]
    worst = page[page.index('id="chart-worst-title"') : page.index('id="chart-deadlines-title"')]
    assert "15 lembaga paling lambat dari 40" in median
    for chart in (median, worst):
        shown = re.findall(r'class="label">(agency-\d\d)<', chart)
        assert shown == [f"agency-{k:02d}" for k in range(40, 25, -1)]  # slowest first
    table = page[page.index('<details class="figures">') :]
    assert all(f"<td>agency-{k:02d}</td>" in table for k in range(1, 41))


NO_UNROUTED = {"cases": [], "limit": 100, "offset": 0, "next_offset": None}
UNROUTED_CASE = "3515-AB12CD34EF"
NO_SOP = "tidak ada SOP berlaku / no SOP in force for district 3515"


def test_the_coordinator_sees_cases_not_routed_and_routes_one_again(
    client: TestClient, fake: FakeServices
) -> None:
    unrouted = {
        "case_id": UNROUTED_CASE,
        "district_code": "3515",
        "reason": "no_sop",
        "detail": NO_SOP,
        "since": "2026-11-23T01:00:00Z",
        "attempts": 1,
        "last_attempt_at": "2026-11-23T01:00:00Z",
        "reported_at": "2026-11-23T00:59:00Z",
    }
    listed = {**NO_UNROUTED, "cases": [unrouted]}
    fake.answer("routing", "GET", "/v1/cases/unrouted", 200, json=listed)
    sign_in(client, "co")
    fragment = client.get("/coordinator/unrouted", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert 'id="unrouted"' in fragment.text
    assert UNROUTED_CASE in fragment.text
    assert NO_SOP in fragment.text
    assert f'action="/coordinator/cases/{UNROUTED_CASE}/route"' in fragment.text

    route = f"/v1/cases/{UNROUTED_CASE}/route"
    fake.answer("routing", "POST", route, 409, json={"detail": NO_SOP, "reason": "no_sop"})
    still = client.post(f"/coordinator/cases/{UNROUTED_CASE}/route", follow_redirects=False)
    assert still.status_code == 409
    assert NO_SOP in still.text
    routed_body = {"case_id": UNROUTED_CASE, "routed": True, "already_routed": False}
    fake.answer("routing", "POST", route, 200, json=routed_body)
    routed = client.post(f"/coordinator/cases/{UNROUTED_CASE}/route", follow_redirects=False)
    assert routed.status_code == 303
    assert routed.headers["location"] == f"/coordinator?routed={UNROUTED_CASE}#unrouted"
    [*_, sent] = fake.sent("routing", route)
    assert sent.headers["authorization"] == "Bearer co"


# --- on call: exhausted chains head the coordinator page ------------------------------------

NO_ALERTS: dict[str, Any] = {"alerts": [], "limit": 500, "offset": 0, "next_offset": None}
PAGED_CASE = "3514-0C0000000A"
WAITING_CASE = "3513-0C0000000B"


def _alert(case_id: str, **changes: Any) -> dict[str, Any]:
    """An open alert as routing lists it (invented ids)."""
    alert = {
        "alert_id": f"{case_id}-r1-oncall",
        "case_id": case_id,
        "district_code": case_id[:4],
        "referral_id": f"{case_id}-r1",
        "agency_id": "dp3ap2kb-test",
        "priority": "emergency",
        "reason": "deadline_missed",
        "opened_at": "2026-11-23T04:00:00Z",
        "rounds_paged": 2,
        "rounds": 3,
        "next_page_at": "2026-11-23T04:30:00Z",
        "last_paged_at": "2026-11-23T04:15:00Z",
        "contacts": [
            {"contact_id": "piket-test", "channels": ["sms", "webhook"]},
            {"contact_id": "kepala-test", "channels": ["email"]},
        ],
        "acknowledged": False,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "acknowledged_via": None,
    }
    return {**alert, **changes}


def _alerts_in_pages(fake: FakeServices, *pages: list[dict[str, Any]]) -> None:
    """Routing's list, one page per ``offset`` asked (500 a page)."""

    def listed(request: httpx.Request) -> httpx.Response:
        index = int(request.url.params["offset"]) // 500
        more = index + 1 < len(pages)
        next_offset = (index + 1) * 500 if more else None
        body = {**NO_ALERTS, "alerts": pages[index], "offset": index * 500}
        return httpx.Response(200, json={**body, "next_offset": next_offset})

    fake.routes["routing", "GET", "/v1/oncall/alerts"] = listed


def _coordinator_upstreams(fake: FakeServices) -> None:
    fake.answer("routing", "GET", "/v1/stats", 200, json=STATS)
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": []})


def test_every_escalation_reason_and_page_channel_has_a_label_in_both_languages() -> None:
    keys = {f"enum.escalation_reason.{r}" for r in EscalationReason}
    keys |= {f"enum.page_channel.{c}" for c in DeliveryChannel}
    for texts in CATALOGUE.values():
        assert keys - set(texts) == set()


def test_the_coordinator_page_opens_with_every_unacknowledged_alert(
    client: TestClient, fake: FakeServices
) -> None:
    last_round = _alert(WAITING_CASE, priority="urgent", reason="declined", rounds_paged=3,
                        next_page_at=None, agency_id="coord-test")  # fmt: skip
    _alerts_in_pages(fake, [_alert(PAGED_CASE)], [last_round])
    _coordinator_upstreams(fake)
    sign_in(client, "co")
    page = client.get("/coordinator?district=3514")  # narrowed: alerts of 3513 still shown
    assert page.status_code == 200
    main = page.text.split('<main id="main">', 1)[1]
    # Right under the page's title, before the unrouted cases and everything else.
    assert re.match(r'\s*<h1>[^<]*</h1>\s*<section id="oncall" class="oncall urgent"', main)
    section = main.split("</section>", 1)[0]
    assert 'role="alert"' in section
    assert "Belum ditanggapi: 2." in section
    for case_id in (PAGED_CASE, WAITING_CASE):
        assert f'<a href="/cases/{case_id}">{case_id}</a>' in section
        alert_id = f"{case_id}-r1-oncall"
        assert f'action="/coordinator/alerts/{alert_id}/acknowledge"' in section
    assert "Kab. Pasuruan (3514)" in section
    assert "Kab. Probolinggo (3513)" in section
    assert "Darurat" in section
    assert "Segera" in section
    assert "dp3ap2kb-test" in section
    assert "coord-test" in section
    assert "Batas waktu terlewat" in section
    assert "Menolak rujukan" in section
    assert "2026-11-23 11:00" in section  # opened, in Asia/Jakarta
    assert "Putaran 2 dari 3" in section
    assert "Putaran 3 dari 3" in section
    assert "Panggilan berikutnya:" in section
    assert "2026-11-23 11:30" in section
    assert "Tidak ada panggilan lagi" in section
    assert "piket-test (SMS, webhook)" in section
    assert "kepala-test (surel)" in section
    asked = fake.sent("routing", "/v1/oncall/alerts")
    assert [r.url.params["offset"] for r in asked] == ["0", "500"]
    assert all(r.url.params["open"] == "true" for r in asked)
    assert all(r.headers["authorization"] == "Bearer co" for r in asked)

    client.get("/lang?to=en&next=/coordinator")
    english = client.get("/coordinator").text.split("</section>", 1)[0]
    assert "Not acknowledged: 2." in english
    assert "Round 2 of 3" in english
    assert "No more pages" in english
    assert "Declined the referral" in english
    assert "kepala-test (e-mail)" in english


def test_acknowledging_an_alert_calls_routing_and_comes_back_with_a_confirmation(
    client: TestClient, fake: FakeServices
) -> None:
    alert = _alert(PAGED_CASE)
    acknowledge = f"/v1/oncall/alerts/{alert['alert_id']}/acknowledge"
    done = {**alert, "acknowledged": True, "acknowledged_via": "console"}
    fake.answer("routing", "POST", acknowledge, 200, json={"alert": done, "first": True})
    _coordinator_upstreams(fake)
    sign_in(client, "co")
    posted = client.post(
        f"/coordinator/alerts/{alert['alert_id']}/acknowledge", follow_redirects=False
    )
    assert posted.status_code == 303
    assert posted.headers["location"] == f"/coordinator?acknowledged={PAGED_CASE}#oncall"
    (sent,) = fake.sent("routing", acknowledge)
    assert sent.headers["authorization"] == "Bearer co"
    shown = client.get(posted.headers["location"]).text
    confirmed = f"Peringatan kasus {PAGED_CASE} ditanggapi: panggilan berhenti."
    assert confirmed in shown
    assert "Tidak ada." in shown.split('id="oncall"', 1)[1].split("</section>", 1)[0]
    refresh = re.search(r'hx-get="(/coordinator/alerts\?[^"]*)"', shown)
    assert refresh
    assert refresh.group(1).endswith(f"&amp;acknowledged={PAGED_CASE}")
    kept = client.get(refresh.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
    assert confirmed in kept.text  # the next refresh does not take the confirmation away

    fake.answer("routing", "POST", acknowledge, 200, json={"alert": done, "first": False})
    again = client.post(f"/coordinator/alerts/{alert['alert_id']}/acknowledge")
    assert "sudah ditanggapi sebelumnya" in again.text

    fake.answer("routing", "POST", acknowledge, 404, json={"detail": "no on-call alert"})
    unknown = client.post(f"/coordinator/alerts/{alert['alert_id']}/acknowledge")
    assert unknown.status_code == 404
    before = len(fake.calls)
    assert client.post("/coordinator/alerts/not.an.alert/acknowledge").status_code == 404
    assert len(fake.calls) == before  # never sent to routing
    sign_in(client, "pt")
    refused = client.post(f"/coordinator/alerts/{alert['alert_id']}/acknowledge")
    assert refused.status_code == 403
    assert len(fake.sent("routing", acknowledge)) == 3


def test_the_alerts_section_refreshes_and_announces_only_alerts_it_did_not_show(
    client: TestClient, fake: FakeServices
) -> None:
    first = _alert(PAGED_CASE)
    _alerts_in_pages(fake, [first])
    sign_in(client, "co")
    opened = client.get("/coordinator/alerts", headers={"HX-Request": "true"})
    assert 'role="alert"' in opened.text
    refresh = re.search(r'hx-get="(/coordinator/alerts\?shown=[0-9a-f,]+)"', opened.text)
    assert refresh, "the section does not refresh itself"
    assert 'hx-trigger="poll" hx-swap="outerHTML" data-poll="3"' in opened.text
    assert "<html" not in opened.text  # a fragment, swapped into the page

    same = client.get(refresh.group(1), headers={"HX-Request": "true"})
    assert PAGED_CASE in same.text
    assert 'role="alert"' not in same.text  # read out once, not every 3 s

    _alerts_in_pages(fake, [first, _alert(WAITING_CASE)])
    grown = client.get(refresh.group(1), headers={"HX-Request": "true"})
    assert WAITING_CASE in grown.text
    assert 'role="alert"' in grown.text


def test_without_routings_alerts_the_page_renders_and_the_section_says_so(
    client: TestClient, fake: FakeServices
) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("routing is away", request=request)

    fake.routes["routing", "GET", "/v1/oncall/alerts"] = unreachable
    _coordinator_upstreams(fake)
    sign_in(client, "co")
    page = client.get("/coordinator")
    assert page.status_code == 200
    section = page.text.split('id="oncall"', 1)[1].split("</section>", 1)[0]
    assert "layanan routing tidak menjawab" in section
    assert 'role="alert"' in section
    assert 'id="unrouted"' in page.text
    assert "<svg" in page.text
    opening_tag = section.split(">", 1)[0]
    assert 'hx-get="/coordinator/alerts?shown=&amp;unreadable=1"' in opening_tag
    again = client.get("/coordinator/alerts?shown=&unreadable=1")
    assert "layanan routing tidak menjawab" in again.text
    assert 'role="alert"' not in again.text  # said once while routing stays away

    fake.answer("routing", "GET", "/v1/oncall/alerts", 401, json={"detail": "revoked"})
    gone = client.get("/coordinator/alerts", follow_redirects=False)
    assert gone.status_code == 303  # a refused token is never taken for routing being away
    assert gone.headers["location"] == "/signin?expired=1"


def test_only_alerts_the_section_had_not_shown_make_it_speak() -> None:
    now = datetime(2026, 11, 23, 4, 20, tzinfo=UTC)
    one, two = _alert(PAGED_CASE), _alert(WAITING_CASE)
    opened = views.oncall_board([one], now)
    assert opened.announce
    assert opened.count == 1
    assert opened.rows[0].open_for == timedelta(minutes=20)
    assert not views.oncall_board([one], now, opened.marks).announce
    assert views.oncall_board([one, two], now, opened.marks).announce
    assert not views.oncall_board([], now, opened.marks).announce
    assert not views.oncall_board([], now).announce  # nothing open: nothing to say
    away = views.oncall_board(None, now, opened.marks)
    assert away.unreadable
    assert away.announce
    assert away.rows == []
    assert not views.oncall_board(None, now, "", unreadable_before=True).announce
    assert views.oncall_board([one], now, opened.marks, unreadable_before=True).announce
    not_yet = views.oncall_board([_alert(PAGED_CASE, rounds=None, rounds_paged=0,
                                         contacts=[])], now)  # fmt: skip
    assert (not_yet.rows[0].rounds, not_yet.rows[0].contacts) == (None, [])


# --- the districts a token serves ----------------------------------------------------------

SOPS_IN_FORCE = {
    "in_force": {
        "3513": {"sop_id": "sop-3513", "version": 1, "name": "CONTOH", "rules": []},
        "3514": {"sop_id": "sop-3514", "version": 1, "name": "CONTOH", "rules": []},
    },
    "refused_files": [],
}


def scope_shown(page: httpx.Response) -> str:
    """What the header says the signed-in token serves."""
    found = re.search(r'<span class="scope">([^<]*)</span>', page.text)
    assert found, "no scope in the header"
    return found.group(1)


def options(page: httpx.Response, select_id: str) -> list[tuple[str, bool]]:
    """(value, selected) of each option of one select."""
    select = re.search(rf'<select id="{select_id}"[^>]*>(.*?)</select>', page.text, re.S)
    assert select, f"no select #{select_id}"
    return [
        (value, bool(selected))
        for value, selected in re.findall(r'<option value="([^"]*)"( selected)?>', select.group(1))
    ]


@pytest.mark.parametrize(
    ("token", "home", "shown"),
    [
        ("co14", "/coordinator", "Kab. Pasuruan (3514)"),
        ("co2", "/coordinator", "Kab. Probolinggo (3513), Kab. Pasuruan (3514)"),
        ("co", "/coordinator", "Provinsi (semua kabupaten)"),
        ("op14", "/reports/new", "Kab. Pasuruan (3514)"),
        ("au14", "/audit", "Kab. Pasuruan (3514)"),
    ],
)
def test_the_header_names_the_districts_the_token_serves_as_the_session_keeps_them(
    client: TestClient,
    fake: FakeServices,
    sessions: MemorySessions,
    token: str,
    home: str,
    shown: str,
) -> None:
    fake.answer("routing", "GET", "/v1/stats", 200, json=STATS)
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": []})
    sign_in(client, token)
    (record,) = sessions.rows.values()
    listed = fake.districts.get(token)
    assert record.districts == (None if listed is None else tuple(listed))
    page = client.get(home)
    assert page.status_code == 200
    assert scope_shown(page) == shown
    calls = len(fake.calls)
    assert scope_shown(client.get("/cases")) == shown  # from the session: intake not asked
    assert len(fake.calls) == calls


def test_a_district_without_a_name_shows_its_code_and_english_names_them_too(
    client: TestClient, fake: FakeServices
) -> None:
    fake.tokens["co-far"] = ("coordinator", None)
    fake.districts["co-far"] = ["3514", "3599"]
    sign_in(client, "co-far")
    assert scope_shown(client.get("/audit")) == "Kab. Pasuruan (3514), 3599"
    english = client.get("/lang?to=en&next=/audit")
    assert scope_shown(english) == "Pasuruan Regency (3514), 3599"
    sign_in(client, "pt")
    partner = client.get(f"/cases/{CASE_ID}/details")
    assert "pkm-bangil" in partner.text
    assert 'class="scope"' not in partner.text


def test_the_report_form_offers_only_the_operators_districts(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", "/v1/sops", 200, json=SOPS_IN_FORCE)
    sign_in(client, "op14")
    form_page = client.get("/reports/new")
    assert options(form_page, "f-district-code") == [("3514", True)]
    assert "Kab. Pasuruan (3514)" in form_page.text
    assert fake.sent("routing", "/v1/sops") == []  # the token's own: nothing to ask

    sign_in(client, "op")  # province level: every district with an SOP in force
    form_page = client.get("/reports/new")
    assert options(form_page, "f-district-code") == [
        ("", False),
        ("3513", False),
        ("3514", False),
    ]
    (asked,) = fake.sent("routing", "/v1/sops")
    assert asked.headers["authorization"] == "Bearer op"


def test_without_routings_sops_a_province_operator_types_the_district(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", "/v1/sops", 503, text="down")
    sign_in(client, "op")
    form_page = client.get("/reports/new")
    assert form_page.status_code == 200
    assert re.search(r'<input id="f-district-code" name="district_code"', form_page.text)


def test_intake_refusing_a_district_shows_beside_the_district_choice(
    client: TestClient, fake: FakeServices
) -> None:
    refusal = "kabupaten 3513 tidak Anda layani / you do not serve district 3513"
    fake.answer(
        "intake",
        "POST",
        "/v1/reports",
        422,
        json={"detail": [{"field": "district_code", "problem": refusal}]},
    )
    sign_in(client, "op14")
    page = client.post("/reports", data={"channel": "hotline", "district_code": "3513"})
    assert page.status_code == 422
    select = page.text.index('<select id="f-district-code"')
    problem = page.text.index(refusal)
    assert 0 < problem - select < 800
    assert 'aria-invalid="true" aria-describedby="p-district-code-1' in page.text[select:problem]
    assert options(page, "f-district-code") == [("3514", True)]  # offered again, nothing else
    (sent,) = fake.sent("intake", "/v1/reports")
    assert json.loads(sent.content)["district_code"] == "3513"


def test_a_coordinator_of_several_districts_narrows_every_figure_to_one(
    client: TestClient, fake: FakeServices
) -> None:
    # Missed deadlines are listed one by one, with their referral ids.
    in_3513 = _referral("r-3513", "urgent", 5, case_id="3513-ABCDEFGHJK", deadline_missed=True)
    in_3514 = _referral("r-3514", "urgent", 5, deadline_missed=True)
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": [in_3513, in_3514]})
    fake.answer("routing", "GET", "/v1/stats", 200, json=STATS)
    fake.answer("routing", "GET", "/v1/stats.csv", 200, text="s\r\n")
    sign_in(client, "co2")
    everything = client.get("/coordinator")
    assert options(everything, "district") == [("", True), ("3513", False), ("3514", False)]
    assert "r-3513" in everything.text
    assert "r-3514" in everything.text
    assert "district" not in fake.sent("routing", "/v1/stats")[-1].url.params

    narrowed = client.get("/coordinator?district=3513")
    assert narrowed.status_code == 200
    assert options(narrowed, "district") == [("", False), ("3513", True), ("3514", False)]
    assert fake.sent("routing", "/v1/stats")[-1].url.params["district"] == "3513"
    assert "r-3513" in narrowed.text
    assert "r-3514" not in narrowed.text
    assert 'hx-get="/coordinator/open?district=3513"' in narrowed.text
    assert "stats.csv?from=" in narrowed.text
    assert "&amp;district=3513" in narrowed.text
    fragment = client.get("/coordinator/open?district=3514")
    assert "r-3514" in fragment.text
    assert "r-3513" not in fragment.text
    client.get("/coordinator/stats.csv?district=3513")
    assert fake.sent("routing", "/v1/stats.csv")[-1].url.params["district"] == "3513"
    assert fake.sent("routing", "/v1/sops") == []  # its districts come with the session


def test_a_single_district_coordinator_sees_its_name_and_no_other_district(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": []})
    fake.answer("routing", "GET", "/v1/stats", 200, json=STATS)
    sign_in(client, "co14")
    page = client.get("/coordinator")
    assert 'id="district"' not in page.text
    assert '<p class="scope">Kabupaten: Kab. Pasuruan (3514)</p>' in page.text
    asked_before = len(fake.calls)
    for path in ("/coordinator", "/coordinator/open", "/coordinator/stats.csv"):
        refused = client.get(f"{path}?district=3513")
        assert refused.status_code == 403, path
        assert "tidak melayani kabupaten 3513" in refused.text
        assert client.get(f"{path}?district=35x4").status_code == 400, path
        assert client.get(f"{path}?district=\u0663\u0665\u0661\u0664").status_code == 400
    assert len(fake.calls) == asked_before  # refused before any service is asked


def test_a_province_coordinator_chooses_among_the_districts_with_an_sop(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": []})
    fake.answer("routing", "GET", "/v1/stats", 200, json=STATS)
    fake.answer("routing", "GET", "/v1/sops", 200, json=SOPS_IN_FORCE)
    sign_in(client, "co")
    page = client.get("/coordinator?district=3514")
    assert options(page, "district") == [("", False), ("3513", False), ("3514", True)]
    assert '<p class="scope">Kabupaten: Kab. Pasuruan (3514)</p>' in page.text
    assert fake.sent("routing", "/v1/stats")[-1].url.params["district"] == "3514"


def test_the_coordinators_period_is_the_last_30_days_unless_asked_earlier_date_first() -> None:
    today = date(2026, 11, 30)
    assert period("", "", today) == ("2026-11-01", "2026-11-30")
    assert period("2026-11-20", "", today) == ("2026-11-20", "2026-11-30")
    assert period("2026-11-20", "2026-11-10", today) == ("2026-11-10", "2026-11-20")
    with pytest.raises(PageProblem) as refused:
        period("2026-02-30", "", today)
    assert refused.value.status == 400


def test_the_auditor_sees_the_timeline_the_verdict_and_the_bundle(
    client: TestClient, fake: FakeServices
) -> None:
    history = {
        "case_id": CASE_ID,
        "entries": [
            {
                "seq": 7,
                "time": "2026-11-23T01:00:00Z",
                "since_report_seconds": 0.0,
                "actor": "/rujuk/intake",
                "event_type": "id.rujuk.case.reported.v1",
                "summary": "reported via hotline",
                "event": {"data": {"case_id": CASE_ID}},
            }
        ],
    }
    fake.answer("audit", "GET", f"/v1/cases/{CASE_ID}/history", 200, json=history)
    fake.answer(
        "audit",
        "GET",
        f"/v1/cases/{CASE_ID}/verify",
        409,
        json={
            "case_id": CASE_ID,
            "ok": False,
            "entries_verified": 0,
            "entries_pending": 0,
            "checkpoint": {"size": 9, "signed_at": "2026-11-23T02:00:00Z", "witnesses": []},
            "failure": {"seq": 7, "kind": "hash_mismatch", "detail": "entry altered"},
        },
    )
    fake.answer(
        "audit",
        "GET",
        f"/v1/cases/{CASE_ID}/bundle",
        200,
        content=b"{}",
        headers={"content-type": "application/json"},
    )
    sign_in(client, "au")
    page = client.get(f"/audit/cases/{CASE_ID}")
    assert page.status_code == 200
    assert "reported via hotline" in page.text
    assert "VERIFIKASI GAGAL pada entri #7" in page.text
    assert fake.sent("audit", "/v1/ledger/verify") == []  # the case's proof, not the ledger's
    bundle = client.get(f"/audit/cases/{CASE_ID}/bundle")
    assert bundle.content == b"{}"
    assert CASE_ID in bundle.headers["content-disposition"]
    assert f'href="/audit/cases/{CASE_ID}/bundle"' in page.text
    sign_in(client, "au14")  # a bundle holds its case only: a district auditor takes it too
    district_page = client.get(f"/audit/cases/{CASE_ID}")
    assert f'href="/audit/cases/{CASE_ID}/bundle"' in district_page.text


@pytest.mark.parametrize(
    ("verdict", "shown", "state"),
    [
        (
            {"entries_verified": 5, "entries_pending": 2},
            ["checkpoint 120 bertanda tangan 2026-11-23 09:00: 5 entri", "2 entri yang lebih baru"],
            "true",
        ),
        ({"entries_verified": 0, "entries_pending": 3}, ["belum tercakup checkpoint"], "pending"),
        (
            {"entries_verified": 0, "entries_pending": 3, "checkpoint": None},
            ["Belum ada"],
            "pending",
        ),
    ],
)
def test_the_case_page_says_which_signed_checkpoint_its_entries_were_proven_against(
    client: TestClient, fake: FakeServices, verdict: dict[str, Any], shown: list[str], state: str
) -> None:
    history = {"case_id": CASE_ID, "entries": []}
    fake.answer("audit", "GET", f"/v1/cases/{CASE_ID}/history", 200, json=history)
    checkpoint = {"size": 120, "signed_at": "2026-11-23T02:00:00Z", "witnesses": []}
    document = {"case_id": CASE_ID, "ok": True, "checkpoint": checkpoint, "failure": None}
    fake.answer("audit", "GET", f"/v1/cases/{CASE_ID}/verify", 200, json={**document, **verdict})
    sign_in(client, "au")
    page = client.get(f"/audit/cases/{CASE_ID}")
    assert page.status_code == 200
    assert f'id="verdict" data-ok="{state}"' in page.text
    for text in shown:
        assert text in page.text
    assert "rujuk audit verify" in page.text


# --- the supervisor's crash-loop banner ----------------------------------------------------


def _supervision(path: Path, looping: bool) -> None:
    path.write_text(
        json.dumps(
            {
                "written_at": "2026-11-23T04:00:00+00:00",
                "processes": {
                    "notify": {
                        "up": not looping,
                        "restarts": 6,
                        "crash_looping": looping,
                        "since": "2026-11-23T04:05:00+00:00" if looping else None,
                        "log": "/srv/rujuk/up/logs/notify.log",
                    },
                    "intake": {
                        "up": True,
                        "restarts": 0,
                        "crash_looping": False,
                        "since": None,
                        "log": "/srv/rujuk/up/logs/intake.log",
                    },
                },
            }
        )
    )


def test_a_crash_looping_process_is_named_on_every_page_until_it_is_back(
    fake: FakeServices, sessions: MemorySessions, tmp_path: Path
) -> None:
    status = tmp_path / "supervision.json"
    _supervision(status, looping=True)
    app = console_app(fake, sessions, supervision_file=str(status))
    with TestClient(app, base_url=ORIGIN, headers={"Origin": ORIGIN}) as client:
        signin = client.get("/signin").text  # before anyone signs in, too
        assert "notify" in signin
        assert "2026-11-23 11:05" in signin
        assert "/srv/rujuk/up/logs/notify.log" in signin
        assert "terus mogok" in signin  # Bahasa Indonesia by default
        assert "intake.log" not in signin  # only the one that loops
        sign_in(client, "op")
        page = client.get("/reports/new").text
        assert "notify" in page
        assert "terus mogok" in page
        client.get("/lang?to=en&next=/reports/new")
        english = client.get("/reports/new").text
        assert "keeps crashing since 2026-11-23 11:05" in english
        assert "Read its log:" in english

        _supervision(status, looping=False)  # the supervisor saw it back
        assert "mogok" not in client.get("/reports/new").text
        assert "keeps crashing" not in client.get("/reports/new").text


@pytest.mark.parametrize("content", [None, "", "not json", '{"processes": []}', "[1]"])
def test_no_status_file_or_a_bad_one_shows_no_banner_and_no_error(
    fake: FakeServices, sessions: MemorySessions, tmp_path: Path, content: str | None
) -> None:
    status = tmp_path / "supervision.json"
    if content is not None:
        status.write_text(content)
    app = console_app(fake, sessions, supervision_file=str(status))
    with TestClient(app, base_url=ORIGIN, headers={"Origin": ORIGIN}) as client:
        page = client.get("/signin")
    assert page.status_code == 200
    assert "crash-loop" not in page.text


# --- numbers as Babel writes them, faster -------------------------------------------------


def test_numbers_and_spans_are_written_exactly_as_babel_writes_them() -> None:
    rng = random.Random(22)
    values = [0, 0.05, 0.15, 0.25, 1.005, 2.5, 3.5, 9.95, 59.99, 999.95, 1234.5, 1e6 + 0.05]
    values += [round(rng.uniform(0, 20_000), rng.choice((1, 2, 3, 6))) for _ in range(3000)]
    values += [rng.randrange(100_000) for _ in range(500)]
    for language in ("id", "en"):
        for value in values:
            for digits in (0, 1, 2):
                assert formats.number(value, language, digits) == formats.babel_number(
                    value, language, digits
                ), (value, language, digits)
                assert formats.in_unit(value, "minute", language, digits) == (
                    formats.babel_in_unit(value, "minute", language, digits)
                ), (value, language, digits)
            for unit in formats.SPAN_UNITS:
                whole = int(value) % 100
                assert formats.in_unit(whole, unit, language, pad=2) == formats.babel_in_unit(
                    whole, unit, language, pad=2
                ), (whole, unit, language)
