"""Browser tests drive Debian's Chromium (/usr/bin/chromium) through Playwright; nothing
downloads a browser. Without it they are skipped, and the run's summary says plainly that
they did not run (a skip is never a pass)."""

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
NOT_RUN = f"browser tests did not run: no {CHROMIUM} (apt-get install chromium)"
SCREENSHOTS = pytest.StashKey[list[Path]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SCREENSHOTS] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
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
