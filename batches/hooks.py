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

**Gates.** Almost every lot asked about is held by nothing, yet each check costs a query of its
own (joins, DISTINCT, ordering, the texts of its holds). A check may therefore be registered
with a *gate*: ``gate(batch_id, location)`` returns a queryset that has a row whenever the check
could find a hold — a cheap superset of the check (same tables, no ordering, no DISTINCT, no
reading of the lot's other columns). ``lot_holds`` reads every gate in one statement and runs only
the checks whose gate found a row; a check registered without a gate always runs. ``batch_id``
is the lot's id or an expression standing for it (``OuterRef("pk")``), so a caller that reads
the lot anyway can read the gates in the same query (:func:`hold_gates`) and hand their values to
``lot_holds(..., gates=...)`` — the scan does. For example::

    hooks.register_hold_check(
        recall_holds,
        gate=lambda batch_id, location: RecallLot.objects.filter(
            batch_id=batch_id, recall__is_drill=False
        ),
    )

A gate must never be narrower than its check: where it finds no row, the check is not asked.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from django.db.models import Exists, OuterRef

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from partners.models import Location

    from .models import Batch


class Hold(NamedTuple):
    code: str  # machine-readable, the refusal code to answer with
    detail: str  # human text, naming the recall or excursion
    reference: str = ""  # the recall or excursion number, for links and reports


HoldCheck = Callable[["Batch", "Location | None"], list[Hold]]
# (the lot's id or an expression for it, location or None) -> rows whenever the check may hold
HoldGate = Callable[[Any, "Location | None"], "QuerySet"]

_checks: list[HoldCheck] = []
_gates: dict[HoldCheck, tuple[str, HoldGate]] = {}  # check -> (annotation name, gate)
_gate_numbers = itertools.count()


def register_hold_check(check: HoldCheck, *, gate: HoldGate | None = None) -> None:
    """Register a hold check once (registering the same function again does nothing, except
    give it the ``gate`` passed this time: see the module doc)."""
    if check not in _checks:
        _checks.append(check)
    if gate is not None:
        name = _gates[check][0] if check in _gates else f"hold_gate_{next(_gate_numbers)}"
        _gates[check] = (name, gate)


def hold_gates(batch_id: Any, location: Location | None = None) -> dict[str, Exists]:
    """The gates of the registered checks as ``Exists`` expressions, by annotation name, for a
    query of one's own that reads the lot (``batch_id``: ``OuterRef`` to its id). Pass the
    values read to ``lot_holds(batch, location, gates=...)``. Empty when no check has a gate."""
    gated = [_gates[check] for check in _checks if check in _gates]
    return {name: Exists(gate(batch_id, location)) for name, gate in gated}


def lot_holds(
    batch: Batch, location: Location | None = None, *, gates: Mapping[str, Any] | None = None
) -> list[Hold]:
    """Every hold on ``batch`` (at ``location``, or anywhere when it is ``None``).

    ``gates``: the values of :func:`hold_gates` read with the lot for this same location; when
    omitted the gates are read here (one statement for all of them). A gated check whose gate
    found no row is not asked; one whose gate value is missing is asked.
    """
    checks = list(_checks)
    if gates is None:
        gates = _read_gates(batch, location)
    holds: list[Hold] = []
    for check in checks:
        gated = _gates.get(check)
        if gated is not None and not gates.get(gated[0], True):
            continue  # its gate found nothing: the check would find nothing
        holds.extend(check(batch, location))
    return holds


def _read_gates(batch: Batch, location: Location | None) -> dict[str, Any]:
    annotations = hold_gates(OuterRef("pk"), location)
    if not annotations or batch.pk is None:
        return {}
    from .models import Batch  # noqa: PLC0415  (hooks is imported while the apps load)

    rows = Batch.objects.filter(pk=batch.pk).annotate(**annotations).order_by()
    return next(iter(rows.values(*annotations)), {})
