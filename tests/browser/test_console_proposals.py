"""An SOP proposal in Chromium against the real stack: a coordinator proposes version 2 of
3513 that shortens two agencies' deadlines, runs its impact simulation and watches it finish,
each of the two agencies signs in and agrees, the coordinator publishes, and the proposal
shows published. Every new page passes the page checks and axe-core on a phone and a desk."""

import asyncio
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, Page

from intake import store
from intake.auth import Role
from rujuk.samples import SAMPLE_REPORTS
from rujuk.stack import Stack
from tests.browser.accessibility import axe_violations, page_problems
from tests.browser.test_console_journey import DESKTOP, PHONE
from tests.browser.test_console_monitoring import signed_in
from tests.browser.test_console_scope import file_and_route, until_known
from tests.integration.test_routing_proposals import V2

pytestmark = pytest.mark.integration

IN_3513 = SAMPLE_REPORTS[3]  # a child's case in Probolinggo: case management by UPT PPA
ASKED = ("lbh-probolinggo", "uptppa-probolinggo")  # the two deadlines V2 shortens


async def partner_token(stack: Stack, agency_id: str) -> str:
    conn = await asyncpg.connect(stack.database_url, server_settings={"search_path": "intake"})
    try:
        _, secret = await store.create_token(
            conn, Role.PARTNER, agency_id=agency_id, label="proposal test"
        )
    finally:
        await conn.close()
    await until_known(stack, secret)
    return secret


async def checked(page: Page, name: str, screenshots: Path) -> None:
    """The page as it is now, on a phone and at a desk: no problem, no axe violation."""
    for size, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        await page.set_viewport_size(viewport)  # type: ignore[arg-type]
        await page.screenshot(path=screenshots / f"{name}-{size}.png", full_page=True)
        assert await page_problems(page) == [], (name, size)
        assert await axe_violations(page) == [], (name, size)


async def test_a_proposal_is_simulated_agreed_by_both_agencies_and_published(
    stack: Stack, browser: Browser, screenshots: Path
) -> None:
    case_id, _ = await file_and_route(stack, IN_3513)
    console = stack.services["console"].url
    partners = await asyncio.gather(*(partner_token(stack, agency) for agency in ASKED))

    coordinator = await signed_in(browser, console, stack.secrets()["coordinator_token"], DESKTOP)
    await coordinator.goto(f"{console}/coordinator")
    await coordinator.click("a[href='/coordinator/sops']")
    await coordinator.wait_for_selector("section[data-district='3513']")
    await checked(coordinator, "sops", screenshots)
    await coordinator.fill("#document", V2)
    await coordinator.click("#propose button[type=submit]")
    await coordinator.wait_for_selector("#asked")
    proposal_url = coordinator.url
    for agency in ASKED:
        row = coordinator.locator(f"#asked tr[data-agency='{agency}']")
        assert await row.get_attribute("data-answer") == "awaiting"
        assert "Batas waktu lebih singkat" in await row.inner_text()
    assert await coordinator.locator(".rule-change[data-kind='changed']").count() == 2

    await coordinator.click("#simulate")  # the last 90 days, by default
    await coordinator.wait_for_selector("#simulation[data-state='done']", timeout=30_000)
    progress = coordinator.locator("#simulation-progress")
    assert await progress.get_attribute("value") == await progress.get_attribute("max")
    assert await coordinator.locator(f"#changed-cases tr[data-case='{case_id}']").count() == 1
    deadlines = await coordinator.locator("#deadline-changes").inner_text()
    assert "uptppa-probolinggo" in deadlines
    await checked(coordinator, "proposal-simulated", screenshots)

    for agency, token in zip(ASKED, partners, strict=True):
        partner = await signed_in(browser, console, token, PHONE)
        await partner.click("main a[href='/sops']")  # from the inbox
        await partner.wait_for_selector("#proposals")
        await checked(partner, f"partner-sops-{agency}", screenshots)
        await partner.click("#proposals a")
        await partner.wait_for_selector("#own-duties")
        assert "Batas waktu lebih singkat" in await partner.locator("#own-duties").inner_text()
        await checked(partner, f"partner-proposal-{agency}", screenshots)
        await partner.click("#agree")
        await partner.wait_for_selector("p.notice[role=status]")
        assert await partner.locator("#your-answer").inner_text() == "Setuju"
        await partner.context.close()

    await coordinator.goto(proposal_url)
    for agency in ASKED:
        row = coordinator.locator(f"#asked tr[data-agency='{agency}']")
        assert await row.get_attribute("data-answer") == "agreed"
    assert await coordinator.locator("#override_reason").get_attribute("required") is None
    await checked(coordinator, "proposal-agreed", screenshots)
    await coordinator.click("#publish-button")
    await coordinator.wait_for_selector("p.notice[role=status]")
    assert await coordinator.locator(".state").first.get_attribute("data-state") == "published"
    assert await coordinator.locator("#publish-button").count() == 0
    await coordinator.goto(f"{console}/coordinator/sops")
    in_force = await coordinator.locator("section[data-district='3513'] p").first.inner_text()
    assert "sop-3513 v2" in in_force
    await coordinator.context.close()
