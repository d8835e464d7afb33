"""Why a lot may not move: holds that apps above ``batches`` register here.

``batches`` sits below ``orders``, ``coldchain`` and ``recalls`` and never imports them. Yet a
scan, a pick, an allocation or a receipt into saleable stock must be refused when a lot is under
recall (with the recall number) or held for a temperature excursion (with the excursion). So the
higher apps register a *hold check* here, in their ``AppConfig.ready()``, and every place that
moves or sells a lot asks ``lot_holds()``:

    from batches import hooks
    hooks.register_hold_check(open_recall_holds)   # recalls/apps.py
    hooks.register_hold_check(excursion_holds)     # coldchain/apps.py

A hold check takes ``(batch, location)`` (``location`` may be ``None``: "anywhere") and returns
a list of ``Hold``; it only reads. Registered here:
- ``recalls``: a lot in an open recall (code ``lot_recalled``, the recall number in the detail);
- ``coldchain``: stock held after a temperature excursion awaiting QA (code ``excursion_hold``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from partners.models import Location

    from .models import Batch


class Hold(NamedTuple):
    code: str  # machine-readable, the refusal code to answer with
    detail: str  # human text, naming the recall or excursion
    reference: str = ""  # the recall or excursion number, for links and reports


HoldCheck = Callable[["Batch", "Location | None"], list[Hold]]

_checks: list[HoldCheck] = []


def register_hold_check(check: HoldCheck) -> None:
    """Register a hold check once (registering the same function again does nothing)."""
    if check not in _checks:
        _checks.append(check)


def lot_holds(batch: Batch, location: Location | None = None) -> list[Hold]:
    """Every hold on ``batch`` (at ``location``, or anywhere when it is ``None``)."""
    holds: list[Hold] = []
    for check in _checks:
        holds.extend(check(batch, location))
    return holds
