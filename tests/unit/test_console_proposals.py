"""The console's SOP proposal pages against a fake routing whose answers are built with
routing's own diff, duty and simulation logic: propose (paste or file; refusals shown with
their lines), the proposal beside the version in force, the impact simulation's progress and
tables, publish and withdraw; a partner's list, its own duties, agree and object."""

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from console.proposal_view import BadInput, effective_at, local_minute, simulation_period
from routing.simulate import PastCase, simulate
from routing.sop import parse_sop
from routing.sop.diff import rule_diff
from routing.sop.duties import duty_changes
from rujuk_contracts.triage import TriageFacts
from tests.fake_sessions import MemorySessions
from tests.integration.test_routing_proposals import SOP_3513, V2
from tests.unit.test_console import ORIGIN, FakeServices, console_app, sign_in

PID = "prop-" + "a" * 32
SID = "sim-" + "b" * 32
BEFORE, AFTER = parse_sop(SOP_3513), parse_sop(V2)
JAKARTA = ZoneInfo("Asia/Jakarta")


def answer(decision: str, reason: str | None = None) -> dict[str, Any]:
    return {"decision": decision, "reason": reason, "note_ref": None, "via": "console",
            "answered_at": "2026-05-20T02:00:00Z"}  # fmt: skip


def proposal(
    answers: dict[str, dict[str, Any] | None] | None = None, state: str = "open"
) -> dict[str, Any]:
    """A proposal of v2 of 3513 as routing's GET /v1/sop-proposals/{id} gives it."""
    asked = duty_changes(BEFORE, AFTER)
    answers = answers or {}
    rows = [
        {"agency_id": a.agency_id, "duty_changes": [c.value for c in a.codes],
         "answer": answers.get(a.agency_id)}
        for a in asked
    ]  # fmt: skip
    return {
        "proposal_id": PID, "district_code": "3513", "sop_id": "sop-3513", "version": 2,
        "sha256": "c" * 64, "base_version": 1, "state": state, "proposed_by": "coordinator:t",
        "proposed_at": "2026-05-20T01:00:00Z", "closed_at": None, "closed_by": None,
        "asked": rows,
        "agreed": [a for a, v in answers.items() if v and v["decision"] == "agree"],
        "objected": [{"agency_id": a, "reason": v["reason"]} for a, v in answers.items()
                     if v and v["decision"] == "object"],
        "awaiting": [r["agency_id"] for r in rows if r["answer"] is None],
        "links": {},
        "duty_changes": {
            a.agency_id: [
                {"code": c.code.value, "service": c.service.value if c.service else None,
                 "rule_id": c.rule_id, "before": c.before, "after": c.after}
                for c in a.changes
            ]
            for a in asked
        },
        "diff": rule_diff(BEFORE, AFTER).to_json(),
    }  # fmt: skip


def neglect(case_id: str, day: int) -> PastCase:
    facts = TriageFacts(
        violence_types=["neglect"], age_group="adult", sex="female", district_code="3513"
    )
    return PastCase(case_id, datetime(2026, 3, day, 3, tzinfo=UTC), facts)


def simulation(state: str, sha256: str = "c" * 64) -> dict[str, Any]:
    done = state == "done"
    result = simulate(
        BEFORE, AFTER, [neglect("3513-ABCDEFGHJK", 2), neglect("3513-BCDEFGHJKM", 10)]
    )
    return {
        "simulation_id": SID, "district_code": "3513", "state": state,
        "cases_done": 2 if done else 1, "cases_total": 2,
        "base": {"version": 1, "origin": "file", "sha256": "d" * 64},
        "candidate": {"version": 2, "sha256": sha256},
        "period": {"from": "2026-02-19T17:00:00Z", "to": "2026-05-20T17:00:00Z"},
        "requested_by": "coordinator:t", "requested_at": "2026-05-20T03:00:00Z",
        "started_at": None, "finished_at": None, "failure": None,
        "diff": rule_diff(BEFORE, AFTER).to_json(),
        "result": json.loads(json.dumps(result.to_json())) if done else None,
    }  # fmt: skip


SOPS = {
    "in_force": {
        "3513": {"sop_id": "sop-3513", "version": 1, "name": "CONTOH 3513", "origin": "file",
                 "rules": []},
        "3514": {"sop_id": "sop-3514", "version": 1, "name": "CONTOH 3514", "origin": "file",
                 "rules": []},
    },
    "refused_files": {},
}  # fmt: skip


@pytest.fixture
def fake() -> FakeServices:
    services = FakeServices()
    services.tokens |= {"co13": ("coordinator", None), "lbh": ("partner", "lbh-probolinggo")}
    services.districts["co13"] = ["3513"]
    services.answer("routing", "GET", "/v1/sops", 200, json=SOPS)
    services.answer("routing", "GET", f"/v1/sop-proposals/{PID}", 200, json=proposal())
    services.answer(
        "routing", "GET", f"/v1/sop-proposals/{PID}/document", 200, text=V2,
        headers={"content-type": "application/yaml"},
    )  # fmt: skip
    return services


@pytest.fixture
def client(fake: FakeServices) -> Iterator[TestClient]:
    app = console_app(fake, MemorySessions())
    with TestClient(app, base_url=ORIGIN, headers={"Origin": ORIGIN}) as test_client:
        yield test_client


def listed(*proposals: dict[str, Any]) -> dict[str, Any]:
    return {"proposals": list(proposals), "limit": 100, "offset": 0, "next_offset": None}


# --- coordinator ---------------------------------------------------------------------------


def test_the_sops_page_shows_each_served_districts_sop_and_its_proposals(
    client: TestClient, fake: FakeServices
) -> None:
    past = proposal(state="withdrawn") | {"proposal_id": "prop-" + "e" * 32}
    fake.answer("routing", "GET", "/v1/sop-proposals", 200, json=listed(proposal(), past))
    sign_in(client, "co13")
    page = client.get("/coordinator/sops")
    assert page.status_code == 200, page.text
    assert 'data-district="3513"' in page.text
    assert 'data-district="3514"' not in page.text  # not served by this token
    assert "sop-3513 v1" in page.text
    assert f'href="/coordinator/sops/proposals/{PID}"' in page.text
    assert "0 setuju, 0 keberatan, 2 belum menjawab" in page.text
    assert "Ditarik" in page.text
    assert 'enctype="multipart/form-data"' in page.text


def test_a_pasted_or_uploaded_version_goes_to_routing_as_yaml_and_opens_its_proposal(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "POST", "/v1/sop-proposals", 201, json=proposal())
    sign_in(client, "co13")
    pasted = client.post(
        "/coordinator/sops/proposals", data={"document": V2}, follow_redirects=False
    )
    assert pasted.status_code == 303
    assert pasted.headers["location"] == f"/coordinator/sops/proposals/{PID}"
    uploaded = client.post(
        "/coordinator/sops/proposals",
        files={"file": ("3513-v2.yaml", V2.encode(), "application/yaml")},
        data={"document": ""},
        follow_redirects=False,
    )
    assert uploaded.status_code == 303
    sent = fake.sent("routing", "/v1/sop-proposals")
    assert [r.method for r in sent] == ["POST", "POST"]
    assert all(r.headers["content-type"] == "application/yaml" for r in sent)
    assert all(r.content.decode() == V2 for r in sent)


def test_a_refused_version_shows_every_error_with_its_line_and_keeps_the_text(
    client: TestClient, fake: FakeServices
) -> None:
    errors = ["3513.yaml line 12: priority: got 'whenever'", "3513.yaml line 40: agency unknown"]
    fake.answer("routing", "POST", "/v1/sop-proposals", 422,
                json={"detail": "SOP ditolak / SOP refused", "errors": errors})  # fmt: skip
    fake.answer("routing", "GET", "/v1/sop-proposals", 200, json=listed())
    sign_in(client, "co13")
    page = client.post("/coordinator/sops/proposals", data={"document": "version: x\n<b>"})
    assert page.status_code == 422
    assert "SOP ditolak / SOP refused" in page.text
    assert "<code>3513.yaml line 12: priority: got &#39;whenever&#39;</code>" in page.text
    assert "line 40: agency unknown" in page.text
    assert "version: x\n&lt;b&gt;</textarea>" in page.text
    fake.answer("routing", "POST", "/v1/sop-proposals", 409,
                json={"detail": "publish a version above 1"})  # fmt: skip
    stale = client.post("/coordinator/sops/proposals", data={"document": SOP_3513})
    assert stale.status_code == 409
    assert "publish a version above 1" in stale.text
    empty = client.post("/coordinator/sops/proposals", data={"document": "  "})
    assert empty.status_code == 422
    posted = [r for r in fake.sent("routing", "/v1/sop-proposals") if r.method == "POST"]
    assert len(posted) == 2  # nothing sent: never asked


def test_the_proposal_page_shows_the_diff_who_is_asked_why_and_their_answers(
    client: TestClient, fake: FakeServices
) -> None:
    answers = {"uptppa-probolinggo": answer("agree"),
               "lbh-probolinggo": answer("object", "deadline_unachievable")}  # fmt: skip
    fake.answer("routing", "GET", f"/v1/sop-proposals/{PID}", 200, json=proposal(answers))
    sign_in(client, "co13")
    page = client.get(f"/coordinator/sops/proposals/{PID}")
    assert page.status_code == 200, page.text
    text = page.text
    assert "SOP 3513 v1 → SOP 3513 v2: 0 aturan baru, 0 dihapus, 2 diubah, 0 dipindah" in text
    assert re.search(r'data-rule="case-management" data-kind="changed"', text)
    assert "-  acknowledge_within_minutes: 120\n+  acknowledge_within_minutes: 60" in text
    assert '<pre class="diff"' in text
    assert (
        "Batas waktu lebih singkat — Manajemen kasus, aturan case-management: 120 min → 60 min"
        in text
    )
    assert re.search(r'data-agency="uptppa-probolinggo" data-answer="agreed"', text)
    assert re.search(r'data-agency="lbh-probolinggo" data-answer="objected"', text)
    assert "Keberatan</span>: Batas waktu tidak dapat dipenuhi" in text
    assert "1 setuju, 1 keberatan, 0 belum menjawab" in text
    # not everyone agreed: the override reason is required
    assert '<select id="override_reason" name="override_reason" required' in text
    assert 'type="datetime-local"' in text
    assert "sop-3513 v1 (berkas bawaan)" in text  # the version in force beside it


def test_when_everyone_agreed_no_override_is_required(
    client: TestClient, fake: FakeServices
) -> None:
    answers = {"uptppa-probolinggo": answer("agree"), "lbh-probolinggo": answer("agree")}
    fake.answer("routing", "GET", f"/v1/sop-proposals/{PID}", 200, json=proposal(answers))
    sign_in(client, "co13")
    page = client.get(f"/coordinator/sops/proposals/{PID}")
    assert "Semua lembaga yang diminta sudah setuju." in page.text
    assert '<select id="override_reason" name="override_reason" aria-describedby' in page.text


def test_the_simulation_starts_with_the_proposals_own_document_over_the_chosen_period(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "POST", "/v1/sops/simulations", 202,
                json={"simulation_id": SID, "url": f"/v1/sops/simulations/{SID}"})  # fmt: skip
    sign_in(client, "co13")
    started = client.post(
        f"/coordinator/sops/proposals/{PID}/simulation", data={"days": "180"},
        follow_redirects=False,
    )  # fmt: skip
    assert started.status_code == 303
    assert started.headers["location"] == (
        f"/coordinator/sops/proposals/{PID}?simulation={SID}#simulation"
    )
    dated = client.post(
        f"/coordinator/sops/proposals/{PID}/simulation",
        data={"days": "90", "from": "2026-01-01", "to": "2026-03-31"},
        follow_redirects=False,
    )
    assert dated.status_code == 303
    first, second = fake.sent("routing", "/v1/sops/simulations")
    assert dict(first.url.params) == {"days": "180"}
    assert dict(second.url.params) == {"from": "2026-01-01", "to": "2026-03-31"}
    assert first.content.decode() == V2
    assert first.headers["content-type"] == "application/yaml"
    refused = client.post(f"/coordinator/sops/proposals/{PID}/simulation", data={"days": "7"})
    assert refused.status_code == 400
    assert len(fake.sent("routing", "/v1/sops/simulations")) == 2


def test_a_running_simulation_polls_its_fragment_and_a_finished_one_shows_its_tables(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", f"/v1/sops/simulations/{SID}", 200, json=simulation("running"))
    sign_in(client, "co13")
    page = client.get(f"/coordinator/sops/proposals/{PID}?simulation={SID}")
    assert page.status_code == 200, page.text
    fragment_url = f"/coordinator/sops/proposals/{PID}/simulation/{SID}"
    assert f'hx-get="{fragment_url}" hx-trigger="load delay:1s"' in page.text
    assert '<progress id="simulation-progress" max="2" value="1"' in page.text
    assert "Berjalan: 1 dari 2 kasus" in page.text

    fake.answer("routing", "GET", f"/v1/sops/simulations/{SID}", 200, json=simulation("done"))
    fragment = client.get(fragment_url)
    assert fragment.status_code == 200
    text = fragment.text
    assert "hx-get" not in text  # done: the polling stops
    assert text.lstrip().startswith("<section") or '<section id="simulation"' in text
    assert "<html" not in text
    assert '<progress id="simulation-progress" max="2" value="2"' in text
    assert 'data-case="3513-ABCDEFGHJK"' in text
    assert "2026-W10" in text
    row = text[text.index('data-case="3513-ABCDEFGHJK"') :]
    row = row[: row.index("</tr>")]
    assert "Manajemen kasus · uptppa-probolinggo · Segera · 120 mnt" in row
    assert "Manajemen kasus · uptppa-probolinggo · Segera · 60 mnt" in row
    assert "dinsos-probolinggo" not in row  # the same on both sides: counted, not listed
    changed = simulation("done")["result"]["changed_cases"][0]
    same = [r for r in changed["referrals_before"] if r in changed["referrals_after"]]
    assert f"{len(same)} rujukan lain sama" in row
    assert len(same) >= 3
    deadlines = text[text.index('id="deadline-changes"') :]
    deadlines = deadlines[: deadlines.index("</table>")]
    assert "uptppa-probolinggo" in deadlines
    assert "120 mnt" in deadlines
    assert "60 mnt" in deadlines
    assert 'id="weekly"' in text
    assert 'id="newly-withheld"' in text
    assert 'id="newly-overriding"' in text


def test_a_simulation_of_another_document_is_not_shown_as_this_proposals(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", f"/v1/sops/simulations/{SID}", 200,
                json=simulation("done", sha256="f" * 64))  # fmt: skip
    sign_in(client, "co13")
    page = client.get(f"/coordinator/sops/proposals/{PID}?simulation={SID}")
    assert page.status_code == 404
    assert client.get(f"/coordinator/sops/proposals/{PID}?simulation=nonsense").status_code == 404


def test_publishing_now_sends_no_date_and_a_typed_date_goes_in_the_districts_zone(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "POST", f"/v1/sop-proposals/{PID}/publish", 200, json={})
    sign_in(client, "co13")
    shown = "2026-05-20T10:00"
    now = client.post(
        f"/coordinator/sops/proposals/{PID}/publish",
        data={"effective_at": shown, "shown_now": shown, "override_reason": ""},
        follow_redirects=False,
    )
    assert now.status_code == 303
    assert now.headers["location"] == f"/coordinator/sops/proposals/{PID}?done=published"
    later = client.post(
        f"/coordinator/sops/proposals/{PID}/publish",
        data={"effective_at": "2026-06-01T00:00", "shown_now": shown,
              "override_reason": "rakor_decision"},
        follow_redirects=False,
    )  # fmt: skip
    assert later.status_code == 303
    first, second = fake.sent("routing", f"/v1/sop-proposals/{PID}/publish")
    assert json.loads(first.content) == {}
    assert json.loads(second.content) == {
        "effective_at": "2026-06-01T00:00:00+07:00",
        "override_reason": "rakor_decision",
    }
    bad = client.post(
        f"/coordinator/sops/proposals/{PID}/publish",
        data={"effective_at": "2026-13-01T25:61", "override_reason": "because"},
    )
    assert bad.status_code == 400
    assert len(fake.sent("routing", f"/v1/sop-proposals/{PID}/publish")) == 2


def test_routings_refusal_to_publish_is_shown_above_the_form(
    client: TestClient, fake: FakeServices
) -> None:
    detail = "belum semua setuju / not every asked agency agreed: lbh-probolinggo (yet to answer)"
    refusal = {"detail": detail, "objected": [], "awaiting": ["lbh-probolinggo"]}
    fake.answer("routing", "POST", f"/v1/sop-proposals/{PID}/publish", 409, json=refusal)
    sign_in(client, "co13")
    page = client.post(
        f"/coordinator/sops/proposals/{PID}/publish",
        data={"effective_at": "2026-06-01T08:30", "shown_now": "x"},
    )
    assert page.status_code == 409
    assert 'id="publish-problem">belum semua setuju / not every asked agency agreed' in page.text
    assert 'value="2026-06-01T08:30"' in page.text  # what was typed stays
    fake.answer("routing", "POST", f"/v1/sop-proposals/{PID}/publish", 422,
                json={"detail": [{"field": "effective_at", "problem": "in the past"}]})  # fmt: skip
    past = client.post(
        f"/coordinator/sops/proposals/{PID}/publish",
        data={"effective_at": "2026-01-01T08:30", "shown_now": "x"},
    )
    assert past.status_code == 422
    assert "in the past" in past.text


def test_withdrawing_asks_routing_and_says_so(client: TestClient, fake: FakeServices) -> None:
    fake.answer("routing", "POST", f"/v1/sop-proposals/{PID}/withdraw", 200, json={})
    fake.answer("routing", "GET", f"/v1/sop-proposals/{PID}", 200,
                json=proposal(state="withdrawn"))  # fmt: skip
    sign_in(client, "co13")
    done = client.post(f"/coordinator/sops/proposals/{PID}/withdraw")
    assert done.status_code == 200
    assert "Usulan ditarik." in done.text
    assert 'id="publish-button"' not in done.text  # closed: nothing to publish
    assert len(fake.sent("routing", f"/v1/sop-proposals/{PID}/withdraw")) == 1


def test_another_districts_proposal_is_routings_404_shown_as_a_page(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", f"/v1/sop-proposals/{PID}", 404,
                json={"detail": "usulan tidak ada / no such proposal"})  # fmt: skip
    sign_in(client, "co14")
    page = client.get(f"/coordinator/sops/proposals/{PID}")
    assert page.status_code == 404
    assert "usulan tidak ada / no such proposal" in page.text
    before = len(fake.calls)
    assert client.get("/coordinator/sops/proposals/prop-XYZ").status_code == 404
    assert client.post("/coordinator/sops/proposals/..%2f/withdraw").status_code == 404
    assert len(fake.calls) == before  # a malformed id never reaches routing


def test_a_partner_cannot_open_the_coordinators_pages(client: TestClient) -> None:
    sign_in(client, "lbh")
    assert client.get("/coordinator/sops").status_code == 403
    assert client.post(f"/coordinator/sops/proposals/{PID}/publish").status_code == 403


# --- partner -------------------------------------------------------------------------------


def test_a_partner_lists_the_proposals_naming_it_from_its_inbox(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", "/v1/sop-proposals", 200, json=listed(proposal()))
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"items": []})
    sign_in(client, "lbh")
    inbox = client.get("/inbox")
    assert 'href="/sops"' in inbox.text
    page = client.get("/sops")
    assert page.status_code == 200
    assert f'href="/sops/proposals/{PID}"' in page.text
    assert "Diminta persetujuan Anda: <strong>Belum menjawab</strong>" in page.text


def test_a_partner_sees_its_own_duties_and_agrees_or_objects_with_a_reason(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "POST", f"/v1/sop-proposals/{PID}/answers", 200, json={})
    sign_in(client, "lbh")
    page = client.get(f"/sops/proposals/{PID}")
    assert page.status_code == 200, page.text
    own = page.text[page.text.index('id="own-duties"') :]
    own = own[: own.index("</ul>")]
    assert "Batas waktu lebih singkat — Bantuan hukum" in own
    assert "1440 min → 720 min" in own
    assert "uptppa" not in own  # another agency's duties are not its own
    assert 'id="agree"' in page.text
    assert '<option value="needs_rakor_discussion">Perlu dibahas di rakor</option>' in page.text
    assert "-  acknowledge_within_minutes: 1440" in page.text  # the diff

    agreed = client.post(
        f"/sops/proposals/{PID}/answer", data={"decision": "agree"}, follow_redirects=False
    )
    assert agreed.headers["location"] == f"/sops/proposals/{PID}?sent=agree"
    objected = client.post(
        f"/sops/proposals/{PID}/answer",
        data={"decision": "object", "reason": "capacity_insufficient"},
        follow_redirects=False,
    )
    assert objected.status_code == 303
    assert (
        client.post(f"/sops/proposals/{PID}/answer", data={"decision": "object"}).status_code == 400
    )
    sent = [json.loads(r.content) for r in fake.sent("routing", f"/v1/sop-proposals/{PID}/answers")]
    assert sent == [
        {"decision": "agree", "via": "console"},
        {"decision": "object", "via": "console", "reason": "capacity_insufficient"},
    ]


def test_an_agency_not_asked_gets_routings_refusal_as_a_page(
    client: TestClient, fake: FakeServices
) -> None:
    refusal = (
        "usulan ini tidak meminta persetujuan pkm-bangil / this proposal does not ask pkm-bangil"
    )
    fake.answer("routing", "POST", f"/v1/sop-proposals/{PID}/answers", 403,
                json={"detail": refusal})  # fmt: skip
    sign_in(client, "pt")
    page = client.get(f"/sops/proposals/{PID}")
    assert "Usulan ini tidak menambah kewajiban lembaga Anda" in page.text
    assert 'id="agree"' not in page.text
    refused = client.post(f"/sops/proposals/{PID}/answer", data={"decision": "agree"})
    assert refused.status_code == 403
    assert refusal in refused.text


# --- the pure parts ------------------------------------------------------------------------


def test_the_effective_date_is_now_unless_changed_and_local_to_the_district() -> None:
    now = datetime(2026, 5, 20, 3, 4, tzinfo=UTC)
    shown = local_minute(now, JAKARTA)
    assert shown == "2026-05-20T10:04"
    assert effective_at(shown, shown, JAKARTA) is None
    assert effective_at("", shown, JAKARTA) is None
    assert effective_at("2026-05-21T07:30", shown, JAKARTA) == "2026-05-21T07:30:00+07:00"
    for bad in ("tomorrow", "2026-02-30T10:00", "99999-01-01T00:00"):
        with pytest.raises(BadInput):
            effective_at(bad, shown, JAKARTA)


def test_the_simulation_period_is_a_listed_number_of_days_or_two_dates() -> None:
    assert simulation_period("", "", "") == {"days": 90}
    assert simulation_period("365", "", "") == {"days": 365}
    assert simulation_period("90", "2026-01-01", "2026-02-01") == {
        "from": "2026-01-01",
        "to": "2026-02-01",
    }
    for bad in (("7", "", ""), ("-1", "", ""), ("", "2026-02-01", ""),
                ("", "2026-02-01", "2026-01-01"), ("", "1999-01-01", "2026-01-01")):  # fmt: skip
        with pytest.raises(BadInput):
            simulation_period(*bad)


def test_the_proposal_page_lists_its_examples_and_the_ones_it_leaves_out(
    client: TestClient, fake: FakeServices
) -> None:
    def example(example_id: str, passed: bool, *failures: str) -> dict[str, Any]:
        return {"example_id": example_id, "speaks_for": "uptppa-probolinggo",
                "description": None, "passed": passed, "failures": list(failures)}  # fmt: skip

    shown = {
        **proposal(),
        "examples": [example("every-report-has-a-case-manager", True)],
        "examples_dropped": [
            example("legal-aid-tpks", False, "legal ditahan / legal is withheld"),
            example("post-rape-care", True),
        ],
    }
    fake.answer("routing", "GET", f"/v1/sop-proposals/{PID}", 200, json=shown)
    sign_in(client, "co13")
    text = client.get(f"/coordinator/sops/proposals/{PID}").text
    assert "1 dari 1 contoh lulus" in text
    assert '<li data-example="every-report-has-a-case-manager">✓' in text
    dropped = text[text.index('class="plain examples-dropped"') :]
    broken = dropped[dropped.index('data-example="legal-aid-tpks"') :]
    assert "tidak terpenuhi lagi oleh usulan" in broken[: broken.index("</li>")]
    assert "legal ditahan / legal is withheld" in broken[: broken.index("</li>")]
    kept = dropped[dropped.index('data-example="post-rape-care"') :]
    assert "masih terpenuhi oleh usulan" in kept[: kept.index("</li>")]
