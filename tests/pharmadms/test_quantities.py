"""pharmadms.quantities.whole_number: the one rule every service applies to a quantity."""

from __future__ import annotations

import pytest

from pharmadms.exceptions import InvalidInput
from pharmadms.quantities import whole_number


@pytest.mark.parametrize(
    ("value", "bounds", "taken"),
    [
        (0, {}, 0),
        (7, {"least": 1}, 7),
        (1, {"least": 1, "most": 5}, 1),
        (5, {"least": 1, "most": 5}, 5),
        (10**12, {}, 10**12),
    ],
)
def test_a_whole_number_within_its_bounds_is_taken(value, bounds, taken):
    assert whole_number(value, "quantity", **bounds) == taken


@pytest.mark.parametrize(
    ("value", "bounds", "detail"),
    [
        (-1, {}, "units is a whole number, zero or more"),
        (0, {"least": 1}, "units is a whole number of at least 1"),
        (6, {"least": 1, "most": 5}, "units is a whole number from 1 to 5"),
        (1_000_001, {"most": 1_000_000}, "units is a whole number from 0 to 1,000,000"),
        (True, {}, "units is a whole number, zero or more"),  # a bool is no number of units
        (2.0, {}, "units is a whole number, zero or more"),
        ("3", {}, "units is a whole number, zero or more"),
        (None, {}, "units is a whole number, zero or more"),
    ],
)
def test_anything_else_is_refused_naming_what(value, bounds, detail):
    with pytest.raises(InvalidInput) as refused:
        whole_number(value, "units", **bounds)
    assert refused.value.code == "invalid_quantity"
    assert refused.value.detail == detail
