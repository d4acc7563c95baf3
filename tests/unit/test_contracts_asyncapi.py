"""The checked-in AsyncAPI document, as a partner agency's developer reads it: every subject a
partner reads or writes, with its messages, their schemas and headers, and each operation's
action from the partner's side (receive its feed, send its replies); and AsyncAPI's own parser
finds it valid AsyncAPI 3."""

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from notify.replies import PROBLEM_TYPE, refusal_problem
from rujuk_contracts import subjects
from rujuk_contracts.events import (
    EVENT_MODELS,
    ReferralAcknowledged,
    ReplyKind,
    SopAnswerGiven,
)
from tests import node_support

SCHEMAS = Path(__file__).parents[2] / "contracts" / "schemas"
DOCUMENT: dict[str, Any] = json.loads((SCHEMAS / "asyncapi.json").read_text())
AGENCY = "rsud-bangil"


def resolve(reference: dict[str, Any]) -> Any:
    """Follow a local ``#/…`` reference, or load a sibling schema file."""
    target = reference["$ref"]
    if not target.startswith("#/"):
        return json.loads((SCHEMAS / target).read_text())
    found: Any = DOCUMENT
    for part in target[2:].split("/"):
        found = found[part.replace("~1", "/").replace("~0", "~")]
    return resolve(found) if "$ref" in found else found


def concrete(address: str) -> str:
    return address.replace("{agency}", AGENCY)


def partner_operations() -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Subject a partner uses -> (its action, the messages it carries)."""
    found = {}
    for operation in DOCUMENT["operations"].values():
        channel = resolve(operation["channel"])
        messages = [resolve(message) for message in operation["messages"]]
        found[concrete(channel["address"])] = (operation["action"], messages)
    return found


def test_a_partner_sends_its_replies_and_receives_its_feed() -> None:
    expected = {
        subjects.partner_outbound(AGENCY, "referral.requested"): "receive",
        subjects.partner_outbound(AGENCY, "reply.refused"): "receive",
        **{subjects.partner_inbound(AGENCY, kind.value): "send" for kind in ReplyKind},
        # SOP proposals: asked on the feed, answered on its own subject
        **{
            subjects.partner_outbound(AGENCY, event): "receive"
            for event in (
                "sop.proposed",
                "sop.proposal_withdrawn",
                "sop.published",
                "sop.answer_refused",
            )
        },
        subjects.partner_inbound(AGENCY, subjects.SOP_ANSWER): "send",
    }
    operations = partner_operations()
    assert {subject: action for subject, (action, _) in operations.items()} == expected


@pytest.mark.parametrize("kind", list(ReplyKind))
def test_each_reply_subject_lists_its_message_with_its_schema_and_headers(
    kind: ReplyKind,
) -> None:
    _, messages = partner_operations()[subjects.partner_inbound(AGENCY, kind.value)]
    [message] = messages
    model = next(m for m in EVENT_MODELS.values() if m.event_type() == message["name"])
    assert model.event.startswith(kind.value[:6])  # acknowledge -> acknowledged, ...
    assert message["contentType"] == "application/cloudevents+json"
    schema = resolve(message["payload"])
    assert schema["properties"]["type"]["const"] == model.event_type()
    assert schema["properties"]["dataschema"]["const"] == model.schema_uri()
    assert set(message["headers"]["properties"]) == {"Nats-Msg-Id", "traceparent", "Content-Type"}
    assert "/rujuk/partners/<agency>" in message["description"]  # the source to set


def test_the_refused_reply_subject_carries_the_event_and_the_problem_document() -> None:
    _, messages = partner_operations()[subjects.partner_outbound(AGENCY, "reply.refused")]
    by_type = {message["contentType"]: message for message in messages}
    assert set(by_type) == {"application/cloudevents+json", "application/problem+json"}
    event_schema = resolve(by_type["application/cloudevents+json"]["payload"])
    assert event_schema["title"] == "id.rujuk.referral.reply_refused.v1"
    problem_schema = by_type["application/problem+json"]["payload"]
    problem = refusal_problem("not a valid reply: body is not JSON", "seq-7")
    assert jsonschema_rs.validator_for(problem_schema).is_valid(problem)
    assert problem_schema["properties"]["type"]["const"] == PROBLEM_TYPE
    assert not jsonschema_rs.validator_for(problem_schema).is_valid({**problem, "type": "x"})


def test_an_sop_answer_has_its_subject_and_its_refusals_come_on_the_feed() -> None:
    _, [message] = partner_operations()[subjects.partner_inbound(AGENCY, subjects.SOP_ANSWER)]
    assert message["name"] == SopAnswerGiven.event_type()
    assert "subject = data.sop_id" in message["description"]
    schema = resolve(message["payload"])
    assert schema["properties"]["data"]["properties"]["decision"]
    _, refusals = partner_operations()[subjects.partner_outbound(AGENCY, "sop.answer_refused")]
    assert {m["contentType"] for m in refusals} == {
        "application/cloudevents+json",
        "application/problem+json",
    }


def test_every_event_type_has_its_internal_channel_and_message() -> None:
    addresses = {channel["address"] for channel in DOCUMENT["channels"].values()}
    for model in EVENT_MODELS.values():
        assert model.subject() in addresses
    assert {"rujuk.dlq.{service}", subjects.CHECKPOINT_SUBJECT} <= addresses
    internal = [c for c in DOCUMENT["channels"].values() if c["address"].startswith("rujuk.evt.")]
    used = {resolve(o["channel"])["address"] for o in DOCUMENT["operations"].values()}
    assert not used & {c["address"] for c in internal}  # no partner operation on them


def test_every_message_payload_reference_is_a_checked_in_schema() -> None:
    for message in DOCUMENT["components"]["messages"].values():
        if "$ref" in message["payload"]:
            assert (SCHEMAS / message["payload"]["$ref"]).is_file()
    acknowledged = resolve(DOCUMENT["components"]["messages"]["reply.acknowledge"]["payload"])
    assert acknowledged["$id"] == ReferralAcknowledged.schema_uri()


def run_asyncapi_parser(document: Path) -> subprocess.CompletedProcess[str]:
    node_support.ensure_example_installed()
    return subprocess.run(
        [str(node_support.NODE), "check-asyncapi.mjs", str(document)],
        cwd=node_support.EXAMPLE,
        env=node_support.node_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_asyncapi_parser_finds_the_document_valid_and_a_broken_one_not(
    tmp_path: Path,
) -> None:
    """AsyncAPI's own parser (@asyncapi/parser, from npm, under the node we install) reads the
    document, resolves every schema file it references, and finds no error."""
    checked = run_asyncapi_parser(SCHEMAS / "asyncapi.json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    summary = json.loads(checked.stdout.strip().splitlines()[-1])
    assert summary["version"] == "3.0.0"
    assert "send rujuk.partner.{agency}.in.accept" in summary["operations"]
    for schema in SCHEMAS.glob("*.json"):
        shutil.copy(schema, tmp_path / schema.name)
    broken = copy.deepcopy(DOCUMENT)
    broken["operations"]["send.accept"]["action"] = "publish"  # AsyncAPI 2's word
    broken["components"]["messages"]["reply.accept"]["payload"] = {"$ref": "./missing.json"}
    (tmp_path / "asyncapi.json").write_text(json.dumps(broken))
    refused = run_asyncapi_parser(tmp_path / "asyncapi.json")
    assert refused.returncode == 1
    assert "send.accept.action" in refused.stdout
    assert "missing.json" in refused.stdout
