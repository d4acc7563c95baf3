"""Tracing without an OTLP endpoint: no span is recorded, yet the trace goes on."""

import json
import subprocess
import sys
import textwrap

from rujuk_runtime.telemetry import ids_of

INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def run_isolated(code: str, env: dict[str, str]) -> str:
    """configure_tracing installs a process-wide provider once: each case in its own process."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    return result.stdout.strip()


CASE = f"""
    from rujuk_runtime import telemetry
    telemetry.configure_tracing("uji")
    with telemetry.span_from("uji handle", "{INCOMING}") as span:
        print(span.is_recording(), telemetry.current_traceparent(),
              telemetry.current_ids()["trace_id"])
"""


def test_without_an_endpoint_spans_are_not_recorded_but_the_trace_is_carried_on() -> None:
    recording, traceparent, trace_id = run_isolated(CASE, {"PATH": ""}).split()

    assert recording == "False"
    assert trace_id == INCOMING.split("-")[1]
    assert traceparent == INCOMING  # no span made: the event's context goes on as it came


ROOT = """
    from rujuk_runtime import telemetry
    telemetry.configure_tracing("uji")
    with telemetry.span_from("uji handle", None) as span:
        print(span.is_recording(), telemetry.current_traceparent())
"""


def test_without_an_endpoint_or_incoming_context_a_trace_is_still_started() -> None:
    recording, traceparent = run_isolated(ROOT, {"PATH": ""}).split()

    assert recording == "False"
    version, trace_id, span_id, _ = traceparent.split("-")
    assert version == "00"
    assert int(trace_id, 16) != 0
    assert int(span_id, 16) != 0


def test_with_an_endpoint_every_span_is_recorded() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
        # Nothing listens there: the export at exit gives up after 1 s, not the default 10.
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    }
    recording, traceparent, _ = run_isolated(CASE, env).split()

    assert recording == "True"
    assert traceparent.endswith("-01")


def test_ids_of_a_traceparent_and_of_none_or_garbage() -> None:
    assert ids_of(INCOMING) == {"trace_id": INCOMING.split("-")[1], "span_id": "00f067aa0ba902b7"}
    assert ids_of(None) == ids_of("") == ids_of("00-not-a-traceparent") == {}


LOGGED = f"""
    from rujuk_runtime.logs import configure_logging, get_logger, logging_about
    configure_logging("uji", "DEBUG")
    import structlog
    with structlog.contextvars.bound_contextvars(case_id="3514-OUTER", event_id="outer"):
        with logging_about("3514-UJI", "event-1", "{INCOMING}"):
            get_logger("uji").debug("referral state")
    get_logger("uji").debug("after")
"""


def test_lines_logged_about_an_event_outside_its_span_carry_its_ids() -> None:
    inside, after = (json.loads(line) for line in run_isolated(LOGGED, {"PATH": ""}).splitlines())
    assert (inside["case_id"], inside["event_id"]) == ("3514-UJI", "event-1")
    assert (inside["trace_id"], inside["span_id"]) == (INCOMING.split("-")[1], "00f067aa0ba902b7")
    assert not {"case_id", "event_id", "trace_id"} & set(after)  # bound only inside
