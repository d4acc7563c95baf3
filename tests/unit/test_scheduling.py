"""How `make test` hands the suite to its workers (tests/scheduling.py)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tests.scheduling import BROWSER_PACKAGE, SECONDS, heaviest_first, unit_of

ROOT = Path(__file__).parents[2]


@dataclass
class Item:
    nodeid: str


def test_every_unit_weighed_is_in_the_suite() -> None:
    assert [unit for unit in SECONDS if not (ROOT / unit).exists()] == []


def test_the_browser_packages_files_are_one_unit_and_any_other_file_its_own() -> None:
    assert unit_of("tests/browser/test_console_light.py::test_x") == BROWSER_PACKAGE
    assert unit_of("tests/browser/test_console_scope.py::test_y[a::b]") == BROWSER_PACKAGE
    assert unit_of("tests/integration/test_faults.py::test_z") == "tests/integration/test_faults.py"
    assert unit_of("tests/unit/test_browser.py::test_w") == "tests/unit/test_browser.py"


def test_the_heaviest_units_come_first_each_whole_and_in_its_own_order() -> None:
    collected = [
        Item("tests/browser/test_console_cadre.py::test_1"),
        Item("tests/browser/test_console_light.py::test_2"),
        Item("tests/integration/test_audit_ledger.py::test_3"),
        Item("tests/integration/test_audit_ledger.py::test_4"),
        Item("tests/integration/test_faults.py::test_5"),
        Item("tests/integration/test_supervisor.py::test_6"),
        Item("tests/integration/test_supervisor.py::test_7"),
        Item("tests/unit/test_contracts.py::test_8"),
    ]
    items = list(collected)
    heaviest_first(cast(list[Any], items))
    assert [item.nodeid.rpartition("_")[2] for item in items] == [
        "1", "2",  # the browser package
        "5",  # faults
        "6", "7",  # supervisor
        "3", "4", "8",  # unweighed: as collected
    ]  # fmt: skip
