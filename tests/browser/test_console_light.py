"""The console on a cheap phone, in Chromium against the real stack: static files come
compressed and are kept (a second page load fetches none of them); an inbox that does not
change answers 304 and is asked for less and less often, less still while its tab is hidden,
and what an open inbox costs an hour is measured; a partner's focus stays on its reply button
while the list changes, and the new referral is announced; the focus ring and tap targets;
axe-core finds nothing.

Bytes are what Chromium counts on the wire (DevTools' Network domain): a response's
``encodedDataLength`` (status line, headers and the body as sent, compressed) and the request
line and headers it sent. The polling schedule is watched with its seconds scaled down (the
page's data-poll attributes rewritten on the way in); the hour is worked out from the
console's real ones."""

import asyncio
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route

from rujuk.samples import SAMPLE_REPORTS
from rujuk.stack import Stack
from tests.browser.accessibility import axe_violations, page_problems
from tests.browser.conftest import POLL_SECONDS
from tests.browser.test_console_journey import PHONE, partner_token
from tests.browser.test_console_scope import file_and_route

pytestmark = pytest.mark.integration

# The browser stack's (tests/browser/conftest.py: CONSOLE_POLL_SECONDS), the defaults' others.
POLL_ATTRIBUTES = f'data-poll="{POLL_SECONDS}" data-poll-max="30" data-poll-hidden="120"'
SCALED = 'data-poll="0.25" data-poll-max="1" data-poll-hidden="4"'
HOUR_BUDGET_BYTES = 200_000
MIN_TAP_PX = 24


@dataclass
class Exchange:
    path: str
    started: float
    status: int = 0
    up: int = 0  # request line and headers
    down: int = 0  # status line, headers and body as received
    networked: bool = False  # False: served from the browser's cache
    headers: dict[str, str] = field(default_factory=dict)


class Traffic:
    """Every request of one page, as Chromium's Network domain reports it."""

    def __init__(self) -> None:
        self.exchanges: dict[str, Exchange] = {}

    async def attach(self, context: BrowserContext, page: Page) -> None:
        cdp = await context.new_cdp_session(page)
        await cdp.send("Network.enable")
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.requestWillBeSentExtraInfo", self._sent_on_the_wire)
        cdp.on("Network.responseReceived", self._received)
        cdp.on("Network.loadingFinished", self._finished)

    def _sent(self, event: dict[str, Any]) -> None:
        path = re.sub(r"^https?://[^/]+", "", event["request"]["url"])
        self.exchanges[event["requestId"]] = Exchange(path, time.monotonic())

    def _sent_on_the_wire(self, event: dict[str, Any]) -> None:
        exchange = self.exchanges.get(event["requestId"])
        if exchange is None:
            return
        exchange.networked = True
        headers = event.get("headers", {})
        line = len(f"GET {exchange.path} HTTP/1.1\r\n")
        exchange.up = line + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 2

    def _received(self, event: dict[str, Any]) -> None:
        exchange = self.exchanges.get(event["requestId"])
        if exchange is not None:
            exchange.status = int(event["response"]["status"])
            exchange.headers = {k.lower(): v for k, v in event["response"]["headers"].items()}

    def _finished(self, event: dict[str, Any]) -> None:
        exchange = self.exchanges.get(event["requestId"])
        if exchange is not None:
            exchange.down = int(event.get("encodedDataLength", 0))

    def mark(self) -> int:
        return len(self.exchanges)

    def since(self, mark: int, prefix: str = "") -> list[Exchange]:
        return [e for e in list(self.exchanges.values())[mark:] if e.path.startswith(prefix)]


async def scaled_polling(page: Page) -> None:
    """The inbox page as the console sends it, with its refresh seconds scaled down."""

    async def rewrite(route: Route) -> None:
        response = await route.fetch()
        body = await response.text()
        assert POLL_ATTRIBUTES in body, "the inbox's refresh attributes changed"
        await route.fulfill(response=response, body=body.replace(POLL_ATTRIBUTES, SCALED))

    await page.route(re.compile(r"/inbox(\?.*)?$"), rewrite)


async def set_hidden(page: Page, hidden: bool) -> None:
    await page.evaluate(
        """(hidden) => {
          Object.defineProperty(document, "hidden", {value: hidden, configurable: true});
          Object.defineProperty(document, "visibilityState",
            {value: hidden ? "hidden" : "visible", configurable: true});
          document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def polls_in_an_hour(first: float, most: float) -> int:
    """Refreshes of an unchanged list in an hour: after ``first`` seconds, each wait twice the
    last, up to ``most``."""
    clock, wait, polls = 0.0, first, 0
    while clock + wait <= 3600:
        clock += wait
        polls += 1
        wait = min(wait * 2, most)
    return polls


async def signed_in(browser: Browser, console: str, token: str) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport=PHONE)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(f"{console}/signin")
    await page.fill("#token", token)
    await page.click("main button[type=submit]")
    await page.wait_for_selector("form.who")
    return context, page


async def test_an_open_inbox_that_does_not_change_costs_under_200_kb_an_hour(
    stack: Stack, browser: Browser
) -> None:
    console = stack.services["console"].url
    token = await partner_token(stack, "lembaga-sepi-contoh")  # no referral comes to it
    context = await browser.new_context(viewport=PHONE)  # type: ignore[arg-type]
    page = await context.new_page()
    traffic = Traffic()
    await traffic.attach(context, page)
    await page.goto(f"{console}/signin")
    await page.fill("#token", token)
    await page.click("main button[type=submit]")
    await page.wait_for_selector("#inbox")

    # Static files came compressed and to be kept a year; the first load is small.
    static = traffic.since(0, "/static/")
    assert {re.sub(r"\.[0-9a-f]{12}\.", ".", e.path) for e in static} == {
        "/static/console.css",
        "/static/htmx-2.0.11.min.js",
        "/static/refresh.js",
        "/static/countdown.js",
    }
    for exchange in static:
        assert exchange.headers.get("content-encoding") == "gzip", exchange.path
        assert "immutable" in exchange.headers.get("cache-control", ""), exchange.path
    first_load = sum(e.down for e in traffic.since(0))
    assert first_load < 60_000, f"sign-in and inbox, first time: {first_load} bytes"

    # A second visit fetches no static file over the network.
    mark = traffic.mark()
    await page.goto(f"{console}/inbox")
    await page.wait_for_selector("#inbox")
    assert [e.path for e in traffic.since(mark, "/static/") if e.networked] == []
    again = sum(e.down for e in traffic.since(mark))

    # Unchanged, the list answers 304, and is asked for less and less often.
    await scaled_polling(page)
    await page.goto(f"{console}/inbox")
    await page.wait_for_selector("#inbox[data-poll='0.25']")
    mark = traffic.mark()
    await asyncio.sleep(4.2)
    polls = traffic.since(mark, "/inbox/items")
    assert len(polls) >= 4, [p.started for p in polls]
    assert {p.status for p in polls} == {304}
    waits = [round(b.started - a.started, 2) for a, b in itertools.pairwise(polls)]
    assert waits[0] == pytest.approx(0.5, abs=0.2), waits  # 0.25, then 0.5, 1, 1 ...
    assert waits[-1] == pytest.approx(1.0, abs=0.25), waits
    assert all(later >= earlier - 0.2 for earlier, later in itertools.pairwise(waits))

    # Hidden, it waits data-poll-hidden; shown again, it asks at once.
    await set_hidden(page, True)
    mark = traffic.mark()
    await asyncio.sleep(2.5)
    assert traffic.since(mark, "/inbox/items") == []
    await set_hidden(page, False)
    shown_at = time.monotonic()
    await page.wait_for_function("() => true")
    while not traffic.since(mark, "/inbox/items") and time.monotonic() - shown_at < 2:
        await asyncio.sleep(0.05)
    assert traffic.since(mark, "/inbox/items"), "no refresh on coming back to the tab"

    per_poll_down = max(p.down for p in polls)
    per_poll_up = max(p.up for p in polls)
    assert 0 < per_poll_down < 600
    visible = polls_in_an_hour(3, 30)
    hour = visible * (per_poll_down + per_poll_up)
    hidden_hour = polls_in_an_hour(120, 120) * (per_poll_down + per_poll_up)
    print(  # the figures, for docs/console.md
        f"\nfirst load {first_load} B, again {again} B; per 304 refresh {per_poll_down} B down "
        f"+ {per_poll_up} B up; {visible} refreshes an hour: {hour} B/h open, "
        f"{hidden_hour} B/h hidden (before: ~7 MB/h)"
    )
    assert hour < HOUR_BUDGET_BYTES
    await context.close()


def contrast(one: tuple[int, ...], other: tuple[int, ...]) -> float:
    def luminance(rgb: tuple[int, ...]) -> float:
        linear = [
            c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
            for c in (v / 255 for v in rgb[:3])
        ]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(one), luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", css)[:3])


async def too_small(page: Page, selector: str) -> list[str]:
    """Controls matching ``selector`` (those shown) less than 24 px in either direction."""
    small: list[str] = await page.eval_on_selector_all(
        selector,
        """(found, least) => found.filter(el => el.offsetParent !== null).map(el => {
             const box = el.getBoundingClientRect();
             return box.width < least || box.height < least
               ? `${el.outerHTML.slice(0, 80)}: ${box.width.toFixed(0)}x${box.height.toFixed(0)}`
               : null; }).filter(Boolean)""",
        MIN_TAP_PX,
    )
    return small


async def test_a_partners_focus_stays_on_its_button_while_the_inbox_changes(
    stack: Stack, browser: Browser
) -> None:
    console = stack.services["console"].url
    report = SAMPLE_REPORTS[1]
    _, agencies = await file_and_route(stack, report)
    agency = sorted(agencies)[0]
    context, page = await signed_in(browser, console, await partner_token(stack, agency))
    await scaled_polling(page)
    await page.goto(f"{console}/inbox")
    await page.wait_for_selector("#inbox[data-poll='0.25'] article[data-item]")
    before = await page.locator("#inbox article[data-item]").count()

    # By keyboard alone, to the first reply button.
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await page.evaluate("() => document.activeElement.matches('button[data-reply]')"):
            break
    else:
        pytest.fail("Tab never reached a reply button")
    focused = await page.evaluate("() => document.activeElement.id")
    assert focused
    ring = await page.evaluate(
        """() => { const s = getComputedStyle(document.activeElement);
                   return [s.outlineStyle, s.outlineWidth, s.outlineColor,
                           getComputedStyle(document.body).backgroundColor]; }"""
    )
    assert ring[0] == "solid", ring
    assert float(ring[1].removesuffix("px")) >= 2, ring
    assert contrast(rgb(ring[2]), rgb(ring[3])) >= 3, ring
    assert contrast(rgb(ring[2]), (255, 255, 255)) >= 3, ring

    # A new referral for the agency: the list is swapped, the focus stays, the news is said.
    await file_and_route(stack, report)
    await page.wait_for_function(
        f"() => document.querySelectorAll('#inbox article[data-item]').length > {before}",
        timeout=15_000,
    )
    # The news is written once the swapped list has settled (htmx:load, after the swap).
    await page.wait_for_function("() => document.getElementById('inbox-news').textContent")
    assert await page.evaluate("() => document.activeElement.id") == focused
    news = await page.locator("#inbox-news").inner_text()
    assert news == "1 rujukan baru masuk."
    assert await page.locator("#inbox-news").get_attribute("role") == "status"

    # Every control of the page is a finger wide, and axe finds nothing.
    controls = "header a, header button, .actions a, .actions summary, button, select, input"
    assert await too_small(page, controls) == []
    assert await page_problems(page) == []
    assert await axe_violations(page) == []
    countdown = await page.locator("#inbox .countdown").first.inner_text()
    assert re.fullmatch(r"(Terlambat )?\d+ (hr|j|mnt|dtk) \d\d (j|mnt|dtk)|\d+ dtk", countdown)
    await context.close()


async def test_the_report_forms_checkboxes_are_a_finger_wide(
    stack: Stack, browser: Browser
) -> None:
    console = stack.services["console"].url
    context, page = await signed_in(browser, console, stack.secrets()["operator_token"])
    await page.wait_for_selector("form.report")
    small = await too_small(page, "header a, header button, input[type=checkbox], button")
    assert small == []
    assert await axe_violations(page) == []
    await context.close()
