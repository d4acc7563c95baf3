"""A village cadre's reports, in Chromium against the real stack (issue 25): the page loads
with no signal (its service worker); two reports filed offline wait on the device, sealed,
survive a reload and arrive exactly once when the connection returns; a refused one is
corrected and sent again; after the 202 nothing identifying is left in IndexedDB, the Cache
API or localStorage; signing out, from the cadre's page or any other, warns, then wipes the
key and the queue, and a second cadre on the same browser sees nothing of the first; with the
page closed, the service worker's Background Sync sends the queue exactly once; a cadre
reading case details gets 403."""

import asyncio
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page

from console.cadre import owner_of
from intake import store
from intake.auth import Role
from rujuk.stack import Stack
from tests.browser.accessibility import axe_violations, page_problems
from tests.browser.test_console_journey import PHONE
from tests.browser.test_console_light import Traffic

pytestmark = pytest.mark.integration

DESA = "Desa Contoh Kader"  # invented
VICTIMS = ("CONTOH Korban Desa Satu", "CONTOH Korban Desa Dua", "CONTOH Korban Desa Tiga")
FIRST_LOAD_BUDGET = 150_000
REPORT_BUDGET = 5_000

STORAGE = """async () => {
  const text = (v) => String.fromCharCode(...new Uint8Array(v.buffer || v));
  const found = {databases: {}, caches: [], local: {...localStorage},
                 session: {...sessionStorage}};
  for (const info of await indexedDB.databases()) {
    const db = await new Promise((ok) => {
      const q = indexedDB.open(info.name); q.onsuccess = () => ok(q.result); });
    const stores = {};
    for (const name of db.objectStoreNames) {
      const rows = await new Promise((ok) => {
        const q = db.transaction(name).objectStore(name).getAll();
        q.onsuccess = () => ok(q.result); });
      stores[name] = rows.map((row) => row instanceof CryptoKey
        ? {cryptoKey: row.algorithm.name, extractable: row.extractable}
        : JSON.parse(JSON.stringify(row, (k, v) =>
            v instanceof ArrayBuffer || ArrayBuffer.isView(v) ? {bytes: text(v)} : v)));
    }
    db.close();
    stores.name = info.name;
    found.databases[info.name] = stores;
  }
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    for (const request of await cache.keys()) {
      found.caches.push([name, request.url, await (await cache.match(request)).text()]);
    }
  }
  return found;
}"""


async def cadre_token(stack: Stack, areas: list[str]) -> tuple[str, str]:
    conn = await asyncpg.connect(stack.database_url, server_settings={"search_path": "intake"})
    try:
        return await store.create_token(
            conn, Role.CADRE, districts=["3513"], areas=areas, label="kader contoh"
        )
    finally:
        await conn.close()


async def cases_filed_by(stack: Stack, token_id: str) -> list[str]:
    conn = await asyncpg.connect(stack.database_url, server_settings={"search_path": "intake"})
    try:
        rows = await conn.fetch(
            "SELECT case_id, channel FROM cases WHERE filed_by = $1 ORDER BY case_id", token_id
        )
    finally:
        await conn.close()
    assert {r["channel"] for r in rows} <= {"outreach"}
    return [r["case_id"] for r in rows]


async def sign_in(context: BrowserContext, console: str, secret: str) -> Page:
    page = await context.new_page()
    await page.goto(f"{console}/signin")
    await page.fill("#token", secret)
    await page.click("main button[type=submit]")
    await page.wait_for_selector("#cadre-form")
    return page


async def fill(page: Page, victim: str, nik: str = "") -> None:
    await page.fill("#c-victim-name", victim)
    await page.fill("#c-victim-age_years", "15")
    await page.select_option("#c-victim-sex", "female")
    await page.fill("#c-victim-nik", nik)
    await page.check("#c-vt-physical")
    await page.fill("#c-incident-narrative", f"SAMPLE narrative of {victim}.")
    await page.check("#c-consent-share_with_health")
    await page.click("#queue-report")


async def states(page: Page) -> list[str]:
    found: list[str] = await page.eval_on_selector_all(
        "#queue > li", "(items) => items.map((li) => li.dataset.state)"
    )
    return found


async def until_states(page: Page, expected: list[str], timeout: float = 20) -> None:
    for _ in range(int(timeout / 0.1)):
        if await states(page) == expected:
            return
        await asyncio.sleep(0.1)
    shown = await page.locator("main").inner_text()
    pytest.fail(f"queue states {await states(page)}, expected {expected}; the page: {shown}")


def holds(storage: dict[str, Any], text: str) -> bool:
    """Whether ``text`` is anywhere in IndexedDB, the Cache API or web storage."""
    kept = [storage["databases"], storage["local"], storage["session"]]
    return text in str(kept) or any(text in c[2] for c in storage["caches"])


async def test_reports_filed_offline_arrive_once_and_leave_nothing_identifying(
    stack: Stack, browser: Browser
) -> None:
    console = stack.services["console"].url
    token_id, secret = await cadre_token(stack, [f"Kraksaan/{DESA}"])
    context = await browser.new_context(viewport=PHONE)  # type: ignore[arg-type]
    page = await context.new_page()
    traffic = Traffic()
    await traffic.attach(context, page)
    await page.goto(f"{console}/signin")
    await page.fill("#token", secret)
    mark = traffic.mark()
    await page.click("main button[type=submit]")
    await page.wait_for_selector("#cadre-form")
    assert await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    first_load = sum(e.down for e in traffic.since(mark))
    assert first_load < FIRST_LOAD_BUDGET, first_load
    sent_bodies: list[int] = []
    page.on(
        "request",
        lambda r: (
            sent_bodies.append(len(r.post_data_buffer or b""))
            if r.url.endswith("/cadre/reports")
            else None
        ),
    )
    assert await page_problems(page) == []
    assert await axe_violations(page) == []

    # No signal: the page still opens; two reports wait, sealed, and survive a reload.
    await context.set_offline(True)
    await page.reload()
    await page.wait_for_selector("#cadre-form")
    await fill(page, VICTIMS[0])
    await until_states(page, ["waiting"])
    await fill(page, VICTIMS[1])
    await until_states(page, ["waiting", "waiting"])
    await page.reload()
    await until_states(page, ["waiting", "waiting"])
    kept = await page.evaluate(STORAGE)
    (queue,) = kept["databases"].values()
    assert queue["keys"] == [{"cryptoKey": "AES-GCM", "extractable": False}]
    assert len({r["key"] for r in queue["reports"]}) == 2  # an Idempotency-Key each
    assert not holds(kept, VICTIMS[0])  # sealed: the name is in no store in the clear
    assert not holds(kept, "SAMPLE narrative")
    assert await cases_filed_by(stack, token_id) == []

    # Signal again: both arrive, exactly once; the sealed copies are gone.
    await context.set_offline(False)
    await until_states(page, ["accepted", "accepted"])
    filed = await cases_filed_by(stack, token_id)
    assert len(filed) == 2
    shown = await page.locator("#queue").inner_text()
    assert all(case_id in shown for case_id in filed)
    await page.reload()  # a resend on reload would make a third
    await until_states(page, ["accepted", "accepted"])
    await asyncio.sleep(0.5)
    assert len(await cases_filed_by(stack, token_id)) == 2
    left = await page.evaluate(STORAGE)
    for victim in VICTIMS[:2]:
        assert not holds(left, victim)
    for record in next(iter(left["databases"].values()))["reports"]:
        assert set(record) == {"id", "filedAt", "state", "caseId"}  # no sealed copy, no key
    assert left["local"] == {}
    assert set(left["session"]) <= {"htmx-current-path-for-history"}  # htmx's, a path

    # Refused by intake, corrected, sent again: one more case.
    await fill(page, VICTIMS[2], nik="123")
    await until_states(page, ["accepted", "accepted", "refused"])
    refused = page.locator("#queue > li[data-state=refused]")
    assert "NIK (16 angka)" in await refused.inner_text()
    await refused.locator("button[data-act=fix]").click()
    assert await page.input_value("#c-victim-name") == VICTIMS[2]
    await page.fill("#c-victim-nik", "")
    await page.click("#queue-report")
    await until_states(page, ["accepted", "accepted", "accepted"])
    filed = await cases_filed_by(stack, token_id)
    assert len(filed) == 3
    assert 0 < max(sent_bodies) < REPORT_BUDGET, sent_bodies
    print(f"\ncadre page, first load: {first_load} B; a report: {max(sent_bodies)} B of JSON")
    assert not holds(await page.evaluate(STORAGE), VICTIMS[2])

    # A cadre reads its case's status, never its details.
    assert (await page.goto(f"{console}/cases/{filed[0]}")).status == 200  # type: ignore[union-attr]
    details = await page.goto(f"{console}/cases/{filed[0]}/details")
    assert details is not None
    assert details.status == 403
    await context.close()


async def test_signing_out_warns_then_wipes_and_the_next_cadre_sees_nothing(
    stack: Stack, browser: Browser
) -> None:
    console = stack.services["console"].url
    _, first = await cadre_token(stack, [f"Kraksaan/{DESA}"])
    _, second = await cadre_token(stack, ["Kraksaan", "Maron"])
    context = await browser.new_context(viewport=PHONE)  # type: ignore[arg-type]
    page = await sign_in(context, console, first)
    await fill(page, VICTIMS[0], nik="123")  # refused: it stays on the phone
    await until_states(page, ["refused"])
    await page.click("form.who button")
    warning = page.locator("#signout-warning[role=alert]")
    assert "1 laporan belum terkirim" in await warning.inner_text()
    assert "/cadre/" in page.url  # still here: nothing deleted yet
    assert len((await page.evaluate(STORAGE))["databases"]) == 1  # the queue is still there
    async with page.expect_navigation():
        await page.click("form.who button")
    assert "/signin" in page.url
    gone = await page.evaluate(STORAGE)
    assert gone["databases"] == {}
    assert gone["caches"] == []

    page = await sign_in(context, console, second)
    assert await states(page) == []
    assert await page.locator("#queue-empty").is_visible()
    mine = await page.evaluate(STORAGE)
    assert len(mine["databases"]) <= 1  # its own, if any, empty of reports
    for queue in mine["databases"].values():
        assert queue.get("reports", []) == []
    assert not holds(mine, VICTIMS[0])
    await context.close()


async def registrations(page: Page) -> int:
    found: int = await page.evaluate(
        "navigator.serviceWorker.getRegistrations().then((r) => r.length)"
    )
    return found


async def test_signing_out_from_another_page_warns_and_wipes_the_queue_filed_offline(
    stack: Stack, browser: Browser
) -> None:
    console = stack.services["console"].url
    _, first = await cadre_token(stack, [f"Kraksaan/{DESA}"])
    _, second = await cadre_token(stack, ["Kraksaan"])
    context = await browser.new_context(viewport=PHONE)  # type: ignore[arg-type]
    page = await sign_in(context, console, first)
    assert await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    await context.set_offline(True)
    # Sent when the signal returns (by Background Sync: the page is closed), intake refuses
    # it (a bad NIK): it stays on the phone, not sent, whatever state it is in by then.
    await fill(page, VICTIMS[0], nik="123")
    await until_states(page, ["waiting"])
    await page.close()  # the cadre's page is gone: nothing of it runs any more

    await context.set_offline(False)
    elsewhere = await context.new_page()
    await elsewhere.goto(f"{console}/cases")  # a page a cadre has, outside /cadre/
    assert await elsewhere.locator("form.who[data-cadre-owner]").count() == 1
    await elsewhere.click("form.who button")
    warning = elsewhere.locator("#signout-warning[role=alert]")
    text = await warning.inner_text()
    assert "1 laporan belum terkirim akan hilang" in text  # Bahasa Indonesia first,
    assert text.index("laporan") < text.index("1 report(s) not yet sent")  # then English
    assert "/cases" in elsewhere.url  # still here, nothing deleted yet
    kept = await elsewhere.evaluate(STORAGE)
    assert len(kept["databases"]) == 1  # the queue
    assert kept["caches"]  # and the kept page
    async with elsewhere.expect_navigation():
        await elsewhere.click("form.who button")
    assert "/signin" in elsewhere.url
    gone = await elsewhere.evaluate(STORAGE)
    assert gone["databases"] == {}
    assert gone["caches"] == []
    assert gone["local"] == {}
    assert await registrations(elsewhere) == 0

    page = await sign_in(context, console, second)
    assert await states(page) == []
    mine = await page.evaluate(STORAGE)
    for queue in mine["databases"].values():
        assert queue.get("reports", []) == []
    assert not holds(mine, VICTIMS[0])
    assert not holds(mine, DESA)  # not even the first cadre's village, kept in its page
    await context.close()


async def test_background_sync_sends_the_queue_with_the_page_closed_exactly_once(
    stack: Stack, browser: Browser
) -> None:
    console = stack.services["console"].url
    token_id, secret = await cadre_token(stack, [f"Kraksaan/{DESA}"])
    context = await browser.new_context(viewport=PHONE)  # type: ignore[arg-type]
    page = await sign_in(context, console, secret)
    assert await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    assert await page.evaluate("'SyncManager' in window")
    await context.set_offline(True)
    await fill(page, VICTIMS[0])
    await until_states(page, ["waiting"])  # queued and the form reset before the next one
    await fill(page, VICTIMS[1])
    await until_states(page, ["waiting", "waiting"])
    await page.close()
    await asyncio.sleep(1)
    assert await cases_filed_by(stack, token_id) == []  # nothing goes without signal
    await context.set_offline(False)

    # Chromium fires the page's sync when its network comes back (DevTools' offline, which
    # Playwright sets, counts for Background Sync too); no page of the console is open.
    for _ in range(200):
        if len(await cases_filed_by(stack, token_id)) == 2:
            break
        await asyncio.sleep(0.1)
    filed = await cases_filed_by(stack, token_id)
    assert len(filed) == 2
    other = await context.new_page()
    await other.goto(f"{console}/cases")  # outside the worker's scope: it sends nothing
    left = await other.evaluate(STORAGE)
    (queue,) = left["databases"].values()
    assert sorted(r["caseId"] for r in queue["reports"]) == filed
    for record in queue["reports"]:
        assert set(record) == {"id", "filedAt", "state", "caseId"}  # no sealed copy left
    assert not holds(left, VICTIMS[0])

    # The page, opened again, shows them accepted and sends nothing more.
    page = await context.new_page()
    await page.goto(f"{console}/cadre/")
    await until_states(page, ["accepted", "accepted"])
    await asyncio.sleep(0.5)
    assert await cases_filed_by(stack, token_id) == filed
    await context.close()


async def test_a_kept_page_opened_after_the_session_ended_shows_nothing_of_the_queue(
    stack: Stack, browser: Browser
) -> None:
    console = stack.services["console"].url
    _, secret = await cadre_token(stack, [f"Kraksaan/{DESA}"])
    context = await browser.new_context(viewport=PHONE)  # type: ignore[arg-type]
    await context.clock.install()  # the phone's clock, moved on below
    page = await sign_in(context, console, secret)
    assert await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    await context.set_offline(True)
    await fill(page, VICTIMS[0])
    await until_states(page, ["waiting"])

    await page.clock.fast_forward("13:00:00")  # past CONSOLE_SESSION_HOURS (12)
    assert await page.locator("#session-ended").is_visible()
    assert await page.locator("#cadre-form").is_hidden()
    assert await states(page) == []
    await page.reload()  # the service worker's copy, with no signal
    await page.wait_for_selector("#session-ended", state="visible")
    assert await page.locator("#queue-section").is_hidden()
    assert await states(page) == []
    assert VICTIMS[0] not in await page.content()
    await context.close()


async def test_another_cadre_signed_in_next_never_sends_the_first_cadres_queue(
    stack: Stack, browser: Browser
) -> None:
    console = stack.services["console"].url
    first_id, first = await cadre_token(stack, [f"Kraksaan/{DESA}"])
    second_id, second = await cadre_token(stack, ["Kraksaan"])
    context = await browser.new_context(viewport=PHONE)  # type: ignore[arg-type]
    page = await sign_in(context, console, first)
    assert await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    await context.route("**/cadre/reports", lambda route: route.abort())  # intake out of reach
    await fill(page, VICTIMS[0])
    await until_states(page, ["waiting"])
    await page.close()  # the first cadre leaves without signing out

    page = await sign_in(context, console, second)  # which ends the first's session
    await context.unroute("**/cadre/reports")
    assert await states(page) == []  # the second sees nothing of the first's queue
    devtools = await context.new_cdp_session(page)
    found: dict[str, str] = {}
    devtools.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda event: found.update(
            {r["scopeURL"]: r["registrationId"] for r in event["registrations"]}
        ),
    )
    await devtools.send("ServiceWorker.enable")
    for _ in range(50):
        if f"{console}/cadre/" in found:
            break
        await asyncio.sleep(0.1)
    # The first cadre's sync, as the browser would fire it once intake is reachable again.
    await devtools.send(
        "ServiceWorker.dispatchSyncEvent",
        {
            "origin": console,
            "registrationId": found[f"{console}/cadre/"],
            "tag": f"rujuk-cadre-send:{owner_of(first_id)}",
            "lastChance": False,
        },
    )
    for _ in range(30):
        kept = await page.evaluate(STORAGE)
        first_queue = kept["databases"].get(f"rujuk-cadre-{owner_of(first_id)}", {})
        if any(r.get("signin") for r in first_queue.get("reports", [])):
            break
        await asyncio.sleep(0.1)
    (waiting,) = first_queue["reports"]
    assert waiting["state"] == "waiting"
    assert waiting["signin"] is True  # refused by the console: not this cadre's queue
    assert await cases_filed_by(stack, second_id) == []
    assert await cases_filed_by(stack, first_id) == []
    await context.close()
