"""Browser tests drive Debian's Chromium (/usr/bin/chromium) through Playwright; nothing
downloads a browser. Without it they are skipped, and the run's summary says plainly that
they did not run (a skip is never a pass). Tests here that speak to the console over plain
HTTP (no ``browser`` fixture) run either way, on the same package-scoped stack."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from rujuk.stack import Stack
from rujuk_runtime.nats_auth import NatsKeyring
from tests.conftest import fresh_database, remove_streams

CHROMIUM = Path("/usr/bin/chromium")
NOT_RUN = f"browser tests did not run: no {CHROMIUM} (apt-get install chromium)"
SCREENSHOTS = pytest.StashKey[list[Path]]()
# The stack's RUJUK_TOKEN_CACHE_SECONDS and CONSOLE_POLL_SECONDS, shorter than their defaults
# (5 s, 3 s) so that the waits for a revocation or a refresh are short; the bounds the tests
# check are reckoned from these, as docs/console.md reckons them from the settings.
TOKEN_CACHE_SECONDS = 2
POLL_SECONDS = 1


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SCREENSHOTS] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    for item in items:
        in_here = Path(str(item.fspath)).parent == Path(__file__).parent
        if in_here and "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=NOT_RUN))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    ran_here = [
        report
        for outcome in ("passed", "failed", "skipped", "error")
        for report in terminalreporter.stats.get(outcome, [])
        if getattr(report, "nodeid", "").startswith("tests/browser/")
    ]
    if not ran_here:
        return
    if not CHROMIUM.exists():
        terminalreporter.write_line(NOT_RUN, red=True, bold=True)
    for folder in terminalreporter.config.stash.get(SCREENSHOTS, []):
        terminalreporter.write_line(f"browser screenshots: {folder}")


@pytest.fixture
def screenshots(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A folder under the test's tmp_path for its screenshots, named in the run's summary."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    request.config.stash[SCREENSHOTS].append(folder)
    return folder


@pytest.fixture(scope="package")
async def stack(
    nats_url: str,
    nats_keyring: NatsKeyring | None,
    server_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    """The whole stack as `rujuk up` runs it (on the session's servers, in a fresh database),
    shared by the browser tests."""
    await remove_streams(nats_url)
    async with fresh_database(server_database_url) as database_url:
        running = Stack(
            tmp_path_factory.mktemp("console-stack"),
            external_nats_url=nats_url,
            nats_keyring=nats_keyring,
            external_database_url=database_url,
            extra_env={
                "RUJUK_TOKEN_CACHE_SECONDS": str(TOKEN_CACHE_SECONDS),
                "CONSOLE_POLL_SECONDS": str(POLL_SECONDS),
                # The auditor's case page proves the case against a signed checkpoint: one a
                # second (not 60 s) puts the journey's last hand-offs under one in time.
                "AUDIT_CHECKPOINT_INTERVAL_SECONDS": "1",
            },
        )
        try:  # a start that fails half-way still stops what it started
            await asyncio.to_thread(running.start)
            yield running
        finally:
            await asyncio.to_thread(running.stop)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        yield launched
        await launched.close()
