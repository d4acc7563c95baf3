"""Notify's delivery latency and rate: `referral requested` published on JetStream, notify
running as its own process (``python -m notify``), a local signature-verifying webhook
receiver timing each arrival.

    .venv/bin/python bench/notify_delivery.py [--rate 100] [--seconds 20] [--agencies 10]
    .venv/bin/python bench/notify_delivery.py --burst 3000      # how fast a backlog drains

Private nats-server and PostgreSQL (EmbeddedNats/EmbeddedPostgres) in a temporary folder.
Latency = webhook arrival - just before publish (both clocks in this process). Every
referral goes out on two channels (the agency's NATS feed and its webhook); the webhook is
what is timed.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import nats

from rujuk.receiver import WebhookReceiver
from rujuk_contracts import make_event
from rujuk_contracts.events import Priority, ReferralRequested, Service
from rujuk_runtime.bus import ensure_streams, event_headers
from rujuk_runtime.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from rujuk_runtime.provision import provision

SIGNING_KEY = b"bench-signing-key"


class TimingReceiver(WebhookReceiver):
    def __init__(self) -> None:
        super().__init__(SIGNING_KEY)
        self.arrived: dict[str, float] = {}

    def _handle(self, scope: dict[str, Any], body: bytes) -> int:
        status = super()._handle(scope, body)
        if status == 204:
            referral_id = self.deliveries[-1].event["data"]["referral_id"]
            self.arrived.setdefault(referral_id, time.perf_counter())
        return status


def referral(n: int, agencies: int) -> ReferralRequested:
    return ReferralRequested(
        case_id=f"3513-{n:010d}".replace("0", "A", 1),
        referral_id=f"bench-{n:07d}",
        agency_id=f"agency-{n % agencies:02d}",
        service=Service.HEALTH,
        priority=Priority.URGENT,
        acknowledgement_deadline="2026-12-01T00:00:00Z",  # type: ignore[arg-type]
        escalation_chain=[],
        sop_id="sop-bench",
        sop_version=1,
        rule_ids=["r1"],
    )


def start_notify(
    nats_url: str, database_url: str, receiver: WebhookReceiver
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "NOTIFY_HTTP_PORT": str(port),
        "NOTIFY_WEBHOOK_BASE_URL": receiver.base_url,
        "NOTIFY_WEBHOOK_SIGNING_KEY": SIGNING_KEY.decode(),
        "RUJUK_LOG_LEVEL": "WARNING",
    }
    runner = os.environ.get("BENCH_NOTIFY_RUNNER")  # e.g. a script that profiles notify
    command = [sys.executable, runner] if runner else [sys.executable, "-m", "notify"]
    process = subprocess.Popen(command, env=env)
    return process, port


async def wait_healthy(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("notify did not become healthy")


async def run(args: argparse.Namespace, nats_url: str, database_url: str) -> None:
    receiver = TimingReceiver()
    async with receiver.running():
        connection = await nats.connect(nats_url)
        js = connection.jetstream()
        await ensure_streams(js)
        process, port = start_notify(nats_url, database_url, receiver)
        try:
            await wait_healthy(port)
            # Warm up: one referral per agency (connections, consumers, lanes).
            for n in range(args.agencies):
                await publish(js, referral(10_000_000 - 1 - n, args.agencies))
            while len(receiver.arrived) < args.agencies:
                await asyncio.sleep(0.05)
            receiver.arrived.clear()
            cpu_before = cpu_seconds(process.pid)

            count = args.burst or int(args.rate * args.seconds)
            payloads = [referral(n, args.agencies) for n in range(count)]
            sent: dict[str, float] = {}
            started = time.perf_counter()
            if args.burst:
                for start in range(0, count, 200):
                    chunk = payloads[start : start + 200]
                    now = time.perf_counter()
                    for p in chunk:
                        sent[p.referral_id] = now
                    await asyncio.gather(*(publish(js, p) for p in chunk))
            else:
                interval = 1.0 / args.rate
                for n, payload in enumerate(payloads):
                    delay = started + n * interval - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    sent[payload.referral_id] = time.perf_counter()
                    await publish(js, payload)
            published = time.perf_counter() - started
            deadline = time.perf_counter() + 300
            while len(receiver.arrived) < count and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            report(args, sent, receiver.arrived, started, published)
            cpu = cpu_seconds(process.pid) - cpu_before
            print(f"  notify process CPU: {cpu:.1f}s, {cpu * 1000 / count:.2f} ms per referral"
                  f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            await connection.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def publish(js: Any, payload: ReferralRequested) -> None:
    event = make_event(payload, source="/rujuk/bench")
    await js.publish(
        ReferralRequested.subject(), event.to_bytes(), headers=event_headers(event.id, None)
    )


def report(
    args: argparse.Namespace,
    sent: dict[str, float],
    arrived: dict[str, float],
    started: float,
    published: float,
) -> None:
    latencies = sorted((arrived[r] - sent[r]) * 1000 for r in sent if r in arrived)
    missing = len(sent) - len(latencies)
    last = max(arrived[r] for r in sent if r in arrived)
    quantiles = statistics.quantiles(latencies, n=100)
    mode = f"burst of {args.burst}" if args.burst else f"{args.rate}/s for {args.seconds}s"
    print(f"notify delivery bench: {mode}, {args.agencies} agencies, webhook + NATS feed each")
    print(f"  published {len(sent)} in {published:.2f}s ({len(sent) / published:.0f}/s)")
    print(f"  delivered {len(latencies)} webhooks in {last - started:.2f}s "
          f"({len(latencies) / (last - started):.0f}/s), missing {missing}")  # fmt: skip
    print(f"  latency ms: p50 {quantiles[49]:.1f}  p90 {quantiles[89]:.1f}  "
          f"p99 {quantiles[98]:.1f}  max {latencies[-1]:.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="referrals per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--agencies", type=int, default=10)
    parser.add_argument("--burst", type=int, default=0, help="publish N at once instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rujuk-bench-") as folder:
        nats_server = EmbeddedNats(Path(folder) / "nats").start()
        postgres = EmbeddedPostgres(Path(folder) / "postgres").start()
        try:
            asyncio.run(provision(postgres.url, {}))  # schemas and migrations, as for a stack
            asyncio.run(run(args, nats_server.ops_url, postgres.url))
        finally:
            nats_server.stop()
            postgres.stop()


if __name__ == "__main__":
    main()
