"""Lot holds (batches.hooks) at receipt and at return restock, and the business events of
returns (return.requested / authorised / received / disposed)."""

from __future__ import annotations

import pytest

from batches import hooks
from batches.models import MoveKind, StockMove
from orders import services
from orders.signals import EVENTS, business_event
from tests.orders.conftest import ledger_balanced, on_hand, planned_shipment
from tests.orders.test_returns import (
    ask,
    authorise,
    build_returning,
    dispose,
    receive,
    refused,
)


@pytest.fixture
def returning(shipping):
    return build_returning(shipping)


@pytest.fixture
def hold_on():
    """Put a hold on a lot for one test: ``hold_on(lot, code, detail, reference)``."""
    checks = []

    def put(lot, code, detail, reference, *, where=None):
        def check(batch, location):
            if batch.pk != lot.pk:
                return []
            if where is not None and location is not None and location.pk != where.pk:
                return []
            return [hooks.Hold(code, detail, reference)]

        hooks.register_hold_check(check)
        checks.append(check)

    yield put
    for check in checks:
        hooks._checks.remove(check)


@pytest.fixture
def events():
    heard: list[tuple[str, dict, list[int]]] = []

    def receiver(sender, event, payload, partner_ids, **kwargs):
        heard.append((event, payload, partner_ids))

    business_event.connect(receiver, dispatch_uid="test-return-events")
    yield heard
    business_event.disconnect(dispatch_uid="test-return-events")


def full_receipt(shipment) -> list[dict]:
    return [
        {"line": line.pk, "received_quantity": line.quantity, "damaged_quantity": 0}
        for line in shipment.lines.order_by("id")
    ]


def test_held_units_go_to_the_buyers_quarantine_with_the_holds_reason(shipping, hold_on):
    """An excursion hold on lot V200 at North's storage: its sound units are received into
    North's quarantine, the move naming the excursion; the other lot goes to storage."""
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    services.shipment_dispatch(shipment=shipment, actor=t.seller_warehouse, reason="truck")
    hold_on(
        t.lot_200,
        "excursion_hold",
        "lot V200 held after excursion EX-2026-0007 on shipment " + shipment.number,
        "EX-2026-0007",
        where=t.net.wholesaler_storage,
    )

    services.shipment_receive(
        shipment=shipment,
        lines=full_receipt(shipment),
        actor=t.buyer_warehouse,
        reason="goods in",
    )

    assert on_hand(t.lot_200, t.net.wholesaler_quarantine) == 40
    assert on_hand(t.lot_200, t.net.wholesaler_storage) == 0
    assert on_hand(t.lot_400, t.net.wholesaler_storage) == 10
    move = StockMove.objects.get(
        batch=t.lot_200, kind=MoveKind.DELIVERY, reference=f"shipment:{shipment.number}"
    )
    assert "excursion_hold" in move.reason
    assert "EX-2026-0007" in move.reason
    assert ledger_balanced()


def test_a_held_lot_is_not_restocked_from_a_return(returning, hold_on):
    t = returning
    ret = receive(t, authorise(t, ask(t, ("T1", 5, "overstock"))))
    hold_on(t.lot_tab, "lot_recalled", "lot T1 is under recall RC-2026-0001", "RC-2026-0001")

    error = refused(
        "lot_recalled", dispose, t, ret, {line.pk: "restock" for line in ret.lines.all()}
    )

    assert "RC-2026-0001" in error.detail
    # Destroying it is still allowed.
    dispose(t, ret, {line.pk: "destroy" for line in ret.lines.all()})


def test_every_return_step_is_announced_to_both_parties_after_commit(
    returning, events, django_capture_on_commit_callbacks
):
    t = returning
    assert {
        "return.requested",
        "return.authorised",
        "return.received",
        "return.disposed",
    } <= set(EVENTS)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ret = ask(t, ("T1", 5, "overstock"))
    assert callbacks  # sent on commit, not before
    with django_capture_on_commit_callbacks(execute=True):
        authorise(t, ret, rma_number="RMA-77")
        receive(t, ret)
        dispose(t, ret, {line.pk: "restock" for line in ret.lines.all()})

    heard = [(event, payload) for event, payload, _ in events if event.startswith("return.")]
    assert [event for event, _ in heard] == [
        "return.requested",
        "return.authorised",
        "return.received",
        "return.disposed",
    ]
    requested, authorised, received, disposed = (payload for _, payload in heard)
    assert requested["number"] == ret.number
    assert requested["status"] == "requested"
    assert authorised["rma_number"] == "RMA-77"
    assert received["status"] == "received"
    assert disposed["status"] == "disposed"
    assert disposed["lines"] == [
        {
            "id": ret.lines.get().pk,
            "shipment_line": t.line["T1"].pk,
            "gtin": t.tablets.gtin,
            "lot": "T1",
            "quantity": 5,
            "reason_code": "overstock",
            "disposition": "restock",
        }
    ]
    for _, _, partner_ids in events:
        assert partner_ids == sorted([t.buyer.pk, t.seller.pk])


def test_a_refused_return_step_announces_nothing(
    returning, events, django_capture_on_commit_callbacks
):
    t = returning
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        refused("quantity_exceeds_shipped", ask, t, ("T1", 500, "overstock"))
    assert not callbacks
    assert not [event for event, _, _ in events if event.startswith("return.")]
