"""Ops can follow one report across every service: one trace, ids on every log line, metrics.

The services export spans over OTLP/HTTP (protobuf) to a receiver this test runs, exactly as
they would to an OpenTelemetry collector."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from rujuk.samples import IDENTIFYING_IN_SAMPLES, SAMPLE_REPORTS
from rujuk.stack import Stack
from rujuk_runtime.embedded import free_port
from rujuk_runtime.nats_auth import NatsKeyring
from tests.conftest import fresh_database, remove_streams

pytestmark = pytest.mark.integration

DISTINCTIVE_PII = "ZQX Observability Invented Person"


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, str]
    links: tuple[str, ...] = ()  # the trace ids it links to


@dataclass
class OtlpReceiver:
    """POST /v1/traces with an OTLP protobuf body, as a collector receives it."""

    port: int = field(default_factory=free_port)
    spans: list[Span] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # every export as it came

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        Span(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            links=tuple(link.trace_id.hex() for link in span.links),
                        )
                    )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _value(value: Any) -> str:
    kind = value.WhichOneof("value")
    return str(getattr(value, kind)) if kind else ""


@dataclass
class Observed:
    stack: Stack
    receiver: OtlpReceiver
    case_id: str


@pytest.fixture(scope="module")
async def observed(
    nats_url: str,
    nats_keyring: NatsKeyring | None,
    server_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Observed]:
    await remove_streams(nats_url)
    receiver = OtlpReceiver()
    server = uvicorn.Server(
        uvicorn.Config(receiver, port=receiver.port, log_config=None, lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    async with fresh_database(server_database_url) as database_url:
        stack = Stack(
            tmp_path_factory.mktemp("observed"),
            external_nats_url=nats_url,
            nats_keyring=nats_keyring,
            external_database_url=database_url,
            extra_env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "NOTIFY_WEBHOOK_BASE_URL": "",
                "RUJUK_LOG_LEVEL": "DEBUG",  # the per-referral lines are checked too
            },
        )
        await asyncio.to_thread(stack.start)
        try:
            report = json.loads(json.dumps(SAMPLE_REPORTS[0]))
            report["victim"]["name"] = DISTINCTIVE_PII
            async with httpx.AsyncClient(headers=stack.operator_headers()) as client:
                response = await client.post(
                    f"{stack.services['intake'].url}/v1/reports", json=report
                )
                assert response.status_code == 202, response.text
                case_id = response.json()["case_id"]
                await _wait_until_delivered(client, stack, case_id)
                erased = await _type_identifying_data_into_notes(client, stack)
            await _wait_for_spans(receiver, case_id)
            await _wait_for_span(receiver, f"POST /v1/cases/{erased}/erase")
            yield Observed(stack, receiver, case_id)
        finally:
            await asyncio.to_thread(stack.stop)
            server.should_exit = True
            await serving


async def _wait_until_delivered(client: httpx.AsyncClient, stack: Stack, case_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = (await client.get(f"{stack.services['intake'].url}/v1/cases/{case_id}")).json()
        if status["referrals"] and all(r["state"] == "delivered" for r in status["referrals"]):
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"case {case_id} was not delivered")


async def _type_identifying_data_into_notes(client: httpx.AsyncClient, stack: Stack) -> str:
    """Issue 18: on a case of its own (the report's trace stays the report's), the coordinator
    types the person's name into a close note, reads it back, and erases the case with the
    name in the erasure's note: no span may carry it."""
    intake = stack.services["intake"].url
    filed = await client.post(f"{intake}/v1/reports", json=SAMPLE_REPORTS[1])
    assert filed.status_code == 202, filed.text
    case_id = filed.json()["case_id"]
    coordinator = {"Authorization": f"Bearer {stack.secrets()['coordinator_token']}"}
    typed = f"{DISTINCTIVE_PII} pindah, lihat catatan"
    note = await client.post(
        f"{intake}/v1/cases/{case_id}/notes",
        json={"kind": "close_note", "text": typed},
        headers=coordinator,
    )
    assert note.status_code == 201, note.text
    read = await client.get(
        f"{intake}/v1/cases/{case_id}/notes/{note.json()['note_id']}", headers=coordinator
    )
    assert read.json()["text"] == typed
    erased = await client.post(
        f"{intake}/v1/cases/{case_id}/erase",
        json={"reason": "survivor_request", "note": typed},
        headers=coordinator,
    )
    assert erased.status_code == 200, erased.text
    return str(case_id)


async def _wait_for_span(receiver: OtlpReceiver, name: str) -> None:
    """Until a span of that name (an HTTP request's: method and path) was exported."""
    deadline = time.monotonic() + 20
    while not any(s.name == name for s in receiver.spans):
        assert time.monotonic() < deadline, f"no span {name!r} exported"
        await asyncio.sleep(0.2)


async def _wait_for_spans(receiver: OtlpReceiver, case_id: str) -> None:
    """Until every service exported spans about the case and no span's parent is missing."""
    wanted = {"rujuk-intake", "rujuk-routing", "rujuk-notify", "rujuk-audit"}
    deadline = time.monotonic() + 20
    seen: set[str] = set()
    while time.monotonic() < deadline:
        about_case = [s for s in receiver.spans if s.attributes.get("rujuk.case_id") == case_id]
        seen = {s.service for s in about_case}
        traces = {s.trace_id for s in about_case}
        in_trace = {s.span_id for s in receiver.spans if s.trace_id in traces}
        dangling = [
            s for s in receiver.spans if s.trace_id in traces and s.parent_id
            and s.parent_id not in in_trace
        ]  # fmt: skip
        if wanted <= seen and not dangling:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"incomplete trace: spans from {seen}, dangling parents {len(dangling)}")


def _report_trace(observed: Observed) -> str:
    roots = [
        s
        for s in observed.receiver.spans
        if s.service == "rujuk-intake" and s.attributes.get("rujuk.case_id") == observed.case_id
    ]
    assert roots, "intake recorded no span for the report"
    return roots[0].trace_id


def test_one_report_is_one_trace_across_every_service(observed: Observed) -> None:
    trace_id = _report_trace(observed)
    about_case = [
        s for s in observed.receiver.spans if s.attributes.get("rujuk.case_id") == observed.case_id
    ]
    assert {s.trace_id for s in about_case} == {trace_id}
    in_trace = [s for s in observed.receiver.spans if s.trace_id == trace_id]
    services = {s.service for s in in_trace}
    assert {"rujuk-intake", "rujuk-routing", "rujuk-notify", "rujuk-audit"} <= services
    http = [s for s in in_trace if s.service == "rujuk-intake" and s.parent_id == ""]
    assert len(http) == 1, "the HTTP request at intake is the root of the trace"
    assert http[0].attributes.get("http.route") == "/v1/reports" or "POST" in http[0].name
    # One server span per request (FastAPI's native telemetry off, no receive/send spans).
    at_intake = [s.name for s in in_trace if s.service == "rujuk-intake"]
    assert [name for name in at_intake if "POST" in name] == [http[0].name], at_intake


def test_parent_links_follow_the_hand_offs(observed: Observed) -> None:
    trace_id = _report_trace(observed)
    spans = {s.span_id: s for s in observed.receiver.spans if s.trace_id == trace_id}

    def ancestors(span: Span) -> list[str]:
        chain = []
        while span.parent_id and span.parent_id in spans:
            span = spans[span.parent_id]
            chain.append(span.service)
        return chain

    routed = [s for s in spans.values() if s.name == "routing handle id.rujuk.case.reported.v1"]
    assert routed
    assert "rujuk-intake" in ancestors(routed[0])
    delivered = [s for s in spans.values() if s.name == "notify deliver referral"]
    assert delivered
    for span in delivered:
        chain = ancestors(span)
        assert chain.index("rujuk-routing") < chain.index("rujuk-intake")
        # a send hangs under notify's handling of that referral's request
        assert spans[span.parent_id].name == "notify handle id.rujuk.referral.requested.v1"
    audited = [s for s in spans.values() if s.service == "rujuk-audit"]
    assert audited
    assert all(ancestors(s) for s in audited), "every audit append hangs under its producer"


def test_no_trace_export_or_log_line_carries_identifying_data(observed: Observed) -> None:
    """Whole exports (span names, attributes, events, resources) and whole logs, DEBUG lines
    included, searched for everything identifying the report carried, and for the name the
    coordinator typed into a note, read back, and into an erasure's note."""
    identifying = [DISTINCTIVE_PII, *IDENTIFYING_IN_SAMPLES]
    # The report filed is the first sample with the victim's name replaced by DISTINCTIVE_PII:
    # it carried every other kind too (reporter's name, NIK, phone, address, narrative).
    sample = json.dumps(SAMPLE_REPORTS[0])
    assert [t for t in IDENTIFYING_IN_SAMPLES if t not in sample] == []
    exports = b"".join(observed.receiver.bodies)
    assert observed.case_id.encode() in exports  # the exports are about this report
    assert [text for text in identifying if text.encode() in exports] == []
    for name in ("intake", "routing", "notify", "audit"):
        lines = _log_lines(observed.stack.services[name].log_file)
        text = observed.stack.services[name].log_file.read_text()
        assert [t for t in identifying if t in text] == [], f"in the log of {name}"
        if name in ("routing", "notify"):  # their per-referral lines are DEBUG
            assert any(line["level"] == "debug" for line in lines), name


def test_log_lines_carry_trace_span_case_and_event_ids(observed: Observed) -> None:
    trace_id = _report_trace(observed)
    for service in ("routing", "notify"):  # DEBUG: a batch handler's per-event lines too
        lines = _log_lines(observed.stack.services[service].log_file)
        about_case = [line for line in lines if line.get("case_id") == observed.case_id]
        assert about_case, f"{service} logged nothing about the case"
        for line in about_case:
            assert line.get("trace_id") == trace_id, (service, line)
            assert len(line["span_id"]) == 16
            assert line["event_id"]
    accepted = [
        line
        for line in _log_lines(observed.stack.services["intake"].log_file)
        if line.get("event") == "report accepted" and line.get("case_id") == observed.case_id
    ]
    assert [line["trace_id"] for line in accepted] == [trace_id]


async def test_each_service_serves_prometheus_metrics(observed: Observed) -> None:
    async with httpx.AsyncClient() as client:
        routing = (await client.get(f"{observed.stack.services['routing'].url}/metrics")).text
        notify = (await client.get(f"{observed.stack.services['notify'].url}/metrics")).text
        audit = (await client.get(f"{observed.stack.services['audit'].url}/metrics")).text
    assert _sample(routing, "rujuk_events_consumed_total", 'outcome="processed"', "case.reported")
    assert _sample(routing, "rujuk_events_published_total", "referral.requested")
    assert _sample(notify, "rujuk_events_published_total", "referral.delivered")
    assert _sample(audit, "rujuk_events_consumed_total", "referral.delivered")
    assert "rujuk_handler_seconds_bucket" in routing
    assert "rujuk_consumer_pending_messages" in audit


def _sample(text: str, metric: str, *needles: str) -> float:
    for line in text.splitlines():
        if line.startswith(metric + "{") and all(n in line for n in needles):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def is_statement(span: Span) -> bool:
    return any(key.startswith("db.system") for key in span.attributes)


def test_no_statement_is_traced_outside_a_trace(observed: Observed) -> None:
    """Idle polls (the outbox relay, the delivery worker, the deadline watcher) ran all along;
    not one of their statements became a trace of its own."""
    statements = [s for s in observed.receiver.spans if is_statement(s)]
    assert statements, "no statement was traced at all"
    assert [s.name for s in statements if not s.parent_id] == []


def test_a_batch_consumers_statements_sit_under_a_span_linked_to_the_report(
    observed: Observed,
) -> None:
    trace_id = _report_trace(observed)
    spans = {s.span_id: s for s in observed.receiver.spans}
    batches = [
        s for s in observed.receiver.spans
        if s.name == "audit append batch" and trace_id in s.links
    ]  # fmt: skip
    assert batches, "audit's ledger batch is not linked to the report's trace"
    assert all(s.parent_id == "" for s in batches)
    under = [s for s in observed.receiver.spans if s.parent_id in {b.span_id for b in batches}]
    assert any(
        is_statement(s) and "INSERT INTO ledger" in " ".join(s.attributes.values()) for s in under
    ), [s.name for s in under]
    assert all(spans[s.parent_id].trace_id == s.trace_id for s in under)


async def test_idling_makes_no_trace(observed: Observed) -> None:
    """Once the report's last spans are in (intake's projection and audit trail the delivery),
    three seconds of idling export nothing: the relay, the worker and the watcher poll all the
    while."""
    deadline = time.monotonic() + 15
    while True:  # until nothing new came for 1.5 s
        seen = len(observed.receiver.spans)
        await asyncio.sleep(1.5)
        if len(observed.receiver.spans) == seen:
            break
        assert time.monotonic() < deadline, "spans kept coming for 15 s"
    before = len(observed.receiver.spans)
    await asyncio.sleep(3)
    new = [(s.service, s.name, s.parent_id) for s in observed.receiver.spans[before:]]
    assert new == [], "\n".join(map(str, new))


def test_every_span_notify_makes_for_the_report_names_its_case(observed: Observed) -> None:
    trace_id = _report_trace(observed)
    at_notify = [
        s for s in observed.receiver.spans
        if s.service == "rujuk-notify" and s.trace_id == trace_id and not is_statement(s)
    ]  # fmt: skip
    assert {"notify deliver referral", "notify report delivery"} <= {s.name for s in at_notify}
    assert [
        s.name for s in at_notify if s.attributes.get("rujuk.case_id") != observed.case_id
    ] == []
