"""How `make test` hands the suite to its pytest-xdist workers (``--dist loadfile``).

A unit of work is a test file, so that module fixtures stay whole, except the browser
package, whose files are one unit: they share one package-scoped stack
(tests/browser/conftest.py), which a worker would otherwise tear down and start again each
time another file came between two of them. Units go out heaviest first (longest processing
time first), so that no worker is left with a long test at the end while the other idles:
each worker sorts its collection by ``SECONDS``, and ``--no-loadscope-reorder`` has xdist hand
the units out in that order (by default it puts the files with the most tests first).

``--dist loadgroup`` with an ``xdist_group`` mark on every item would group them too, but
under pytest 9.2 its marks are silently ignored (pytest-dev/pytest-xdist#1386).
"""

import pytest
from xdist.scheduler import LoadFileScheduling

BROWSER_PACKAGE = "tests/browser"

# Seconds each unit of more than ~20 s took in `make test` on two cores, roughly (from when each
# worker made the units' temporary folders, run of 5 Dec 2026). Only the order depends on them:
# a stale figure costs time, never a result. Units not named here follow in the order collected.
SECONDS = {
    BROWSER_PACKAGE: 180,  # its stack started once (it was five times, ~20 s each)
    "tests/integration/test_faults.py": 95,
    "tests/integration/test_http_bad_input.py": 75,
    "tests/integration/test_supervisor.py": 65,
    "tests/integration/test_nats_cluster.py": 44,
    "tests/integration/test_observability.py": 35,
    "tests/integration/test_backup_restore.py": 33,
    "tests/integration/test_bad_input_bus.py": 28,
    "tests/integration/test_rujuk_up.py": 27,
    "tests/integration/test_service_lifecycle.py": 25,
    "tests/integration/test_end_to_end.py": 23,
    "tests/integration/test_nats_authorization.py": 22,
    "tests/integration/test_oncall_faults.py": 20,
}


def unit_of(nodeid: str) -> str:
    """The unit a test belongs to: its file, or the browser package."""
    path = nodeid.split("::", 1)[0]
    return BROWSER_PACKAGE if path.startswith(f"{BROWSER_PACKAGE}/") else path


def heaviest_first(items: list[pytest.Item]) -> None:
    """Sort the collection by its units' weight; stable, so that each unit's tests keep
    their order and stay together."""
    items.sort(key=lambda item: -SECONDS.get(unit_of(item.nodeid), 0))


class UnitScheduling(LoadFileScheduling):
    """``--dist loadfile``, with the browser package as one unit."""

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)
