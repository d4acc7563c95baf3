"""The one NATS authorization model: what it grants each service and partner, and that it
matches what each service really declares."""

import json
import re
import stat
from pathlib import Path

import pytest

from rujuk.stack import Stack
from rujuk_contracts import events, subjects
from rujuk_runtime import nats_auth
from tests.service_apps import service_runtimes

ROOT = Path(__file__).parents[2]


def test_every_durable_consumer_a_service_declares_is_granted_and_no_other(
    tmp_path: Path,
) -> None:
    """Drift: a new consumer without its grant would be refused by the server at start."""
    stack = Stack(tmp_path, external_nats_url="nats://127.0.0.1:1", external_database_url="x")
    declared = {
        name: {nats_auth.Consumer(c.stream, c.durable) for c in runtime.pull_consumers}
        for name, runtime in service_runtimes(stack).items()
    }
    granted = {name: set(grant.consumers) for name, grant in nats_auth.SERVICE_GRANTS.items()}
    assert declared == granted


def test_a_service_may_not_publish_another_services_events_nor_read_the_bus_live() -> None:
    routing = nats_auth.service_permissions(nats_auth.SERVICE_GRANTS["routing"])
    assert "rujuk.evt.referral.requested" in routing["publish"]["allow"]
    assert "rujuk.evt.case.reported" not in routing["publish"]["allow"]
    assert not any(s.startswith("rujuk.partner") for s in routing["publish"]["allow"])
    assert routing["subscribe"]["allow"] == ["_INBOX_svc_routing.>"]
    # Streams are declared by every service, never deleted or purged by one.
    assert not any(".DELETE." in s or ".PURGE." in s for s in routing["publish"]["allow"])


def test_only_audit_reads_events_by_sequence_to_fill_a_gap_in_the_ledger() -> None:
    """Seen in the fault test: audit's writer gets a missing event by sequence after a
    restart; without this grant the ledger stalls."""
    for name, grant in nats_auth.SERVICE_GRANTS.items():
        allowed = nats_auth.service_permissions(grant)["publish"]["allow"]
        reads = "$JS.API.STREAM.MSG.GET.RUJUK_EVENTS" in allowed
        assert reads == (name == "audit"), name


def test_a_partner_is_granted_its_own_feed_consumer_and_replies_only() -> None:
    allowed = nats_auth.partner_permissions("puskesmas-kraton")
    assert allowed == {
        "publish": {
            "allow": [
                "rujuk.partner.puskesmas-kraton.in.>",
                "$JS.API.CONSUMER.INFO.RUJUK_PARTNER.partner-puskesmas-kraton",
                "$JS.API.CONSUMER.MSG.NEXT.RUJUK_PARTNER.partner-puskesmas-kraton",
                "$JS.ACK.RUJUK_PARTNER.partner-puskesmas-kraton.>",
            ]
        },
        "subscribe": {
            "allow": ["rujuk.partner.puskesmas-kraton.out.>", "_INBOX_puskesmas-kraton.>"]
        },
    }


def test_a_service_inbox_can_never_be_a_partners_inbox() -> None:
    with pytest.raises(ValueError, match="lowercase letters"):
        subjects.check_agency_id("svc_intake")  # what _INBOX_svc_intake would need


def test_the_keyring_keeps_secrets_private_and_the_configuration_holds_none(
    tmp_path: Path,
) -> None:
    ring = nats_auth.NatsKeyring(tmp_path / "keyring").ensure()
    seeds = [ring.service_seed_file(name).read_text().strip() for name in ("intake", "audit")]
    for secret_file in [
        *(ring.service_seed_file(n) for n in nats_auth.SERVICE_NAMES),
        ring.folder / "ops.password",
    ]:
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600, secret_file
    assert stat.S_IMODE(ring.folder.stat().st_mode) == 0o700
    ring.add_partner("rsud-bangil", nats_auth.public_key_of(nats_auth.new_seed()))
    text = ring.authorization_file.read_text()
    for secret in (*seeds, ring.ops_password()):
        assert secret not in text
    users = [
        json.loads(line.strip().rstrip(","))
        for line in text.splitlines()
        if line.startswith("    {")
    ]
    assert [u.get("user") for u in users] == ["ops", None, None, None, None, None]
    assert users[0]["password"].startswith("$2")
    assert users[-1]["permissions"] == nats_auth.partner_permissions("rsud-bangil")
    # Made again, nothing is replaced: the services keep their identities.
    again = nats_auth.NatsKeyring(tmp_path / "keyring").ensure()
    assert [again.service_seed_file(n).read_text().strip() for n in ("intake", "audit")] == seeds


def test_a_partner_key_must_be_a_user_key(tmp_path: Path) -> None:
    ring = nats_auth.NatsKeyring(tmp_path).ensure()
    with pytest.raises(ValueError, match="starts with U"):
        ring.add_partner("rsud-bangil", nats_auth.new_seed())  # a seed, given by mistake


def test_urls_with_and_without_credentials() -> None:
    url = "nats://127.0.0.1:4223,nats://n2:4222"
    with_password = nats_auth.with_credentials(url, "ops", "p@ss/word")
    assert (
        with_password == "nats://ops:p%40ss%2Fword@127.0.0.1:4223,nats://ops:p%40ss%2Fword@n2:4222"
    )
    assert nats_auth.without_credentials(with_password) == url


def test_reload_never_signals_a_process_that_is_not_nats_server(tmp_path: Path) -> None:
    ring = nats_auth.NatsKeyring(tmp_path).ensure()
    ring.pid_file.write_text("1\n")  # e.g. a pid file from another container
    assert ring.reload_server() is False


def test_only_notify_erases_single_messages_and_only_of_the_partner_stream() -> None:
    """Notify erases a partner's refused reply that carried free text (issue 18); nothing may
    delete or purge a stream, nor erase a message of another stream."""
    for name, grant in nats_auth.SERVICE_GRANTS.items():
        allowed = nats_auth.service_permissions(grant)["publish"]["allow"]
        erases = [s for s in allowed if ".MSG.DELETE." in s]
        assert erases == (["$JS.API.STREAM.MSG.DELETE.RUJUK_PARTNER"] if name == "notify" else [])
        others = [s for s in allowed if s not in erases]
        assert not any(".DELETE." in s or ".PURGE." in s for s in others), name


def _constructed_payloads(service: str) -> set[type[events.EventPayload]]:
    """Event payload classes the service's own code constructs (and so stages to publish)."""
    payloads = {
        cls
        for cls in vars(events).values()
        if isinstance(cls, type) and issubclass(cls, events.EventPayload) and "event" in vars(cls)
    }
    source = "\n".join(
        path.read_text() for path in (ROOT / "services" / service / "src").rglob("*.py")
    )
    return {cls for cls in payloads if re.search(rf"\b{cls.__name__}\(", source)}


# Built to go to one partner's feed only (rujuk.partner.<agency>.out.…), never to the bus.
PARTNER_FEED_ONLY = {"notify": {"SopAnswerRefused"}}


@pytest.mark.parametrize("service", ["intake", "routing", "notify"])
def test_every_event_a_service_builds_is_one_it_may_publish(service: str) -> None:
    """Drift: an event without its grant sticks in the outbox on an authorized NATS (seen when
    the SOP proposal events first landed: every stack `rujuk up` starts refused them)."""
    allowed = nats_auth.service_permissions(nats_auth.SERVICE_GRANTS[service])["publish"]["allow"]
    built = _constructed_payloads(service)
    assert built, f"{service} builds no event?"
    refused = sorted(
        cls.__name__
        for cls in built
        if cls.__name__ not in PARTNER_FEED_ONLY.get(service, set())
        and not any(_matches(pattern, cls.subject()) for pattern in allowed)
    )
    assert refused == []


def _matches(pattern: str, subject: str) -> bool:
    wanted, given = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(given) > index
        if index >= len(given) or token not in ("*", given[index]):
            return False
    return len(wanted) == len(given)
