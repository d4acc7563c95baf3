"""Routing without servers: its settings, which SOP a case gets, and the events a decision
becomes."""

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from routing.decide import decide
from routing.events import event_id, routing_events, sop_in_force
from routing.lifecycle import UnroutedReason
from routing.settings import SHIPPED_SOPS, RoutingSettings
from routing.sop import load_sop_folder
from routing.sops import SopsInForce, Unroutable
from rujuk_contracts import parse_event
from rujuk_contracts.events import CaseRouted, ReferralRequested, SopInForce, SopOrigin
from rujuk_contracts.triage import TriageFacts

NOW = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
CASE_ID = "3514-AB12CD34EF"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def child_case() -> TriageFacts:
    return TriageFacts(
        violence_types=["sexual"], age_group="child", sex="female", district_code="3514"
    )


def test_routing_settings_default_to_port_8082_and_the_shipped_sops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ROUTING_HTTP_PORT", raising=False)
    monkeypatch.delenv("ROUTING_SOP_DIR", raising=False)
    settings = RoutingSettings()
    assert settings.http_port == 8082
    assert settings.sop_dir == SHIPPED_SOPS


def test_routing_settings_read_the_routing_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTING_HTTP_PORT", "9182")
    monkeypatch.setenv("ROUTING_SOP_DIR", "/etc/rujuk/sops")
    settings = RoutingSettings()
    assert (settings.http_port, settings.sop_dir) == (9182, Path("/etc/rujuk/sops"))


def test_a_district_without_an_sop_is_unroutable_by_name() -> None:
    sops = SopsInForce(load_sop_folder(SHIPPED_SOPS))
    with pytest.raises(Unroutable, match=r"/ no SOP in force for district 3599$") as raised:
        sops.sop_for("3599")
    assert raised.value.unrouted_reason is UnroutedReason.NO_SOP


def test_a_district_whose_sop_was_refused_says_so(tmp_path: Path) -> None:
    (tmp_path / "3514.yaml").write_text("sop_id: [\n")
    sops = SopsInForce()
    sops.load_sops(tmp_path)
    with pytest.raises(Unroutable, match="SOP for district 3514 was refused at start") as raised:
        sops.sop_for("3514")
    assert raised.value.unrouted_reason is UnroutedReason.SOP_REFUSED


def test_each_sop_file_in_force_is_kept_with_the_sha256_of_its_text() -> None:
    library = load_sop_folder(SHIPPED_SOPS)
    text = (SHIPPED_SOPS / "3514.yaml").read_bytes()
    assert library.sha256["3514"] == hashlib.sha256(text).hexdigest()
    assert set(library.sha256) == set(library.sops)


def test_an_sop_in_force_is_announced_with_its_directory_once_per_document() -> None:
    sop = load_sop_folder(SHIPPED_SOPS).sops["3514"]
    first = sop_in_force(sop, "a" * 64, SopOrigin.FILE, NOW, None)
    again = sop_in_force(sop, "a" * 64, SopOrigin.FILE, NOW, None)
    edited = sop_in_force(sop, "b" * 64, SopOrigin.FILE, NOW, None)
    assert first.id == again.id != edited.id
    _, payload = parse_event(first.to_bytes())
    assert isinstance(payload, SopInForce)
    assert payload.agency_ids == sorted(agency.id for agency in sop.directory)
    assert {"dp3ap2kb-pasuruan", "rsud-bangil"} <= set(payload.agency_ids)
    assert (payload.district_code, payload.sop_version, payload.origin) == ("3514", 1, "file")


def test_a_decision_becomes_one_case_routed_and_one_request_per_referral() -> None:
    decision = decide(load_sop_folder(SHIPPED_SOPS).sops["3514"], CASE_ID, child_case(), NOW)
    events = routing_events(decision, NOW, TRACEPARENT)
    payloads = [parse_event(event.to_bytes())[1] for event in events]
    routed, *requested = payloads
    assert isinstance(routed, CaseRouted)
    assert routed.rules_fired == list(decision.rules_fired)
    assert [r.referral_id for r in routed.referrals] == [r.referral_id for r in decision.referrals]
    assert all(isinstance(p, ReferralRequested) for p in requested)
    assert len(requested) == len(decision.referrals)
    assert {event.source for event in events} == {"/rujuk/routing"}
    assert {event.traceparent for event in events} == {TRACEPARENT}


def test_event_ids_are_derived_from_what_they_announce_so_a_rerun_repeats_them() -> None:
    decision = decide(load_sop_folder(SHIPPED_SOPS).sops["3514"], CASE_ID, child_case(), NOW)
    first = [event.id for event in routing_events(decision, NOW, None)]
    again = [event.id for event in routing_events(decision, NOW, None)]
    assert first == again
    assert first[1] == event_id(f"{CASE_ID}-01:requested")
    assert len(set(first)) == len(first)
