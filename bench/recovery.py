"""Recovery under `rujuk up`'s supervisor: reports filed at a fixed rate while intake, routing,
notify, audit and NATS are killed with kill -9 one after another; the supervisor alone starts
each again (issue 23).

    .venv/bin/python bench/recovery.py [--rate 20] [--between 10] [--warmup 5] [--out PATH]
                                       [--kill intake,routing,notify,audit,nats]

Starts embedded NATS and PostgreSQL and the services as `rujuk up` does
(``rujuk.supervise.start_supervised``, the default backoff, a thread calling ``check`` every
0.1 s), and the signature-verifying webhook receiver of bench/e2e.py in a process of its own to
which notify delivers every referral. Sample reports (both districts) are filed at --rate for
the whole run (open loop: each at its scheduled time; one refused while intake is down is
counted, not retried). After --warmup seconds, each process of --kill in turn is killed, and
--between seconds later the next one.

Prints per kill: seconds until the process is started again and until it answers again (a
service's /healthz; NATS: a client connects), until every service answers; the reports filed
before the kill (since the process killed before it answered again) and those of them not yet
delivered at the kill (in flight); the worst accept-to-first-delivery of the reports filed
before the kill, and when the last of those in flight was first delivered, counted from the
kill (target: within 5 s). At the end: reports lost (accepted, not fully processed) and
duplicate deliveries (target: 0 each), and whether the ledger verifies. Writes JSON (default
bench/results/recovery-<time>.json).
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from e2e import (
    BODIES,
    DELIVERED,
    Journey,
    Tracker,
    machine,
    rounded,
    source_version,
    start_receiver,
)

from audit.cli import verify_ledger
from rujuk.stack import Stack
from rujuk.supervise import Supervisor, start_supervised

RESULTS = Path(__file__).parent / "results"
TARGET_SECONDS = 5.0  # every report filed before a kill: first delivered within this of it


@dataclass
class Filing:
    """Reports filed at a fixed rate until stopped; each accepted one is tracked under the
    phase current when it was filed (the kill it came before)."""

    tracker: Tracker
    url: str
    phase: str = ""
    refused: dict[str, int] = field(default_factory=dict)  # phase -> reports not accepted
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def file(self, client: aiohttp.ClientSession, number: int) -> None:
        phase, sent = self.phase, time.time()
        try:
            async with client.post(self.url, data=BODIES[number % len(BODIES)]) as response:
                answer = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError):
            status = 0
        if status != 202:
            self.refused[phase] = self.refused.get(phase, 0) + 1
            return
        self.tracker.accepted(json.loads(answer)["case_id"], phase, sent, time.time())

    async def run(self, client: aiohttp.ClientSession, rate: float) -> None:
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        number = 0
        while not self.stopping.is_set():
            delay = start + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.file(client, number)))
            number += 1
        await asyncio.gather(*tasks)


class Supervising:
    """`rujuk up`'s loop, in a thread: what the supervisor says, with the time it said it."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.said: list[tuple[float, str]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.said += [(time.time(), line) for line in self.supervisor.check()]
            time.sleep(0.1)


def pid_of(stack: Stack, name: str) -> int | None:
    server = stack.nats if name == "nats" else None
    process = server.process if server is not None else stack.services[name].process
    return None if process is None or process.poll() is not None else process.pid


async def answers(client: aiohttp.ClientSession, stack: Stack, name: str) -> bool:
    """The process serves again: a service's /healthz is 200; NATS greets a client with its
    INFO line (a full client's connect, TLS and nkey, adds its own second or two)."""
    try:
        if name == "nats":
            assert stack.nats is not None
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", stack.nats.port), 0.5
            )
            try:
                return (await asyncio.wait_for(reader.readline(), 0.5)).startswith(b"INFO")
            finally:
                writer.close()
        async with client.get(
            f"{stack.services[name].url}/healthz", timeout=aiohttp.ClientTimeout(total=0.5)
        ) as response:
            return response.status == 200
    except Exception:  # refused, reset, timed out: not yet
        return False


async def kill_and_watch(
    client: aiohttp.ClientSession, stack: Stack, name: str
) -> dict[str, float | None]:
    """kill -9 ``name``; seconds until it runs again (a new process), answers, and until every
    service answers."""
    pid = pid_of(stack, name)
    assert pid is not None, f"{name} is not running"
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    found: dict[str, float | None] = {"killed_at": killed, "restarted_s": None, "healthy_s": None}
    while time.time() - killed < 60:
        now = time.time() - killed
        if found["restarted_s"] is None and pid_of(stack, name) not in (None, pid):
            found["restarted_s"] = now
        if found["restarted_s"] is not None and await answers(client, stack, name):
            found["healthy_s"] = time.time() - killed
            break
        await asyncio.sleep(0.05)
    while time.time() - killed < 60:
        checks = [answers(client, stack, other) for other in stack.services]
        if all(await asyncio.gather(*checks)):
            found["all_healthy_s"] = time.time() - killed
            break
        await asyncio.sleep(0.05)
    return found


def kill_figures(
    name: str, watched: dict[str, Any], filed: list[Journey], refused: int
) -> dict[str, Any]:
    """What the reports filed before the kill of ``name`` saw (read once all completed)."""
    killed = watched["killed_at"]
    firsts = [(j, min(j.arrivals.values())) for j in filed if j.arrivals and j.accepted]
    in_flight = [(j, first) for j, first in firsts if first > killed]
    worst_after_kill = max((first - killed for _, first in in_flight), default=None)
    # Where each in-flight report was at the kill: seconds from the kill to its acceptance (<0),
    # to routing's `routed` event, to its first delivery.
    where = [
        [round(t - killed, 3) if t is not None else None for t in (j.accepted, j.routed_at, first)]
        for j, first in in_flight
    ]
    return {
        "process": name,
        **{k: v for k, v in watched.items() if k != "killed_at"},
        "reports_filed_before": len(filed),
        "refused_while_recovering": refused,
        "in_flight_at_kill": len(in_flight) + sum(1 for j in filed if not j.arrivals),
        "undelivered": sum(1 for j in filed if not j.arrivals),
        "worst_accept_to_first_delivery_ms": max(
            (1000 * (first - j.accepted) for j, first in firsts if j.accepted), default=None
        ),
        "latest_in_flight_first_delivery_after_kill_s": worst_after_kill,
        "in_flight_accepted_routed_delivered_s": where,
        "target_met": (worst_after_kill or 0) <= TARGET_SECONDS and all(j.arrivals for j in filed),
    }


def print_kill(figures: dict[str, Any]) -> None:
    def s(key: str) -> str:
        value = figures.get(key)
        return "never" if value is None else f"{value:.2f} s"

    worst = figures["worst_accept_to_first_delivery_ms"]
    after = figures["latest_in_flight_first_delivery_after_kill_s"]
    print(
        f"kill -9 {figures['process']}: started again after {s('restarted_s')}, answers after "
        f"{s('healthy_s')}, every service answers after {s('all_healthy_s')}; "
        f"{figures['reports_filed_before']} reports filed before it, "
        f"{figures['in_flight_at_kill']} in flight at the kill: worst accept -> first delivery "
        f"{'none' if worst is None else f'{worst:.0f} ms'}, the last in flight first delivered "
        f"{'none' if after is None else f'{after:.2f} s'} after the kill "
        f"(target {TARGET_SECONDS:g} s: {'met' if figures['target_met'] else 'NOT MET'}); "
        f"{figures['refused_while_recovering']} filings refused while it recovered",
        flush=True,
    )


@contextlib.asynccontextmanager
async def supervised_stack(folder: Path) -> Any:
    stack = Stack(folder, external_nats_url=None, external_database_url=None)
    receiver, port = start_receiver(stack)
    supervising: Supervising | None = None
    try:
        supervisor = await asyncio.to_thread(start_supervised, stack, None, 90)
        supervising = Supervising(supervisor)
        supervising.thread.start()
        yield stack, f"http://127.0.0.1:{port}/arrivals", supervising
    finally:
        if supervising is not None:
            supervising.stopping.set()
            supervising.thread.join(10)
        await asyncio.to_thread(stack.stop)
        if supervising is not None:
            supervising.supervisor.close()
        receiver.terminate()
        receiver.join(10)


async def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    async with supervised_stack(folder) as (stack, arrivals_url, supervising):
        tracker = Tracker(stack.database_url, arrivals_url)
        headers = {**stack.operator_headers(), "Content-Type": "application/json"}
        async with aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=30)
        ) as client:
            filing = Filing(tracker, f"{stack.services['intake'].url}/v1/reports")
            follower = tracker.following = asyncio.create_task(tracker.follow(client))
            watched: dict[str, dict[str, Any]] = {}
            filing.phase = f"before {args.kill[0]}"
            filer = asyncio.create_task(filing.run(client, args.rate))
            try:
                await asyncio.sleep(args.warmup)
                for number, name in enumerate(args.kill):
                    following = args.kill[number + 1] if number + 1 < len(args.kill) else "end"
                    kill = asyncio.create_task(kill_and_watch(client, stack, name))
                    await asyncio.sleep(0)  # the kill happens before the phase changes
                    filing.phase = f"during {name}"  # filed while it recovers: not counted
                    watched[name] = await kill
                    filing.phase = f"before {following}"
                    since_kill = time.time() - watched[name]["killed_at"]
                    await asyncio.sleep(max(0.0, args.between - since_kill))
                filing.stopping.set()
                await filer
                # Cases whose 202 the kill cut off are followed too, but no one waits for them.
                phases = {j.phase for j in tracker.journeys.values() if j.accepted is not None}
                complete = all([await tracker.wait_complete(p, 120) for p in sorted(phases)])
            finally:
                filing.stopping.set()
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
        verdict = await verify_ledger(stack.database_url)
        said = [(round(at - watched[args.kill[0]]["killed_at"], 2), line)
                for at, line in supervising.said]  # fmt: skip
    kills = []
    for name in args.kill:
        figures = kill_figures(
            name,
            watched[name],
            tracker.phase(f"before {name}"),
            filing.refused.get(f"during {name}", 0),
        )
        print_kill(figures)
        kills.append(figures)
    journeys = [j for j in tracker.journeys.values() if j.accepted is not None]
    lost = sum(1 for j in journeys if not j.complete)
    duplicates = sum(j.duplicates for j in tracker.journeys.values())
    accepted = len(journeys)
    refused = sum(filing.refused.values())
    # Cases intake took whose 202 the kill cut off: the client saw a refusal; they are processed
    # all the same (a client retrying with its Idempotency-Key would get the same case).
    unanswered = [
        j for j in tracker.journeys.values() if j.accepted is None and j.referrals is not None
    ]
    unanswered_done = sum(
        1
        for j in unanswered
        if j.referrals is not None
        and len(j.arrivals) == j.referrals
        and j.ledger[DELIVERED] == j.referrals
    )
    print(
        f"{accepted} reports accepted ({refused} refused while intake was down; "
        f"{len(unanswered)} of those were taken by intake before the kill cut its answer off, "
        f"{unanswered_done} of them fully delivered), "
        f"{sum(len(j.arrivals) for j in tracker.journeys.values())} referrals delivered; "
        f"lost: {lost}, duplicate deliveries: {duplicates}; every case complete: {complete}; "
        "ledger verifies: "
        f"{verdict.ok} ({verdict.entries} entries); webhook signatures rejected: "
        f"{tracker.rejected}",
        flush=True,
    )
    return {
        "kills": kills,
        "reports_accepted": accepted,
        "reports_refused": refused,
        "reports_lost": lost,
        "taken_but_answer_cut_off": len(unanswered),
        "taken_but_answer_cut_off_delivered": unanswered_done,
        "duplicate_deliveries": duplicates,
        "every_case_complete": complete,
        "ledger_verified": verdict.ok,
        "ledger_entries": verdict.entries,
        "signatures_rejected": tracker.rejected,
        "supervisor_said": said,
        "targets": {
            "in-flight first delivery within 5 s of each kill": all(k["target_met"] for k in kills),
            "0 lost, 0 duplicated": lost == 0 and duplicates == 0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20, help="reports/s, the whole run")
    parser.add_argument("--warmup", type=float, default=5, help="seconds before the first kill")
    parser.add_argument("--between", type=float, default=10, help="seconds from kill to kill")
    parser.add_argument(
        "--kill",
        type=lambda s: s.split(","),
        default=["intake", "routing", "notify", "audit", "nats"],
        help="processes to kill, in order, comma-separated",
    )
    parser.add_argument("--out", type=Path, help="JSON path")
    parser.add_argument(
        "--keep", type=Path, help="run the stack in this (new) folder and keep it: the logs"
    )
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or RESULTS / f"recovery-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    source = source_version()
    with tempfile.TemporaryDirectory(prefix="rujuk-recovery-") as folder:
        Path(folder).chmod(0o755)  # PostgreSQL may run as its own user (never as root)
        found = asyncio.run(measure(args, args.keep or Path(folder) / "stack"))
    for name, met in found["targets"].items():
        print(f"target {name}: {'met' if met else 'NOT MET'}")
    document = {
        "command": " ".join([".venv/bin/python bench/recovery.py", *sys.argv[1:]]),
        "when": stamp,
        "machine": machine(),
        "source": source,
        "rate_per_second": args.rate,
        **found,
    }
    out.write_text(json.dumps(rounded(document), indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
