"""The null pipeline: the JetStream traffic of rujuk's report journey with no business logic,
no database and no HTTP, to measure what this machine can do at most for that shape of work.

    .venv/bin/python bench/null_pipeline.py [--reports 3000] [--referrals 2,3,1] [--size 1500]
                                            [--all-readers]

A report is one `reported` message; a router hop turns it into `routed` and N `requested`;
a notify hop turns each `requested` into a partner-feed message and a `delivered`; a ledger
hop reads every internal message (2 + 2N per report, as audit does). That is 2 + 3N JetStream
messages per report, as in the real pipeline (bench/e2e.py passes the N it saw per case and
its mean event size). Every message carries a `Nats-Msg-Id` on file-stored streams with the
same duplicate window as rujuk's; each hop fetches in batches through rujuk_runtime's
PullConsumer (plain nats-py), publishes pipelined (`publish_async`), waits for the stream's
acks, then acks its batch. With --all-readers, two more readers do what the real services
also read: every event (intake's projection) and every `delivered` (routing's lifecycle).

Each hop is its own process, as each service is: one Python process would cap the pipeline
at one core, while the real services spread over both.
"""

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import nats
import uvloop
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from procs import CpuMeter

from rujuk_runtime.bus import DUPLICATE_WINDOW_SECONDS
from rujuk_runtime.embedded import EmbeddedNats
from rujuk_runtime.pull import PullConsumer

EVENTS = "NULL_EVENTS"
PARTNER = "NULL_PARTNER"
BATCH_SIZE = 100  # as the services' <SERVICE>_BATCH_SIZE default
PUBLISH_WINDOW = 500  # reports the publisher keeps in flight


@dataclass
class NullResult:
    readers: list[str]
    reports: int
    messages: int
    seconds: float
    reports_per_second: float
    messages_per_second: float
    load_average: float
    cpu_ms_per_report: dict[str, float]
    other_processes_cpu_share: float


def body(referrals: int, key: str, size: int) -> bytes:
    head = f"{referrals:02d} {key} ".encode()
    return head + b"x" * max(0, size - len(head))


def parse(message: Msg) -> tuple[int, str]:
    referrals, key, _ = message.data.split(b" ", 2)
    return int(referrals), key.decode()


async def publish_all(js: JetStreamContext, messages: list[tuple[str, str, bytes]]) -> None:
    """Publish (subject, id, body) pipelined; return when JetStream has stored every one."""
    futures = [
        await js.publish_async(subject, data, headers={"Nats-Msg-Id": message_id})
        for subject, message_id, data in messages
    ]
    await asyncio.gather(*futures)


async def acked(batch: list[Msg]) -> None:
    for message in batch:
        await message.ack()


def router(js: JetStreamContext, size: int) -> Any:
    async def process(batch: list[Msg]) -> None:
        out = []
        for message in batch:
            referrals, key = parse(message)
            out.append(("null.evt.case.routed", f"routed-{key}", body(referrals, key, size)))
            for n in range(referrals):
                ref = f"{key}-{n}"
                out.append(("null.evt.referral.requested", f"req-{ref}", body(0, ref, size)))
        await publish_all(js, out)
        await acked(batch)

    return process


def notifier(js: JetStreamContext, size: int) -> Any:
    async def process(batch: list[Msg]) -> None:
        out = []
        for message in batch:
            _, ref = parse(message)
            agency = f"agency-{hash(ref) % 20:02d}"
            out.append((f"null.partner.{agency}.out.requested", f"feed-{ref}", message.data))
            out.append(("null.evt.referral.delivered", f"dlv-{ref}", body(0, ref, size)))
        await publish_all(js, out)
        await acked(batch)

    return process


def reader(role: str, expected: int, done: Any) -> Any:
    """Reads and acks; says when it has seen ``expected`` messages."""
    seen = 0

    async def process(batch: list[Msg]) -> None:
        nonlocal seen
        seen += len(batch)
        await acked(batch)
        if seen >= expected:
            done.put((role, time.time(), seen))

    return process


# role -> the subject it reads; the readers say when they have seen all they expect.
HOPS = {
    "router": "null.evt.case.reported",
    "notifier": "null.evt.referral.requested",
    "ledger": "null.evt.>",  # audit's ledger writer
    "projection": "null.evt.>",  # intake's projection of case status
    "lifecycle": "null.evt.referral.delivered",  # routing's referral lifecycle
}


async def hop(role: str, nats_url: str, size: int, expected: int, done: Any, ready: Event) -> None:
    connection = await nats.connect(nats_url)
    js = connection.jetstream()
    if role == "router":
        process = router(js, size)
    elif role == "notifier":
        process = notifier(js, size)
    else:
        process = reader(role, expected, done)
    consumer = PullConsumer(HOPS[role], role, EVENTS, process, batch_size=BATCH_SIZE)
    await consumer.start(js)
    ready.set()
    await asyncio.Event().wait()  # until terminated


async def publisher(nats_url: str, referrals: list[int], size: int, done: Any) -> None:
    connection = await nats.connect(nats_url)
    js = connection.jetstream()
    started = time.time()
    for start in range(0, len(referrals), PUBLISH_WINDOW):
        chunk = range(start, min(start + PUBLISH_WINDOW, len(referrals)))
        await publish_all(
            js,
            [
                ("null.evt.case.reported", f"rep-{n}", body(referrals[n], str(n), size))
                for n in chunk
            ],
        )
    done.put(("published", started, time.time()))
    await connection.close()


def run_hop(role: str, *args: Any) -> None:
    uvloop.run(hop(role, *args))


def run_publisher(
    go: Event, nats_url: str, referrals: list[int], size: int, done: Any, ready: Event
) -> None:
    ready.set()  # imported and started: what the CPU meter should not count
    go.wait()
    uvloop.run(publisher(nats_url, referrals, size, done))


async def make_streams(nats_url: str) -> None:
    connection = await nats.connect(nats_url)
    js = connection.jetstream()
    for name, subject in ((EVENTS, "null.evt.>"), (PARTNER, "null.partner.>")):
        await js.add_stream(
            StreamConfig(
                name=name,
                subjects=[subject],
                storage=StorageType.FILE,
                retention=RetentionPolicy.LIMITS,
                duplicate_window=DUPLICATE_WINDOW_SECONDS,
            )
        )
    await connection.close()


def run_null_pipeline(
    referrals: list[int], size: int, *, all_readers: bool = False, timeout: float = 300
) -> NullResult:
    """Send ``len(referrals)`` reports through the null pipeline, report n having
    ``referrals[n]`` referrals; return how fast the last message reached the last reader.
    ``all_readers`` adds the two readers the real services have beyond the issue's shape:
    intake's projection (every event) and routing's lifecycle (every `delivered`)."""
    events = sum(2 + 2 * n for n in referrals)
    expected = {"router": 0, "notifier": 0, "ledger": events}
    if all_readers:
        expected |= {"projection": events, "lifecycle": sum(referrals)}
    context = multiprocessing.get_context("spawn")
    done = context.Queue()
    with tempfile.TemporaryDirectory(prefix="rujuk-null-") as folder:
        server = EmbeddedNats(Path(folder) / "nats").start()
        hops: dict[str, multiprocessing.process.BaseProcess] = {}

        def start(name: str, target: Any, *args: Any) -> None:
            ready = context.Event()
            hops[name] = context.Process(target=target, args=(*args, ready))
            hops[name].start()
            if not ready.wait(60):
                raise RuntimeError(f"null pipeline: the {name} did not start")

        try:
            asyncio.run(make_streams(server.ops_url))
            for role, count in expected.items():
                start(role, run_hop, role, server.ops_url, size, count, done)
            go = context.Event()
            start("publisher", run_publisher, go, server.ops_url, referrals, size, done)
            pids = {name: (process.pid, False) for name, process in hops.items()}
            cpu = CpuMeter({**pids, "nats": (server.process.pid, False)})  # type: ignore[union-attr]
            cpu.start()
            go.set()
            results = {}
            while len(results) < len(expected) - 1:  # the publisher and every reader
                kind, *values = done.get(timeout=timeout)
                results[kind] = values
            cpu_ms = cpu.spent_ms(len(referrals))
            others = cpu.others_seconds()
        finally:
            for process in hops.values():
                process.terminate()
                process.join(10)
            server.stop()
    started = results.pop("published")[0]
    finished = max(values[0] for values in results.values())
    seconds = finished - started
    messages = sum(2 + 3 * n for n in referrals)
    return NullResult(
        readers=sorted(results),
        reports=len(referrals),
        messages=messages,
        seconds=seconds,
        reports_per_second=len(referrals) / seconds,
        messages_per_second=messages / seconds,
        load_average=os.getloadavg()[0],
        cpu_ms_per_report=cpu_ms,
        other_processes_cpu_share=others / (seconds * (os.cpu_count() or 1)),
    )


def describe(result: NullResult) -> str:
    return (
        f"null pipeline ({', '.join(result.readers)} reading): {result.reports} reports "
        f"({result.messages} JetStream messages) in "
        f"{result.seconds:.1f} s = {result.reports_per_second:.0f} reports/s, "
        f"{result.messages_per_second:.0f} messages/s; load average {result.load_average:.1f} "
        f"on {os.cpu_count()} cores; CPU per report "
        f"{', '.join(f'{name} {ms:.2f}' for name, ms in result.cpu_ms_per_report.items())} ms, "
        f"sum {sum(result.cpu_ms_per_report.values()):.1f} ms; "
        f"{100 * result.other_processes_cpu_share:.0f}% of the cores taken by other processes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=3000)
    parser.add_argument("--referrals", default="2", help="referrals per report, cycled: 3,1,2")
    parser.add_argument("--size", type=int, default=1500, help="bytes per message")
    parser.add_argument("--all-readers", action="store_true", help="add projection, lifecycle")
    args = parser.parse_args()
    cycle = [int(n) for n in args.referrals.split(",")]
    referrals = [cycle[n % len(cycle)] for n in range(args.reports)]
    result = run_null_pipeline(referrals, args.size, all_readers=args.all_readers)
    print(describe(result))


if __name__ == "__main__":
    main()
