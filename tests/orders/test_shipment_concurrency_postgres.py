"""Shipments and returns racing on PostgreSQL: two dispatches of one shipment (one wins, the
other is refused, the ledger moves once) and two returns for the last returnable units of one
shipment line (one accepted, the other refused).

Each thread has its own connection (Django's are per thread) and closes it at the end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection

from audit import chain
from batches.models import MoveKind, StockMove
from orders import services
from orders.models import Order, OrderStatus, ReturnRequest, Shipment, ShipmentStatus
from pharmadms.exceptions import RuleViolation
from tests.orders.conftest import ledger_balanced, on_hand, planned_shipment
from tests.orders.test_returns import build_returning

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: set DATABASE_URL=postgres://...",
    ),
]

JOIN_TIMEOUT_SECONDS = 60


def race(calls: list[Callable[[], object]]) -> tuple[list[object], list[BaseException]]:
    """Run every call at the same instant, each in its own thread and connection."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = []
    errors: list[BaseException] = []

    def worker(call) -> None:
        try:
            barrier.wait(timeout=30)
            results.append(call())
        except BaseException as error:  # every outcome is recorded, and judged by the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (lock wait?)"
    return results, errors


def test_two_dispatches_of_one_shipment_one_wins_the_other_is_refused(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50), (t.insulin, 4))

    def dispatch(who: str):
        return lambda: services.shipment_dispatch(
            shipment=Shipment.objects.get(pk=shipment.pk),
            actor=t.seller_warehouse,
            reason=f"truck of {who}",
        )

    results, errors = race([dispatch("first"), dispatch("second")])

    assert len(results) == 1, errors
    assert len(errors) == 1
    (error,) = errors
    assert isinstance(error, RuleViolation)
    assert error.status_code == 409
    assert error.code == "already_dispatched"
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.DISPATCHED
    assert Order.objects.get(pk=shipment.order_id).status == OrderStatus.SHIPPED
    moves = StockMove.objects.filter(reference=f"shipment:{shipment.number}")
    assert moves.count() == 3  # one per line, once
    assert all(move.kind == MoveKind.SHIPMENT for move in moves)
    assert on_hand(t.lot_200, t.in_transit) == 40
    assert on_hand(t.lot_insulin, t.in_transit) == 4
    assert ledger_balanced()
    assert chain.verify().ok


def test_two_returns_racing_for_the_last_returnable_units_one_is_accepted(shipping):
    """North received 20 tablets of lot T1; two return requests of all 20 race: one is
    accepted, the other refused as exceeding what was shipped."""
    t = build_returning(shipping)
    line = t.line["T1"]

    def ask(who: str):
        return lambda: services.return_request_create(
            shipment=Shipment.objects.get(pk=t.shipment.pk),
            lines=[{"shipment_line": line.pk, "quantity": 20, "reason_code": "overstock"}],
            actor=t.buyer_user,
            reason=f"return by {who}",
        )

    results, errors = race([ask("first"), ask("second")])

    assert len(results) == 1, errors
    (error,) = errors
    assert isinstance(error, RuleViolation)
    assert error.code == "quantity_exceeds_shipped"
    assert ReturnRequest.objects.count() == 1
    assert services.returned_quantities([line.pk]) == {line.pk: 20}
    assert chain.verify().ok
