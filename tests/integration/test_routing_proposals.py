"""SOP proposals on routing's HTTP API with its database: propose, sign off or object,
publish from an effective date or with an override, and the ledger's record of it all."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from audit.bootstrap import create_runtime as create_audit
from audit.cli import case_history
from audit.settings import AuditSettings
from routing.bootstrap import create_app
from routing.deadlines import DeadlineWatcher
from routing.handlers import RoutingHandlers
from routing.settings import SHIPPED_SOPS, RoutingSettings
from rujuk_contracts import make_event
from rujuk_contracts.events import CaseReported, Role
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.service import ServiceRuntime
from tests.integration.access_support import announce_token, bearer, eventually

pytestmark = pytest.mark.integration

SOP_3513 = (SHIPPED_SOPS / "3513.yaml").read_text()
YAML = {"Content-Type": "application/yaml"}


def tightened(text: str, version: int, *changes: tuple[str, int, int]) -> str:
    """The SOP at ``version``, each (agency, minutes, new minutes) applied to the first
    ``refer`` item of that agency acknowledging within those minutes."""
    lines = text.replace("version: 1", f"version: {version}", 1).splitlines()
    for agency, old, new in changes:
        start = next(n for n, line in enumerate(lines) if line.strip() == f"agency: {agency}")
        at = next(
            n
            for n in range(start, len(lines))
            if lines[n].strip() == f"acknowledge_within_minutes: {old}"
        )
        lines[at] = lines[at].replace(str(old), str(new))
    return "\n".join(lines) + "\n"


V2 = tightened(SOP_3513, 2, ("uptppa-probolinggo", 120, 60), ("lbh-probolinggo", 1440, 720))


class Clock:
    """The wall clock, moved on by hand."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


class Parties:
    def __init__(self, http: httpx.AsyncClient, clock: Clock) -> None:
        self.http = http
        self.clock = clock
        self.partners: dict[str, dict[str, str]] = {}

    @property
    def runtime(self) -> ServiceRuntime:
        return self.http.app.state.runtime  # type: ignore[attr-defined,no-any-return]

    async def partner(self, agency_id: str) -> dict[str, str]:
        if agency_id not in self.partners:
            _, secret = await announce_token(
                self.runtime.settings.nats_url, Role.PARTNER, agency_id
            )
            self.partners[agency_id] = bearer(secret)
            await eventually(
                lambda: self.http.get("/v1/sop-proposals", headers=self.partners[agency_id]), 200
            )
        return self.partners[agency_id]

    async def route(self, case_id: str, reported_at: datetime | None = None) -> int:
        """Route an adult's report of neglect in 3513 now (reported now unless said); the SOP
        version it was routed by."""
        handlers: RoutingHandlers = self.http.app.state.handlers  # type: ignore[attr-defined]
        case = CaseReported(
            case_id=case_id,
            channel="walk_in",
            reported_at=reported_at or self.clock(),
            triage=TriageFacts(
                violence_types=["neglect"], age_group="adult", sex="female", district_code="3513"
            ),
        )
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            await handlers.on_case_reported(conn, make_event(case, source="/rujuk/test"), case)
            version: int = await conn.fetchval(
                "SELECT sop_version FROM cases WHERE case_id = $1", case_id
            )
        return version


@pytest.fixture
async def parties(clean_bus: str, database_url: str) -> AsyncIterator[Parties]:
    clock = Clock()
    app = create_app(RoutingSettings(nats_url=clean_bus, database_url=database_url), clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://routing"
        ) as client,
    ):
        client.app = app  # type: ignore[attr-defined]
        _, secret = await announce_token(clean_bus, Role.COORDINATOR)
        client.headers.update(bearer(secret))
        await eventually(lambda: client.get("/v1/sop-proposals"), 200)
        yield Parties(client, clock)


async def test_an_sop_binds_the_agencies_whose_duties_change_once_they_signed_it_off(
    parties: Parties,
) -> None:
    http = parties.http
    broken = V2.replace("priority: routine", "priority: whenever", 1)
    refused = await http.post("/v1/sop-proposals", content=broken, headers=YAML)
    assert refused.status_code == 422
    assert "got 'whenever'" in refused.json()["errors"][0]
    stale = await http.post("/v1/sop-proposals", content=SOP_3513, headers=YAML)
    assert stale.status_code == 409
    assert "publish a version above 1" in stale.json()["detail"]

    created = await http.post("/v1/sop-proposals", content=V2, headers=YAML)
    assert created.status_code == 201, created.text
    proposal = created.json()
    pid = proposal["proposal_id"]
    assert {a["agency_id"]: a["duty_changes"] for a in proposal["asked"]} == {
        "lbh-probolinggo": ["shorter_deadline"],
        "uptppa-probolinggo": ["shorter_deadline"],
    }
    assert proposal["awaiting"] == ["lbh-probolinggo", "uptppa-probolinggo"]
    assert proposal["base_version"] == 1
    assert set(proposal["diff"]["summary"]["rules_changed"]) == {
        "case-management",
        "legal-aid-for-police-process",
    }
    assert proposal["duty_changes"]["uptppa-probolinggo"][0]["after"] == "60 min"
    examples = proposal["examples"]
    assert len(examples) == V2.count("\n  - id: ", V2.index("\nexamples:")) > 0
    assert all(e["passed"] and e["speaks_for"] for e in examples)
    assert proposal["examples_dropped"] == []
    assert proposal["links"]["simulation"]["href"].startswith("/v1/sops/simulations")
    again = await http.post("/v1/sop-proposals", content=V2, headers=YAML)
    assert (again.status_code, again.json()["proposal_id"]) == (200, pid)
    document = await http.get(f"/v1/sop-proposals/{pid}/document")
    assert document.text == V2

    # A partner named in the directory sees it; only an asked one answers; another district's
    # partner sees nothing of it.
    police = await parties.partner("polres-probolinggo-ppa")
    listed = (await http.get("/v1/sop-proposals", headers=police)).json()["proposals"]
    assert [p["proposal_id"] for p in listed] == [pid]
    agree = {"decision": "agree"}
    not_asked = await http.post(f"/v1/sop-proposals/{pid}/answers", json=agree, headers=police)
    assert not_asked.status_code == 403
    elsewhere = await parties.partner("pkm-bangil")
    assert (await http.get(f"/v1/sop-proposals/{pid}", headers=elsewhere)).status_code == 404
    assert (await http.get("/v1/sop-proposals", headers=elsewhere)).json()["proposals"] == []

    publish = f"/v1/sop-proposals/{pid}/publish"
    nobody = await http.post(publish, json={})
    assert nobody.status_code == 409
    assert nobody.json()["awaiting"] == ["lbh-probolinggo", "uptppa-probolinggo"]

    upt, lbh = await parties.partner("uptppa-probolinggo"), await parties.partner("lbh-probolinggo")
    answers = f"/v1/sop-proposals/{pid}/answers"
    reasonless = await http.post(answers, json={"decision": "object"}, headers=lbh)
    assert reasonless.status_code == 422
    typed = await http.post(
        answers, json={"decision": "object", "reason": "CONTOH terlalu cepat"}, headers=lbh
    )
    assert typed.status_code == 422  # free text is no reason
    assert (await http.post(answers, json=agree, headers=upt)).status_code == 200
    objection = {"decision": "object", "reason": "deadline_unachievable"}
    standing = (await http.post(answers, json=objection, headers=lbh)).json()
    assert standing["agreed"] == ["uptppa-probolinggo"]
    assert standing["objected"] == [
        {"agency_id": "lbh-probolinggo", "reason": "deadline_unachievable"}
    ]
    assert standing["awaiting"] == []
    objected = await http.post(publish, json={})
    assert objected.status_code == 409
    assert "lbh-probolinggo (deadline_unachievable)" in objected.json()["detail"]

    assert (await http.post(answers, json=agree, headers=lbh)).json()["agreed"] == [
        "lbh-probolinggo",
        "uptppa-probolinggo",
    ]  # a later answer replaces the earlier one
    past = (parties.clock() - timedelta(minutes=5)).isoformat()
    assert (await http.post(publish, json={"effective_at": past})).status_code == 422
    naive = await http.post(publish, json={"effective_at": "2030-01-01T00:00:00"})
    assert naive.status_code == 422
    beyond = await http.post(publish, json={"effective_at": "9999-12-31T23:00:00-14:00"})
    assert beyond.status_code == 422
    deep = await http.post("/v1/sop-proposals", content="[" * 5000 + "]" * 5000, headers=YAML)
    assert deep.status_code == 422
    assert "nested too deeply" in deep.text
    effective = parties.clock() + timedelta(hours=1)
    published = await http.post(publish, json={"effective_at": effective.isoformat()})
    assert published.status_code == 200, published.text
    body = published.json()
    assert (body["version"], body["override_reason"], body["agencies_not_agreed"]) == (2, None, [])
    assert body["proposal"]["state"] == "published"
    late = await http.post(answers, json=agree, headers=upt)
    assert late.status_code == 409

    # Before its effective date the version in force routes new cases, after it the new one;
    # sop.in_force is announced when it comes into force, not at publication.
    assert await parties.route("3513-AB12CD34EF") == 1
    assert (await http.get("/v1/sops")).json()["in_force"]["3513"]["version"] == 1
    watcher: DeadlineWatcher = http.app.state.watcher  # type: ignore[attr-defined]
    pool = parties.runtime.pool
    announced = (
        "SELECT count(*) FROM sop_announcements WHERE district_code = '3513' AND version = 2"
    )
    await watcher.announce_sops_taking_effect()
    assert await pool.fetchval(announced) == 0
    parties.clock.ahead = timedelta(hours=1, minutes=1)
    await watcher.announce_sops_taking_effect()
    assert await pool.fetchval(announced) == 1
    assert await parties.route("3513-AB12CD34EG") == 2
    # A case reported before the date and taken only now (a backlog) keeps the version in force
    # when it was reported, whichever replica takes it and whenever.
    before_the_date = effective - timedelta(minutes=1)
    assert await parties.route("3513-AB12CD34EH", reported_at=before_the_date) == 1
    assert (await http.get("/v1/sops")).json()["in_force"]["3513"]["version"] == 2


async def test_publishing_directly_binds_no_agency_without_an_override(parties: Parties) -> None:
    http = parties.http
    same_duties = SOP_3513.replace("version: 1", "version: 2", 1)
    assert (await http.post("/v1/sops", content=same_duties, headers=YAML)).status_code == 201
    open_one = await http.post(
        "/v1/sop-proposals", content=tightened(SOP_3513, 3, ("dinsos-probolinggo", 480, 60)),
        headers=YAML,
    )  # fmt: skip
    assert open_one.status_code == 201
    v3 = tightened(SOP_3513, 3, ("polres-probolinggo-ppa", 240, 120))
    refused = await http.post("/v1/sops", content=v3, headers=YAML)
    assert refused.status_code == 409
    assert refused.json()["asked"] == [
        {"agency_id": "polres-probolinggo-ppa", "duty_changes": ["shorter_deadline"]}
    ]
    assert "/v1/sop-proposals" in refused.json()["detail"]
    typo = await http.post("/v1/sops?override=because", content=v3, headers=YAML)
    assert typo.status_code == 422
    assert typo.json()["errors"][0].startswith("override: 'because' is not one of")
    forced = await http.post("/v1/sops?override=urgent_safety_fix", content=v3, headers=YAML)
    assert forced.status_code == 201, forced.text
    row = await parties.runtime.pool.fetchrow(
        "SELECT override_reason, agencies_not_agreed FROM sops WHERE version = 3"
    )
    assert tuple(row) == ("urgent_safety_fix", ["polres-probolinggo-ppa"])
    assert await parties.route("3513-AB12CD34EH") == 3
    # The open proposal for v3 was overtaken: superseded, it takes no answers.
    pid = open_one.json()["proposal_id"]
    assert (await http.get(f"/v1/sop-proposals/{pid}")).json()["state"] == "superseded"


async def test_the_ledger_replays_how_the_sop_in_force_came_to_be(
    parties: Parties, database_url: str
) -> None:
    http = parties.http
    audit = create_audit(
        AuditSettings(nats_url=parties.runtime.settings.nats_url, database_url=database_url)
    )
    async with audit.running():
        first = tightened(SOP_3513, 2, ("uptppa-probolinggo", 120, 90))
        assert (await http.post("/v1/sop-proposals", content=first, headers=YAML)).is_success
        pid = (await http.post("/v1/sop-proposals", content=V2, headers=YAML)).json()["proposal_id"]
        answers = f"/v1/sop-proposals/{pid}/answers"
        upt, lbh = (
            await parties.partner("uptppa-probolinggo"),
            await parties.partner("lbh-probolinggo"),
        )
        objection = {"decision": "object", "reason": "needs_rakor_discussion"}
        assert (await http.post(answers, json=objection, headers=lbh)).status_code == 200
        assert (await http.post(answers, json={"decision": "agree"}, headers=upt)).is_success
        published = await http.post(
            f"/v1/sop-proposals/{pid}/publish", json={"override_reason": "rakor_decision"}
        )
        assert published.json()["agencies_not_agreed"] == ["lbh-probolinggo"]
        expected = [
            "sop.proposed",
            "sop.proposal_withdrawn",  # the first, superseded by the second
            "sop.proposed",
            "sop.objected",
            "sop.signed_off",
            "sop.published",
            "sop.in_force",
        ]

        async def story() -> list[str]:
            entries = await case_history(database_url, "sop-3513")
            return [e.event_type.split(".", 2)[2].rsplit(".", 1)[0] for e in entries]

        deadline = asyncio.get_running_loop().time() + 20
        while (found := await story())[-len(expected) :] != expected:
            assert asyncio.get_running_loop().time() < deadline, found
            await asyncio.sleep(0.1)
    assert found[0] == "sop.in_force"  # the file in force at start, then how v2 came to be


def without_example(text: str, example_id: str) -> str:
    """The SOP with one example's block removed (up to the next example)."""
    start = text.index(f"  - id: {example_id}\n")
    end = text.find("\n  - id: ", start + 1)
    return text[:start] + (text[end + 1 :] if end != -1 else "")


async def test_a_proposal_that_drops_an_agencys_example_shows_it(parties: Parties) -> None:
    """An agency's mandate left out of the SOP is shown on the proposal, run through it."""
    dropped = "pengaduan-every-report-has-a-case-manager"
    v2 = without_example(SOP_3513.replace("version: 1", "version: 2", 1), dropped)
    proposed = await parties.http.post("/v1/sop-proposals", content=v2, headers=YAML)
    assert proposed.status_code == 201, proposed.text
    body = proposed.json()
    assert dropped not in {e["example_id"] for e in body["examples"]}
    assert [(e["example_id"], e["speaks_for"], e["passed"]) for e in body["examples_dropped"]] == [
        (dropped, "uptppa-probolinggo", True)
    ]


async def test_a_proposal_is_compared_with_the_version_still_to_come(parties: Parties) -> None:
    """v2, in force only tomorrow, gives legal aid a day more; v3 taking it back asks LBH
    (compared with v1, in force today, it would look like no change)."""
    http = parties.http
    relaxed = tightened(SOP_3513, 2, ("lbh-probolinggo", 1440, 2880))
    proposed = (await http.post("/v1/sop-proposals", content=relaxed, headers=YAML)).json()
    assert proposed["asked"] == []
    tomorrow = (parties.clock() + timedelta(days=1)).isoformat()
    publish = f"/v1/sop-proposals/{proposed['proposal_id']}/publish"
    assert (await http.post(publish, json={"effective_at": tomorrow})).status_code == 200
    back = SOP_3513.replace("version: 1", "version: 3", 1)
    again = (await http.post("/v1/sop-proposals", content=back, headers=YAML)).json()
    assert again["base_version"] == 2
    assert {a["agency_id"]: a["duty_changes"] for a in again["asked"]}["lbh-probolinggo"] == [
        "shorter_deadline"
    ]
