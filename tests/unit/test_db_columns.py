"""Rows turned into one array per column, for statements that unnest them."""

import pytest

from rujuk_runtime.db import columns


def test_rows_become_columns_in_order_and_no_rows_empty_columns() -> None:
    assert columns([("a", 1), ("b", 2), ("c", 3)], 2) == [["a", "b", "c"], [1, 2, 3]]
    assert columns([], 3) == [[], [], []]


def test_a_row_of_another_width_is_refused() -> None:
    with pytest.raises(ValueError, match="a row of 1 values where 2 columns are expected"):
        columns([("a", 1), ("b",)], 2)
