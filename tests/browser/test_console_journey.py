"""The console in a real browser (Debian's headless Chromium) against the real services over
real NATS and PostgreSQL: an operator files a report, the partner's inbox shows it within
seconds, the partner accepts it and opens the details, the coordinator sees it accepted and
acknowledges the on-call alert at the top of its page, the auditor sees every hand-off and a
verified chain. Every page gets a screenshot, a basic accessibility check and axe-core's."""

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page

from intake import store
from intake.auth import Role
from routing import store as routing_store
from routing.paging import OnCallAlert, alert_id_for
from rujuk.stack import Stack
from rujuk_contracts.events import EscalationReason, Priority
from tests.browser.accessibility import axe_violations, page_problems

pytestmark = pytest.mark.integration

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
VICTIM = "CONTOH Korban Peramban"


class Journey:
    """Pages visited, each with its screenshot and its accessibility problems."""

    def __init__(self, browser: Browser, console: str, screenshots: Path) -> None:
        self.browser = browser
        self.console = console
        self.screenshots = screenshots
        self.problems: dict[str, list[str]] = {}

    async def signed_in(
        self, token: str, viewport: dict[str, int], *, script: bool = True
    ) -> tuple[BrowserContext, Page]:
        context = await self.browser.new_context(
            viewport=viewport,  # type: ignore[arg-type]
            java_script_enabled=script,
        )
        page = await context.new_page()
        await page.goto(f"{self.console}/signin")
        await page.fill("#token", token)
        await page.click("main button[type=submit]")
        return context, page

    async def record(self, page: Page, name: str, *, axe: bool = True) -> None:
        """``axe``: False on a page opened without script, where axe-core cannot run."""
        await page.screenshot(
            path=self.screenshots / f"{len(self.problems) + 1:02d}-{name}.png", full_page=True
        )
        self.problems[name] = await page_problems(page)
        if axe:
            self.problems[name] += await axe_violations(page)


async def partner_token(stack: Stack, agency_id: str) -> str:
    """A partner token, once every service that checks it has learnt of it."""
    conn = await asyncpg.connect(stack.database_url, server_settings={"search_path": "intake"})
    try:
        _, secret = await store.create_token(
            conn, Role.PARTNER, agency_id=agency_id, label="browser test"
        )
    finally:
        await conn.close()
    routing = stack.services["routing"].url
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {secret}"}) as client:
        for _ in range(100):
            if (await client.get(f"{routing}/v1/referrals")).status_code == 200:
                return secret
            await asyncio.sleep(0.1)
    pytest.fail("routing never learnt of the partner's token")


async def health_referral(stack: Stack, case_id: str) -> dict[str, Any]:
    intake = stack.services["intake"].url
    async with httpx.AsyncClient(headers=stack.operator_headers()) as client:
        for _ in range(100):
            status = (await client.get(f"{intake}/v1/cases/{case_id}")).json()
            health = [r for r in status["referrals"] if r["service"] == "health"]
            if health:
                found: dict[str, Any] = health[0]
                return found
            await asyncio.sleep(0.1)
    pytest.fail(f"case {case_id} was not referred to health")


async def chain_ran_out(stack: Stack, referral: dict[str, Any]) -> str:
    """The on-call alert routing opens when a referral's chain runs out, the coordinator
    included, opened with routing's own store in its own table: the shipped SOPs give each
    step minutes to hours, more than a browser test waits (tests/integration/
    test_routing_oncall.py runs the chain itself, on compressed minutes). Routing pages it
    and lists it from there as any other."""
    alert = OnCallAlert(
        alert_id=alert_id_for(referral["referral_id"]),
        case_id=referral["case_id"],
        district_code=referral["case_id"][:4],
        referral_id=referral["referral_id"],
        agency_id=referral["agency_id"],
        priority=Priority(referral["priority"]),
        reason=EscalationReason.DEADLINE_MISSED,
        opened_at=datetime.now(UTC),
        plan=None,
        rounds_paged=0,
        next_page_at=datetime.now(UTC),
    )
    conn = await asyncpg.connect(stack.database_url, server_settings={"search_path": "routing"})
    try:
        assert await routing_store.open_alert(conn, alert)
    finally:
        await conn.close()
    return alert.alert_id


async def acknowledge_alert_on_top(journey: Journey, page: Page, alert_id: str) -> None:
    """The alert heads the coordinator page, above every other section; Tanggapi stops it."""
    row = page.locator(f"#oncall [data-alert='{alert_id}']")
    assert await row.count() == 1
    first_section = page.locator("main section").first
    assert await first_section.get_attribute("id") == "oncall"
    assert "Belum ditanggapi: 1." in await page.locator("#oncall .warning").inner_text()
    await journey.record(page, "coordinator-oncall-alert")
    await row.locator("button[data-acknowledge]").click()
    await page.wait_for_selector("#oncall .notice[role=status]")
    assert "panggilan berhenti" in await page.locator("#oncall .notice").inner_text()
    assert await page.locator(f"#oncall [data-alert='{alert_id}']").count() == 0
    await journey.record(page, "coordinator-oncall-acknowledged")


async def file_report(journey: Journey, page: Page) -> str:
    await page.wait_for_selector("form.report")
    await journey.record(page, "operator-form")
    await page.select_option("#f-channel", "hotline")
    await page.select_option("#f-district-code", "3514")  # a province operator chooses
    await page.fill("#f-kecamatan", "Bangil")
    await page.fill("#f-village", "Desa Contoh (SAMPLE)")
    await page.fill("#f-victim-name", VICTIM)
    await page.fill("#f-victim-nik", "123")  # refused by intake, shown next to the field
    await page.fill("#f-victim-age-years", "14")
    await page.select_option("#f-victim-sex", "female")
    await page.fill("#f-victim-phone", "+62 800-0000-0009")
    await page.fill("#f-reporter-name", "CONTOH Pelapor Peramban")
    await page.select_option("#f-reporter-relationship", "parent")
    await page.check("#f-incident-violence-types-sexual")
    await page.fill("#f-incident-narrative", "SAMPLE narrative typed in a browser test.")
    await page.check("#f-risk-injury")
    await page.fill("#f-risk-hours-since-sexual-assault", "20")
    await page.check("#f-consent-share-with-health")
    await page.select_option("#f-consent-given-by", "guardian")
    await page.click("form.report button[type=submit]")
    nik = page.locator("#f-victim-nik")
    assert await nik.get_attribute("aria-invalid") == "true"
    assert "pattern" in await page.locator("#p-victim-nik-1").inner_text()
    assert await page.input_value("#f-victim-name") == VICTIM  # the form came back filled
    await journey.record(page, "operator-form-refused")
    await nik.fill("")
    await page.click("form.report button[type=submit]")
    await page.wait_for_selector("#case-status tr[data-referral]")
    await journey.record(page, "operator-case")
    return page.url.split("/cases/")[1].split("?")[0]


async def test_a_report_goes_from_operator_to_partner_coordinator_and_auditor_in_a_browser(
    stack: Stack, browser: Browser, screenshots: Path
) -> None:
    journey = Journey(browser, stack.services["console"].url, screenshots)
    keys = stack.secrets()

    # The operator files the full clinical form and sees the case routed.
    operator, page = await journey.signed_in(keys["operator_token"], PHONE)
    filed_at = time.monotonic()
    case_id = await file_report(journey, page)
    await operator.close()

    # The partner's inbox shows the referral within seconds; it accepts and reads the details.
    referral = await health_referral(stack, case_id)
    referral_id = referral["referral_id"]
    partner_secret = await partner_token(stack, referral["agency_id"])
    partner, page = await journey.signed_in(partner_secret, PHONE)
    card = f"article[data-referral='{referral_id}']"
    await page.wait_for_selector(card, timeout=10_000)
    assert time.monotonic() - filed_at < 15
    assert await page.locator(f"{card} .countdown").count() == 1
    assert await page.locator(f"{card} time[datetime]").count() == 1  # the deadline, as a time
    await journey.record(page, "partner-inbox")
    # Without script the page still works: the deadline is printed, the buttons are forms.
    plain, plain_page = await journey.signed_in(partner_secret, PHONE, script=False)
    assert await plain_page.locator(f"{card} time[datetime]").inner_text()
    assert await plain_page.locator(f"{card} form button[data-reply=accept]").count() == 1
    await journey.record(plain_page, "partner-inbox-without-script", axe=False)
    await plain.close()
    await page.click(f"{card} button[data-reply=accept]")
    await page.wait_for_selector(f"{card} button[data-reply=complete]", timeout=10_000)
    await journey.record(page, "partner-accepted")
    await page.click(f"{card} a[href='/cases/{case_id}/details']")
    assert "akan dicatat" in await page.locator("main").inner_text()
    assert VICTIM not in await page.content()
    await journey.record(page, "partner-disclosure-warning")
    await page.select_option("#purpose", "medical_care")
    await page.fill("#note", "pemeriksaan dan visum")  # kept as a note at intake, sealed
    await page.click("main form button[type=submit]")
    assert VICTIM in await page.locator("main").inner_text()
    await journey.record(page, "partner-details")
    await partner.close()

    # The coordinator sees it accepted, and an exhausted chain at the top until acknowledged.
    alert_id = await chain_ran_out(stack, {**referral, "case_id": case_id})
    coordinator, page = await journey.signed_in(keys["coordinator_token"], DESKTOP)
    await acknowledge_alert_on_top(journey, page, alert_id)
    row = page.locator("#open-referrals tr", has_text=referral["agency_id"])
    assert "Diterima" in await row.inner_text()
    await journey.record(page, "coordinator")
    async with page.expect_download() as csv_download:
        await page.click("a[href^='/coordinator/stats.csv']")
    figures = journey.screenshots / "coordinator-stats.csv"
    await (await csv_download.value).save_as(figures)
    assert figures.read_text().startswith("section,")
    await page.click("a[href^='/coordinator/monitoring']")  # the rakor's summary
    await page.wait_for_selector("#functions")
    await journey.record(page, "coordinator-monitoring")
    await page.goto(f"{journey.console}/cases/{case_id}")
    assert "Diterima" in await page.locator(f"tr[data-referral='{referral_id}']").inner_text()
    await journey.record(page, "coordinator-case")
    await coordinator.close()

    # The auditor sees every hand-off, the answer against its deadline, and a verified chain.
    auditor, page = await journey.signed_in(keys["auditor_token"], DESKTOP)
    await journey.record(page, "auditor-lookup")
    await page.fill("#case-id", case_id)
    await page.click("main button[type=submit]")
    referrals = await page_count_until_complete(page)
    assert await page.locator("#verdict[data-ok=true]").count() == 1
    accepted = page.locator("#timeline tr[data-event='referral.accepted']")
    assert await accepted.locator(".ok").count() == 1  # answered before its deadline
    assert referrals >= 1
    await journey.record(page, "auditor-timeline")
    async with page.expect_download() as bundle_download:
        await page.click(f"a[href='/audit/cases/{case_id}/bundle']")
    bundle = journey.screenshots / "audit-bundle.json"
    await (await bundle_download.value).save_as(bundle)
    assert case_id in bundle.read_text()
    await page.click("a[hreflang=en]")
    assert await page.locator("html").get_attribute("lang") == "en"
    assert "History of case" in await page.locator("h1").inner_text()
    await journey.record(page, "auditor-timeline-english")
    await auditor.close()

    assert {name: found for name, found in journey.problems.items() if found} == {}


async def page_count_until_complete(page: Page, timeout: float = 20) -> int:
    """Reload the timeline until the ledger holds every hand-off of the case, each under a
    signed checkpoint (the case's proof); the number of referrals. Every referral was
    requested and delivered; one was accepted; one disclosure; one on-call alert
    acknowledged."""
    deadline = time.monotonic() + timeout
    while True:
        counts = {}
        for event in (
            "case.reported",
            "case.routed",
            "referral.requested",
            "referral.delivered",
            "referral.accepted",
            "case.details_disclosed",
            "oncall.acknowledged",
        ):
            counts[event] = await page.locator(f"#timeline tr[data-event='{event}']").count()
        referrals = counts["referral.requested"]
        if (
            counts["case.reported"] == counts["case.routed"] == 1
            and referrals
            and counts["referral.delivered"] == referrals
            and counts["referral.accepted"] == counts["case.details_disclosed"] == 1
            and counts["oncall.acknowledged"] == 1  # in the console, by the coordinator
            and await page.locator("#verdict[data-ok=true]").count() == 1
            and await page.locator("#pending").count() == 0  # the next checkpoint came
        ):
            return referrals
        if time.monotonic() > deadline:
            pytest.fail(f"the ledger's timeline is missing hand-offs: {counts}")
        await asyncio.sleep(0.5)
        await page.reload()
