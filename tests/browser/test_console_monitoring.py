"""The rakor's monitoring summary in Chromium against the real stack: a coordinator opens it on
a phone and at a desk (no accessibility problem, axe-core finds nothing), its figures are
routing's, its printable version is one A4 page naming district, period and time, and the CSV
downloads."""

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Browser, Page

from rujuk.samples import SAMPLE_REPORTS
from rujuk.stack import Stack
from tests.browser.accessibility import axe_violations, page_problems
from tests.browser.test_console_journey import DESKTOP, PHONE
from tests.browser.test_console_scope import file_and_route

pytestmark = pytest.mark.integration

BY_OUTREACH = SAMPLE_REPORTS[2]  # Pasuruan (3514), reached by outreach (jemput bola)
PDF_PAGE = re.compile(rb"/Type\s*/Page(?!s)")


async def signed_in(browser: Browser, console: str, token: str, viewport: dict[str, int]) -> Page:
    context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(f"{console}/signin")
    await page.fill("#token", token)
    await page.click("main button[type=submit]")
    await page.wait_for_selector("form.who")
    return page


async def cell(page: Page, function: str) -> str:
    return await page.locator(f"#functions tr[data-function='{function}'] td").nth(1).inner_text()


async def test_the_rakor_summary_on_a_phone_and_a_desk_prints_on_one_a4_page(
    stack: Stack, browser: Browser, screenshots: Path
) -> None:
    case_id, agencies = await file_and_route(stack, BY_OUTREACH)
    console, routing = stack.services["console"].url, stack.services["routing"].url
    token = stack.secrets()["coordinator_token"]  # province level
    month = datetime.now(ZoneInfo("Asia/Jakarta")).date().replace(day=1)
    query = f"period=month&month={month:%Y-%m}&district=3514"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        asked = await client.get(
            f"{routing}/v1/monitoring",
            params={"from": month.isoformat(), "to": "2999-12-31", "district": "3514"},
        )
    figures = {f["function"]: f["cases"] for f in asked.json()["service_functions"]}
    assert figures["penjangkauan"] >= 1

    for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        page = await signed_in(browser, console, token, viewport)
        await page.goto(f"{console}/coordinator/monitoring?{query}")
        await page.wait_for_selector("#functions")
        await page.screenshot(path=screenshots / f"monitoring-{name}.png", full_page=True)
        assert await page_problems(page) == [], name
        assert await axe_violations(page) == [], name
        # The month's figures as routing counts them (the month ends before 2999).
        assert await cell(page, "pengaduan") == str(figures["pengaduan"])
        assert await cell(page, "penjangkauan") == str(figures["penjangkauan"])
        timeliness = await page.locator("#timeliness").inner_text()
        assert all(agency in timeliness for agency in agencies), (agencies, timeliness)
        assert "Semua lembaga" in timeliness
        assert case_id not in await page.content()  # figures only
        await page.context.close()

    page = await signed_in(browser, console, token, DESKTOP)
    await page.goto(f"{console}/coordinator/monitoring?{query}")
    async with page.expect_download() as download:
        await page.click("a[href^='/coordinator/monitoring.csv']")
    saved = screenshots / "monitoring.csv"
    await (await download.value).save_as(saved)
    rows = saved.read_text().splitlines()
    assert rows[0] == "section,key,subkey,metric,value"
    assert "period,,,districts,3514" in rows
    assert f"service_function,penjangkauan,,cases,{figures['penjangkauan']}" in rows

    await page.click("a[href*='print=1']")
    await page.wait_for_selector("body.printable")
    heading = await page.locator(".print-heading").inner_text()
    assert "Kab. Pasuruan (3514)" in heading
    assert month.isoformat() in heading
    assert "Dibuat" in heading
    assert await page_problems(page) == []
    assert await axe_violations(page) == []
    pdf = await page.pdf(format="A4")
    (screenshots / "monitoring-print.pdf").write_bytes(pdf)
    assert len(PDF_PAGE.findall(pdf)) == 1
    # The page itself, printed from the browser, also fits one page: menus and forms left out.
    await page.goto(f"{console}/coordinator/monitoring?{query}")
    assert len(PDF_PAGE.findall(await page.pdf(format="A4"))) == 1
    await page.context.close()
