"""Rujuk's parsing of NATS message headers answers exactly as nats-py's own does."""

import random

from nats.aio.client import Client

import rujuk_runtime.bus  # noqa: F401  (installs it)
from rujuk_runtime import nats_headers

TRICKY = [
    b"",
    b"\r\n",
    b"Nats-Msg-Id: abc\r\ntraceparent: 00-0af7-b7ad-01\r\n\r\n",
    b"Name:Value\r\nTabbed:\tvalue\t\r\n",
    b"Bad Name: x\r\nGood: y\r\n",
    b"Sep\x1cName: x\r\n",  # str.isspace says yes to \x1c-\x1f
    b"Sep\x1fName: x\r\nVertical\x0bTab: y\r\nForm\x0cFeed: z\r\n",
    b": empty name\r\nno colon here\r\n",
    b"  Padded  :  both sides  \r\n",
    b"Caf\xc3\xa9: x\r\nValue: caf\xc3\xa9\r\nBroken: \xff\xfe\r\n",
    b"Dup: 1\r\nDup: 2\r\n",
    b"Status: 503\r\nDescription: No Responders\r\n",
]


def test_headers_parse_as_nats_py_parses_them() -> None:
    rng = random.Random(22)
    alphabet = b"ab-Z: \t\r\n\x1c\x0b\xc3\xa9\xff"
    samples = TRICKY + [
        bytes(rng.choice(alphabet) for _ in range(rng.randrange(40))) for _ in range(5000)
    ]
    for raw in samples:
        assert nats_headers.parse_header_lines(raw) == nats_headers.NATS_PY_PARSE(raw), raw


def test_every_connection_uses_it_once_the_runtime_is_imported() -> None:
    assert Client._parse_header_lines is nats_headers.parse_header_lines
