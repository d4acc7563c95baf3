"""Console sessions end on the server, in a real browser against the real stack: a cookie
captured before signing out opens nothing afterwards, and revoking a token (`rujuk token
revoke`) ends every console session signed in with it."""

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from console.session import SESSION_COOKIE
from rujuk.stack import Stack
from tests.browser.conftest import POLL_SECONDS, TOKEN_CACHE_SECONDS

pytestmark = pytest.mark.integration

RUJUK = Path(sys.executable).parent / "rujuk"
HOMES = {
    "operator": "/reports/new",
    "partner": "/inbox",
    "coordinator": "/coordinator",
    "auditor": "/audit",
}
CASE_ID = "3514-AB12CD34EF"
DETAILS_WARNING = f"/cases/{CASE_ID}/details"  # a partner's page that calls no service


async def rujuk_token(stack: Stack, *args: str) -> tuple[str, str]:
    """`rujuk token ...` against the stack's database: (stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        str(RUJUK),
        "token",
        *args,
        "--database-url",
        stack.database_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().strip(), err.decode()


async def create_token(stack: Stack, role: str, agency: str | None = None) -> tuple[str, str]:
    """(token_id, secret) of a token `rujuk token create` made, once routing knows it too."""
    binding = ["--agency", agency] if agency else ["--province"]
    secret, said = await rujuk_token(stack, "create", "--role", role, *binding)
    token_id = said.split("token_id:", 1)[1].split()[0]
    await until_routing_knows(stack, secret)
    return token_id, secret


async def until_routing_knows(stack: Stack, secret: str) -> None:
    """Routing learns of a token through the bus: it answers 200 or 403 (a role that may not
    list referrals), no longer 401."""
    routing = stack.services["routing"].url
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {secret}"}) as client:
        for _ in range(150):
            if (await client.get(f"{routing}/v1/referrals?limit=1")).status_code != 401:
                return
            await asyncio.sleep(0.1)
    pytest.fail("routing never learnt of the token")


async def signed_in(
    browser: Browser, console: str, secret: str, *, script: bool = True
) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(java_script_enabled=script)
    page = await context.new_page()
    await page.goto(f"{console}/signin")
    await page.fill("#token", secret)
    await page.click("main button[type=submit]")
    with contextlib.suppress(PlaywrightTimeoutError):  # the click does not wait for the page
        await page.locator("form.who").wait_for(timeout=15_000)
    assert await page.locator("form.who").count() == 1, "not signed in"
    return context, page


async def at_sign_in(page: Page) -> bool:
    return urlsplit(page.url).path == "/signin" and await page.locator("#token").count() == 1


async def ended_reasons(stack: Stack, token_id: str) -> list[str | None]:
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch(
            "SELECT ended_reason FROM console.sessions WHERE token_id = $1", token_id
        )
    finally:
        await conn.close()
    return [row["ended_reason"] for row in rows]


async def test_a_cookie_captured_before_signing_out_opens_no_page_afterwards(
    stack: Stack, browser: Browser, screenshots: Path
) -> None:
    console = stack.services["console"].url
    keys = stack.secrets()
    _, partner = await create_token(stack, "partner", "rsud-bangil")
    secrets = {
        "operator": keys["operator_token"],
        "partner": partner,
        "coordinator": keys["coordinator_token"],
        "auditor": keys["auditor_token"],
    }
    for role, secret in secrets.items():
        context, page = await signed_in(browser, console, secret)
        assert urlsplit(page.url).path == HOMES[role]
        captured = [c for c in await context.cookies() if c["name"] == SESSION_COOKIE]
        assert captured, "no session cookie after signing in"
        await page.click("form.who button[type=submit]")
        assert await at_sign_in(page)
        await context.close()

        replay = await browser.new_context()
        await replay.add_cookies(captured)  # type: ignore[arg-type]
        page = await replay.new_page()
        for path in (*HOMES.values(), DETAILS_WARNING, "/"):
            await page.goto(f"{console}{path}")
            assert await at_sign_in(page), f"{role}'s replayed cookie opened {path}"
        await page.screenshot(path=screenshots / f"replayed-{role}-cookie.png")
        await replay.close()


async def test_revoking_a_token_ends_every_console_session_signed_in_with_it(
    stack: Stack, browser: Browser, screenshots: Path
) -> None:
    console = stack.services["console"].url
    token_id, secret = await create_token(stack, "partner", "pkm-bangil")
    # One person's inbox, open and refreshing itself; and the same token in another browser,
    # without script, on a page that calls no service.
    _, inbox = await signed_in(browser, console, secret)
    assert urlsplit(inbox.url).path == "/inbox"
    _, elsewhere = await signed_in(browser, console, secret, script=False)
    await elsewhere.goto(f"{console}{DETAILS_WARNING}")
    assert not await at_sign_in(elsewhere)
    assert await ended_reasons(stack, token_id) == [None, None]

    await rujuk_token(stack, "revoke", token_id)

    # The inbox's next refresh is refused by routing: the page goes to sign-in by itself.
    await inbox.wait_for_url(
        lambda url: urlsplit(url).path == "/signin",
        timeout=(POLL_SECONDS + 2 * TOKEN_CACHE_SECONDS + 10) * 1000,
    )
    assert await at_sign_in(inbox)
    await inbox.screenshot(path=screenshots / "revoked-inbox.png")
    # Both sessions ended on the server at once, the other one too.
    assert await ended_reasons(stack, token_id) == ["token_revoked", "token_revoked"]
    await elsewhere.reload()
    assert await at_sign_in(elsewhere)
    assert "token tidak berlaku lagi" in await elsewhere.locator("main").inner_text()


async def test_a_page_that_calls_no_service_goes_to_sign_in_once_its_token_is_revoked(
    stack: Stack, browser: Browser
) -> None:
    """The bound docs/console.md gives: 2 x RUJUK_TOKEN_CACHE_SECONDS after the revocation
    (the console asks intake again after that long; intake may have remembered the token as
    long). The browser tests' stack has it at TOKEN_CACHE_SECONDS (tests/browser/conftest.py)."""
    console = stack.services["console"].url
    token_id, secret = await create_token(stack, "operator")
    _, page = await signed_in(browser, console, secret, script=False)
    assert urlsplit(page.url).path == "/reports/new"  # the form: no service is called
    await rujuk_token(stack, "revoke", token_id)
    revoked_at = time.monotonic()
    while not await at_sign_in(page):
        assert time.monotonic() - revoked_at < 2 * TOKEN_CACHE_SECONDS + 2, "still signed in"
        await asyncio.sleep(0.5)
        await page.reload()
    assert await ended_reasons(stack, token_id) == ["token_revoked"]
