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
own (joins, DISTINCT, ordering, the texts of its holds) and, in Python, the ORM's work of
building it. A check may therefore be registered with a *gate*: ``gate(batch_id)`` returns a
queryset that has a row whenever the check could find a hold on the lot anywhere — a cheap
superset of the check (same tables, no ordering, no DISTINCT, no texts). ``lot_holds`` reads
every gate in one statement (``SELECT EXISTS (…), EXISTS (…)``) and asks only the checks whose
gate found a row; a check registered without a gate is always asked. For example::

    hooks.register_hold_check(
        recall_holds,
        gate=lambda batch_id: RecallLot.objects.filter(batch_id=batch_id, recall__is_drill=False),
    )

A gate must never be narrower than its check: where it finds no row, the check is not asked.
Gates are on the path of every scan, so each is built once per connection and then only run
(pharmadms.prepared): a gate's query has the same shape for every lot, and compares
``batch_id`` as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from pharmadms.prepared import OneRow, PreparedQuery

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from partners.models import Location

    from .models import Batch


class Hold(NamedTuple):
    code: str  # machine-readable, the refusal code to answer with
    detail: str  # human text, naming the recall or excursion
    reference: str = ""  # the recall or excursion number, for links and reports


HoldCheck = Callable[["Batch", "Location | None"], list[Hold]]
# the lot's id -> a queryset with a row whenever the check may hold the lot
HoldGate = Callable[[int], "QuerySet"]

_checks: list[HoldCheck] = []
_gates: dict[HoldCheck, HoldGate] = {}
_prepared: dict[HoldGate, PreparedQuery] = {}


def register_hold_check(check: HoldCheck, *, gate: HoldGate | None = None) -> None:
    """Register a hold check once (registering the same function again does nothing, except
    give it the ``gate`` passed this time: see the module doc)."""
    if check not in _checks:
        _checks.append(check)
    if gate is not None:
        _gates[check] = gate


def lot_holds(
    batch: Batch,
    location: Location | None = None,
    *,
    gates_read: Mapping[HoldCheck, bool] | None = None,
) -> list[Hold]:
    """Every hold on ``batch`` (at ``location``, or anywhere when it is ``None``): the gates
    are read first, all in one statement, and a gated check whose gate found no row is not
    asked. ``gates_read``: what the gates found, read by the caller in a statement of its own
    (see :func:`prepared_gates`); a gate missing from it counts as open."""
    checks = list(_checks)
    gated = [check for check in checks if check in _gates]
    if gates_read is None:
        closed = _closed_gates(batch, gated)
    else:
        closed = {check for check in gated if not gates_read.get(check, True)}
    holds: list[Hold] = []
    for check in checks:
        if check not in closed:  # a closed gate: the check would find nothing
            holds.extend(check(batch, location))
    return holds


def _closed_gates(batch: Batch, gated: list[HoldCheck]) -> set[HoldCheck]:
    """The gated checks whose gate finds no row for ``batch`` here."""
    if not gated or batch.pk is None:
        return set()
    read = OneRow()
    for check in gated:
        read.exists(_prepared_gate(_gates[check]), batch_id=batch.pk)
    _, found = read.run()
    return {check for check, open_ in zip(gated, found, strict=True) if not open_}


def prepared_gates() -> list[tuple[HoldCheck, PreparedQuery]]:
    """Each gated check with its gate prepared (value ``batch_id``), for a caller that reads
    the gates with its own statement (pharmadms.prepared.OneRow) and hands what they found to
    :func:`lot_holds` as ``gates_read``."""
    return [(check, _prepared_gate(_gates[check])) for check in _checks if check in _gates]


def _prepared_gate(gate: HoldGate) -> PreparedQuery:
    prepared = _prepared.get(gate)
    if prepared is None:
        # A gate that can find nothing (``.none()``) reads as WHERE 0 = 1 (elide_empty=False).
        prepared = _prepared[gate] = PreparedQuery(
            lambda batch_id: gate(batch_id).order_by().values("pk"), batch_id=int
        )
    return prepared
