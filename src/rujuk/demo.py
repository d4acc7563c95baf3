"""`rujuk demo`: start everything on embedded defaults, file sample reports, and show each
case's journey from the audit ledger: reported, routed, referred, delivered, verified."""

import asyncio
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from audit.chain import short_hash
from audit.cli import case_history, verify_ledger
from audit.report import history, render_table
from rujuk.ports import PortBook
from rujuk.receiver import WebhookReceiver
from rujuk.samples import SAMPLE_REPORTS
from rujuk.stack import Stack
from rujuk_runtime.logs import configure_logging

JOURNEY_TIMEOUT_SECONDS = 60.0


@dataclass
class CaseProgress:
    case_id: str
    referrals: int = 0
    delivered: int = 0
    ledger_entries: int = 0
    routed: bool = False

    @property
    def complete(self) -> bool:
        expected_entries = 2 + 2 * self.referrals  # reported, routed, requested+delivered each
        return (
            self.routed
            and self.delivered == self.referrals
            and self.ledger_entries >= expected_entries
        )


async def run_demo(folder: Path) -> int:
    configure_logging("rujuk-demo", "WARNING")  # the journey is the output, not provisioning's log
    ports = PortBook(folder, say=say)  # read before the wipe: the demo keeps its ports
    shutil.rmtree(folder, ignore_errors=True)
    stack = Stack(folder, ports=ports)
    say("rujuk demo — sistem rujukan kasus kekerasan terhadap perempuan dan anak")
    say("           referral system for violence against women and children\n")
    receiver = WebhookReceiver(stack.secrets()["webhook_signing_key"].encode())
    stack.extra_env["NOTIFY_WEBHOOK_BASE_URL"] = receiver.base_url
    async with receiver.running():
        try:
            say("Menyalakan NATS, PostgreSQL dan empat layanan / starting NATS, PostgreSQL, "
                "and the four services ...")  # fmt: skip
            started = time.monotonic()
            await asyncio.to_thread(stack.start)
            say(f"  NATS {stack.nats_public_url}, PostgreSQL {stack.database_address}")
            for name, service in stack.services.items():
                say(f"  {name:<8} {service.url}  (log: {service.log_file})")
            say(f"  ready in {time.monotonic() - started:.1f}s\n")
            return await _file_and_follow(stack, receiver)
        finally:
            say("\nMematikan semua / stopping everything ...")
            await asyncio.to_thread(stack.stop)
            say("Selesai / done.")


async def _file_and_follow(stack: Stack, receiver: WebhookReceiver) -> int:
    intake_url = stack.services["intake"].url
    async with httpx.AsyncClient(timeout=10, headers=stack.operator_headers()) as client:
        cases: list[CaseProgress] = []
        say("Laporan masuk / filing sample reports (invented people):")
        for number, report in enumerate(SAMPLE_REPORTS, start=1):
            response = await client.post(
                f"{intake_url}/v1/reports",
                json=report,
                headers={"Idempotency-Key": f"demo-{number}"},
            )
            response.raise_for_status()
            case_id = response.json()["case_id"]
            cases.append(CaseProgress(case_id))
            say(f"  {response.status_code} case {case_id}  ({report['channel']}, "
                f"district {report['district_code']}, "
                f"{'+'.join(report['incident']['violence_types'])})")  # fmt: skip
        finished = await _wait_for_journeys(client, stack, intake_url, cases)
    say("")
    for progress in cases:
        entries = await case_history(stack.service_database_url("audit"), progress.case_id)
        say(render_table(progress.case_id, history(entries)))
        say("")
    verdict = await verify_ledger(stack.service_database_url("audit"))  # as audit reads it
    if verdict.ok:
        say(f"Buku besar audit terverifikasi / audit ledger verified: {verdict.entries} entries, "
            f"head #{verdict.head_seq} {short_hash(verdict.head_hash)}")  # fmt: skip
    else:
        assert verdict.failure is not None
        say(f"AUDIT LEDGER FAILED VERIFICATION at entry #{verdict.failure.seq}: "
            f"{verdict.failure.detail}")  # fmt: skip
    say(f"Webhook partner: {len(receiver.deliveries)} referrals received, every signature "
        f"verified (Standard Webhooks); {receiver.rejected} refused")  # fmt: skip
    coordinator_sees = await _open_referrals_as_coordinator(stack)
    if not finished:
        say("NOT EVERY CASE COMPLETED ITS JOURNEY in time: see the service logs above.")
    return 0 if finished and verdict.ok and coordinator_sees else 1


async def _open_referrals_as_coordinator(stack: Stack) -> bool:
    """The coordinator's token, issued by intake at start, read at routing: one identity."""
    url = f"{stack.services['routing'].url}/v1/referrals"
    headers = {"Authorization": f"Bearer {stack.secrets()['coordinator_token']}"}
    async with httpx.AsyncClient(timeout=10, headers=headers) as client:
        deadline = time.monotonic() + 15
        while (response := await client.get(url, params={"open": "true"})).status_code == 401:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    if response.status_code != 200:
        say(f"THE COORDINATOR'S TOKEN IS REFUSED AT ROUTING: {response.status_code}")
        return False
    referrals = response.json()["referrals"]
    agencies = sorted({r["agency_id"] for r in referrals})
    say(f"Koordinator (token dari intake) di routing / the coordinator (intake's token) at "
        f"routing: {len(referrals)} open referrals, {len(agencies)} agencies")  # fmt: skip
    return True


async def _wait_for_journeys(
    client: httpx.AsyncClient, stack: Stack, intake_url: str, cases: list[CaseProgress]
) -> bool:
    deadline = time.monotonic() + JOURNEY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for progress in cases:
            status = (await client.get(f"{intake_url}/v1/cases/{progress.case_id}")).json()
            progress.routed = status["status"] == "routed"
            progress.referrals = len(status["referrals"])
            progress.delivered = sum(r["state"] == "delivered" for r in status["referrals"])
            ledger = await case_history(stack.service_database_url("audit"), progress.case_id)
            progress.ledger_entries = len(ledger)
        if all(p.complete for p in cases):
            return True
        await asyncio.sleep(0.3)
    return False


def say(line: str) -> None:
    print(line, flush=True)
