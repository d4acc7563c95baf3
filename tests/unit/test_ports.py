"""rujuk.ports: which port each process of `rujuk up` takes, and what it says when the one
it wanted is taken."""

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from rujuk.ports import DEFAULT_PORTS, PortBook, port_is_free, port_variable
from rujuk_runtime.embedded import STANDARD_PORTS, free_port


@pytest.fixture
def taken() -> Iterator[int]:
    """A port someone else listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen()
        yield listener.getsockname()[1]


def test_the_defaults_are_the_readmes_and_never_the_standard_ports() -> None:
    assert DEFAULT_PORTS == {"intake": 8081, "routing": 8082, "notify": 8083, "audit": 8084,
                             "console": 8085, "nats": 4322, "postgres": 5532}  # fmt: skip
    assert not set(DEFAULT_PORTS.values()) & STANDARD_PORTS
    assert port_variable("intake") == "INTAKE_HTTP_PORT"
    assert port_variable("nats") == "RUJUK_NATS_PORT"


def test_a_recorded_port_is_reused_and_a_taken_one_is_said_and_replaced(
    tmp_path: Path, taken: int
) -> None:
    free = free_port()
    (tmp_path / "ports.json").write_text(json.dumps({"intake": free, "routing": taken}))
    said: list[str] = []
    # Variables set (to a taken port) keep the README's defaults out of this test.
    given = {"ROUTING_HTTP_PORT": str(taken), "NOTIFY_HTTP_PORT": str(taken)}
    book = PortBook(tmp_path, say=said.append, environ=given)
    assert book.choose("intake") == free
    assert said == []
    routing, notify = book.choose("routing"), book.choose("notify")
    assert taken not in (routing, notify)
    text = "\n".join(said)
    recorded = f"tercatat / recorded in {tmp_path / 'ports.json'}"
    assert f"Port {taken} untuk routing ({recorded}) sudah dipakai proses lain" in text
    assert f"Port {taken} for routing (ROUTING_HTTP_PORT={taken}) is taken by another" in text
    assert f"Port {taken} for notify (NOTIFY_HTTP_PORT={taken}) is taken by another" in text
    assert f"routing: port {routing} (dicatat / recorded for the next run)" in text
    book.record({"routing": routing, "notify": notify})
    again = PortBook(tmp_path, say=said.append, environ={})
    assert again.recorded == {"intake": free, "routing": routing, "notify": notify}


def test_a_port_variable_wins_over_the_record(tmp_path: Path) -> None:
    given, recorded = free_port(), free_port()
    (tmp_path / "ports.json").write_text(json.dumps({"audit": recorded}))
    book = PortBook(tmp_path, say=print, environ={"AUDIT_HTTP_PORT": str(given)})
    assert book.choose("audit") == given


def test_a_port_in_time_wait_is_free_a_listener_is_not(taken: int) -> None:
    assert not port_is_free(taken)
    assert port_is_free(free_port())
