"""nats-py's parsing of a received message's headers, with the same result at a quarter of
the CPU: installed once for every connection a service makes (``install``)."""

from nats.aio.client import Client

NATS_PY_PARSE = Client._parse_header_lines  # kept: a test holds the replacement to it


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """What ``nats.aio.client.Client._parse_header_lines`` (nats-py 2.16) returns for ``raw``.

    nats-py refuses a name with whitespace inside by testing each character in a generator
    (``any(c.isspace() for c in key)``): with six or seven headers on every event that was
    10-18% of a service's CPU in a burst (bench/e2e.py --profile). ``str.split()`` splits on
    exactly the characters ``str.isspace`` names, in C."""
    out: dict[str, str] = {}
    for line in raw.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if key and key.split() != [key]:
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


def install() -> None:
    Client._parse_header_lines = staticmethod(parse_header_lines)  # type: ignore[method-assign]
