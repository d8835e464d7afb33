"""Whole numbers as the services take them: an ``int`` (never a ``bool``, a float or a numeric
string) within its bounds, else a refusal naming what was wrong (``invalid_quantity``)."""

from __future__ import annotations

from typing import Any

from .exceptions import InvalidInput


def whole_number(value: Any, what: str, *, least: int = 0, most: int | None = None) -> int:
    """``value`` if it is a whole number from ``least`` to ``most`` (no upper bound if None)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < least
        or (most is not None and value > most)
    ):
        if most is not None:
            bounds = f" from {least:,} to {most:,}"
        elif least == 0:
            bounds = ", zero or more"
        else:
            bounds = f" of at least {least:,}"
        raise InvalidInput(f"{what} is a whole number{bounds}", code="invalid_quantity")
    return value
