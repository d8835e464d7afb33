"""Shipment services: planning, dispatch and receipt, with the ledger checked at every step."""

from __future__ import annotations

import datetime

import pytest

from audit import chain
from audit.history import save_with_reason
from batches.models import AllocationStatus, BatchStatus, MoveKind, StockAllocation, StockMove
from orders import services
from orders.models import Discrepancy, Order, OrderStatus, Shipment, ShipmentLine, ShipmentStatus
from orders.signals import business_event
from pharmadms.exceptions import ApplicationError, NotPermitted, RuleViolation
from tests.factories import AgreementPriceFactory, ProductFactory
from tests.orders.conftest import (
    allocated_order,
    allocated_units,
    ledger_balanced,
    on_hand,
    planned_shipment,
)


def counts() -> tuple[int, ...]:
    return (
        Shipment.objects.count(),
        ShipmentLine.objects.count(),
        Shipment.history.count(),
        StockMove.objects.count(),
        allocated_units(),
        Order.history.count(),
    )


def dispatch(t, shipment, **kwargs):
    return services.shipment_dispatch(
        shipment=shipment, actor=t.seller_warehouse, reason="truck 7", **kwargs
    )


def receive(t, shipment, entries, actor=None):
    return services.shipment_receive(
        shipment=shipment, lines=entries, actor=actor or t.buyer_warehouse, reason="goods in"
    )


def full_receipt(shipment) -> list[dict]:
    return [
        {"line": line.pk, "received_quantity": line.quantity, "damaged_quantity": 0}
        for line in shipment.lines.order_by("id")
    ]


@pytest.fixture
def events():
    heard: list[tuple[str, dict, list[int]]] = []

    def receiver(sender, event, payload, partner_ids, **kwargs):
        heard.append((event, payload, partner_ids))

    business_event.connect(receiver, dispatch_uid="test-shipment-events")
    yield heard
    business_event.disconnect(dispatch_uid="test-shipment-events")


def test_a_shipment_is_planned_from_the_orders_allocations(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50), (t.insulin, 4))
    assert shipment.number.startswith(f"SH-{t.today.year}-")
    assert shipment.status == ShipmentStatus.PLANNED
    assert (shipment.from_site, shipment.to_site) == (
        t.net.manufacturer_site,
        t.net.wholesaler_site,
    )
    lines = [(line.batch.lot_number, line.quantity) for line in shipment.lines.order_by("id")]
    # FEFO: 40 of the lot expiring first, then 10 of the next; insulin from its only lot.
    assert sorted(lines) == [("I1", 4), ("V200", 40), ("V400", 10)]
    assert Order.objects.get(pk=shipment.order_id).status == OrderStatus.PICKING
    assert all(line.allocation.status == AllocationStatus.ACTIVE for line in shipment.lines.all())
    with pytest.raises(RuleViolation) as refused:
        services.shipment_create_from_order(
            order=shipment.order, actor=t.seller_desk, reason="again"
        )
    assert refused.value.code == "invalid_transition"


def test_dispatch_then_receipt_moves_stock_through_transit_and_balances(
    shipping, events, django_capture_on_commit_callbacks
):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    storage, buyer_storage = t.net.manufacturer_storage, t.net.wholesaler_storage
    assert (on_hand(t.lot_200, storage), on_hand(t.lot_400, storage)) == (40, 60)
    assert allocated_units() == 50

    with django_capture_on_commit_callbacks(execute=True):
        shipment = dispatch(t, shipment)
    assert shipment.status == ShipmentStatus.DISPATCHED
    assert shipment.dispatched_at is not None
    assert shipment.in_transit_location == t.in_transit
    assert (on_hand(t.lot_200, storage), on_hand(t.lot_400, storage)) == (0, 50)
    assert (on_hand(t.lot_200, t.in_transit), on_hand(t.lot_400, t.in_transit)) == (40, 10)
    assert allocated_units() == 0
    assert set(
        StockAllocation.objects.filter(pk__in=shipment.lines.values("allocation")).values_list(
            "status", flat=True
        )
    ) == {AllocationStatus.CONSUMED}
    moves = StockMove.objects.filter(reference=f"shipment:{shipment.number}")
    assert {(m.kind, m.quantity) for m in moves} == {
        (MoveKind.SHIPMENT, 40),
        (MoveKind.SHIPMENT, 10),
    }
    assert Order.objects.get(pk=shipment.order_id).status == OrderStatus.SHIPPED
    assert ledger_balanced()

    with django_capture_on_commit_callbacks(execute=True):
        shipment = receive(t, shipment, full_receipt(shipment))
    assert shipment.status == ShipmentStatus.RECEIVED
    assert (on_hand(t.lot_200, t.in_transit), on_hand(t.lot_400, t.in_transit)) == (0, 0)
    assert (on_hand(t.lot_200, buyer_storage), on_hand(t.lot_400, buyer_storage)) == (40, 10)
    assert {line.discrepancy for line in shipment.lines.all()} == {Discrepancy.NONE}
    assert Order.objects.get(pk=shipment.order_id).status == OrderStatus.DELIVERED
    assert ledger_balanced()
    assert chain.verify().ok

    names = [event for event, _, _ in events]
    assert names[-2:] == ["shipment.dispatched", "shipment.received"]
    _, payload, partners = events[-1]
    assert payload["number"] == shipment.number
    assert payload["buyer_gln"] == t.buyer.gln
    assert sorted(partners) == sorted([t.buyer.pk, t.seller.pk])
    assert {line["lot"] for line in payload["lines"]} == {"V200", "V400"}


def test_order_services_announce_their_events(shipping, events, django_capture_on_commit_callbacks):
    t = shipping
    with django_capture_on_commit_callbacks(execute=True):
        order = allocated_order(t, (t.vaccine, 5))
        services.order_cancel(order=order, actor=t.seller_desk, reason="customer withdrew")
    assert [event for event, _, _ in events] == [
        "order.submitted",
        "order.confirmed",
        "order.allocated",
        "order.cancelled",
    ]
    payload = events[0][1]
    assert payload["number"] == order.number
    assert payload["seller_gln"] == t.seller.gln
    assert payload["lines"][0]["quantity"] == 5
    assert events[-1][1]["status"] == "cancelled"


def test_short_and_damaged_units_are_recorded_as_their_own_moves(shipping):
    t = shipping
    shipment = dispatch(t, planned_shipment(t, (t.vaccine, 50)))
    line_200, line_400 = shipment.lines.order_by("batch__expires_on")
    receive(
        t,
        shipment,
        [
            {"line": line_200.pk, "received_quantity": 35, "damaged_quantity": 0},
            {"line": line_400.pk, "received_quantity": 6, "damaged_quantity": 4},
        ],
    )
    line_200.refresh_from_db()
    line_400.refresh_from_db()
    assert (line_200.discrepancy, line_200.short_quantity) == (Discrepancy.SHORT, 5)
    assert (line_400.discrepancy, line_400.damaged_quantity) == (Discrepancy.DAMAGED, 4)
    assert on_hand(t.lot_200, t.net.wholesaler_storage) == 35
    assert on_hand(t.lot_400, t.net.wholesaler_storage) == 6
    assert on_hand(t.lot_400, t.net.wholesaler_quarantine) == 4
    assert on_hand(t.lot_200, t.in_transit) == on_hand(t.lot_400, t.in_transit) == 0
    short = StockMove.objects.get(kind=MoveKind.ADJUSTMENT, batch=t.lot_200)
    assert (short.quantity, short.to_location, short.from_location) == (5, None, t.in_transit)
    assert short.reason.startswith("short delivery: 5 of 40 units of lot V200")
    damaged = StockMove.objects.get(to_location=t.net.wholesaler_quarantine)
    assert damaged.reason.startswith("damaged in transit: 4 units")
    assert ledger_balanced()
    assert chain.verify().ok


def test_a_lot_recalled_in_transit_is_held_in_quarantine_on_receipt(shipping):
    t = shipping
    shipment = dispatch(t, planned_shipment(t, (t.insulin, 3)))
    t.lot_insulin.status = BatchStatus.RECALLED
    save_with_reason(t.lot_insulin, actor=t.net.qa, reason="recall", update_fields=["status"])
    receive(t, shipment, full_receipt(shipment))
    assert on_hand(t.lot_insulin, t.net.wholesaler_storage) == 0
    assert on_hand(t.lot_insulin, t.net.wholesaler_quarantine) == 3


# --- refusals: nothing written ---------------------------------------------------------------


def refused(call, code: str, exception=ApplicationError) -> None:
    before = counts()
    with pytest.raises(exception) as error:
        call()
    assert error.value.code == code, error.value.detail
    assert counts() == before
    assert ledger_balanced()


def test_an_order_without_allocations_cannot_be_shipped(shipping):
    t = shipping
    unstocked = ProductFactory(manufacturer=t.seller, name="Unstocked")
    AgreementPriceFactory(agreement=t.agreement, product=unstocked)
    order = allocated_order(t, (unstocked, 5))  # nothing of it in stock: all backordered
    refused(
        lambda: services.shipment_create_from_order(order=order, actor=t.seller_desk, reason="x"),
        "nothing_allocated",
    )


def test_a_shipment_whose_allocations_were_released_is_not_dispatched(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 20))
    services.order_cancel(order=shipment.order, actor=t.seller_desk, reason="customer withdrew")
    refused(lambda: dispatch(t, shipment), "shipment_not_allocated")


def test_a_shipment_is_dispatched_once(shipping):
    t = shipping
    shipment = dispatch(t, planned_shipment(t, (t.vaccine, 20)))
    refused(lambda: dispatch(t, shipment), "already_dispatched")


def test_dispatch_is_refused_when_the_buyers_licence_lapsed(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 20))
    lapsed_on = t.licence.valid_until + datetime.timedelta(days=1)
    refused(lambda: dispatch(t, shipment, on=lapsed_on), "no_valid_licence")
    assert on_hand(t.lot_200, t.net.manufacturer_storage) == 40


def test_dispatch_needs_an_in_transit_location(trade):
    t = trade
    t.seller_warehouse = t.net.warehouse
    shipment = planned_shipment(t, (t.vaccine, 20))
    refused(lambda: dispatch(t, shipment), "no_in_transit_location")


def test_receiving_twice_is_refused(shipping):
    t = shipping
    shipment = dispatch(t, planned_shipment(t, (t.vaccine, 20)))
    receive(t, shipment, full_receipt(shipment))
    refused(lambda: receive(t, shipment, full_receipt(shipment)), "already_received")


def test_a_planned_shipment_is_not_received(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 20))
    refused(lambda: receive(t, shipment, full_receipt(shipment)), "not_dispatched")


@pytest.mark.parametrize(
    ("entry", "code"),
    [
        ({"received_quantity": 21}, "over_delivery"),
        ({"received_quantity": 15, "damaged_quantity": 6}, "over_delivery"),
        ({"received_quantity": -1}, "invalid_quantity"),
        ({"received_quantity": 5, "damaged_quantity": "x"}, "invalid_quantity"),
        ({"received_quantity": 5, "line": 999_999}, "unknown_line"),
    ],
)
def test_bad_receipts_are_refused_and_nothing_moves(shipping, entry, code):
    t = shipping
    shipment = dispatch(t, planned_shipment(t, (t.vaccine, 20)))
    line = shipment.lines.get()
    refused(lambda: receive(t, shipment, [{"line": line.pk, **entry}]), code)
    assert on_hand(t.lot_200, t.in_transit) == 20


def test_every_line_is_received_at_once(shipping):
    t = shipping
    shipment = dispatch(t, planned_shipment(t, (t.vaccine, 50)))
    first = shipment.lines.order_by("id").first()
    refused(
        lambda: receive(t, shipment, [{"line": first.pk, "received_quantity": first.quantity}]),
        "lines_missing",
    )


@pytest.mark.parametrize(
    ("who", "code"),
    [
        ("buyer_user", "role_not_permitted"),  # a partner user does not plan shipments
        ("buyer_desk", "not_a_party"),  # the buyer's order desk: wrong side
        ("qa", "role_not_permitted"),
    ],
)
def test_who_plans_a_shipment(shipping, who, code):
    t = shipping
    actor = t.net.qa if who == "qa" else getattr(t, who)
    order = allocated_order(t, (t.vaccine, 20))
    refused(
        lambda: services.shipment_create_from_order(order=order, actor=actor, reason="x"),
        code,
        NotPermitted,
    )


def test_who_dispatches_and_who_receives(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 20))
    for actor, code in [(t.seller_desk, "role_not_permitted"), (t.buyer_warehouse, "not_a_party")]:
        refused(
            lambda actor=actor: services.shipment_dispatch(
                shipment=shipment, actor=actor, reason="x"
            ),
            code,
            NotPermitted,
        )
    shipment = dispatch(t, shipment)
    for actor, code in [(t.seller_warehouse, "not_a_party"), (t.buyer_desk, "role_not_permitted")]:
        refused(
            lambda actor=actor: receive(t, shipment, full_receipt(shipment), actor=actor),
            code,
            NotPermitted,
        )
    receive(t, shipment, full_receipt(shipment), actor=t.buyer_user)  # a partner user may
