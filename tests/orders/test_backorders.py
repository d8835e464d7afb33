"""Backorders shipped later: one order, several shipments; the order is shipped and delivered
only when nothing of it remains open."""

from __future__ import annotations

import pytest

from batches import services as stock
from orders import services
from orders.models import OrderStatus, ShipmentStatus
from pharmadms.exceptions import RuleViolation
from tests.factories import BatchFactory
from tests.orders.conftest import (
    allocated_units,
    confirmed_order,
    days,
    ledger_balanced,
    receive_whole,
)
from tests.orders.test_shipments_api import client_for


def quantities(order) -> list[tuple[int, int, int, int]]:
    """(ordered, allocated, shipped, backordered) of each line."""
    return [
        (line.quantity, line.quantity_allocated, line.quantity_shipped, line.quantity_backordered)
        for line in order.lines.order_by("id")
    ]


def plan(t, order):
    return services.shipment_create_from_order(order=order, actor=t.seller_desk, reason="plan")


def dispatch(t, shipment):
    return services.shipment_dispatch(shipment=shipment, actor=t.seller_warehouse, reason="truck")


def receive(t, shipment):
    return receive_whole(t, shipment)


def refresh(order):
    order.refresh_from_db()
    return order


def test_a_backorder_is_allocated_again_and_shipped_on_a_second_shipment(shipping):
    """150 ordered, 130 in stock: the first shipment carries 130 and leaves 20 backordered;
    new stock arrives, the order is allocated again, a second shipment carries the 20; the
    order is shipped only after the second dispatch and delivered after both receipts."""
    t = shipping
    order = confirmed_order(t, (t.vaccine, 150))
    services.order_allocate(order=order, actor=t.seller_desk, reason="allocate")
    assert quantities(refresh(order)) == [(150, 130, 0, 20)]

    first = plan(t, order)
    dispatch(t, first)
    assert refresh(order).status == OrderStatus.ALLOCATED  # 20 still to ship
    assert quantities(order) == [(150, 130, 130, 20)]
    receive(t, first)
    assert refresh(order).status == OrderStatus.ALLOCATED  # not delivered: 20 still open

    # Nothing new to allocate yet: the backorder stays, nothing is planned.
    services.order_allocate(order=order, actor=t.seller_desk, reason="try again")
    assert quantities(refresh(order)) == [(150, 130, 130, 20)]
    with pytest.raises(RuleViolation) as refused:
        plan(t, order)
    assert refused.value.code == "nothing_allocated"

    fresh = BatchFactory(product=t.vaccine, lot_number="V800", expires_on=days(800))
    stock.stock_receive(
        batch=fresh,
        location=t.net.manufacturer_storage,
        quantity=100,
        actor=t.net.warehouse,
        reason="production output",
    )
    services.order_allocate(order=order, actor=t.seller_desk, reason="stock arrived")
    assert quantities(refresh(order)) == [(150, 150, 130, 0)]
    assert allocated_units() == 20

    second = plan(t, order)
    assert [(line.batch.lot_number, line.quantity) for line in second.lines.all()] == [("V800", 20)]
    assert refresh(order).status == OrderStatus.PICKING
    dispatch(t, second)
    assert refresh(order).status == OrderStatus.SHIPPED
    assert quantities(order) == [(150, 150, 150, 0)]
    receive(t, second)
    assert refresh(order).status == OrderStatus.DELIVERED
    assert set(order.shipments.values_list("status", flat=True)) == {ShipmentStatus.RECEIVED}
    assert allocated_units() == 0
    assert ledger_balanced()


def test_the_order_waits_for_every_shipment_before_it_is_delivered(shipping):
    """The second shipment is dispatched before the first is checked in: the order is shipped,
    and delivered only when the last of its shipments is received."""
    t = shipping
    order = confirmed_order(t, (t.vaccine, 150))
    services.order_allocate(order=order, actor=t.seller_desk, reason="allocate")
    first = plan(t, order)
    dispatch(t, first)
    fresh = BatchFactory(product=t.vaccine, lot_number="V800", expires_on=days(800))
    stock.stock_receive(
        batch=fresh,
        location=t.net.manufacturer_storage,
        quantity=20,
        actor=t.net.warehouse,
        reason="production output",
    )
    services.order_allocate(order=order, actor=t.seller_desk, reason="stock arrived")
    second = plan(t, order)
    dispatch(t, second)
    assert refresh(order).status == OrderStatus.SHIPPED

    receive(t, second)
    assert refresh(order).status == OrderStatus.SHIPPED  # the first is still on the road
    receive(t, first)
    assert refresh(order).status == OrderStatus.DELIVERED


def test_a_partly_shipped_order_is_not_cancelled(shipping):
    t = shipping
    order = confirmed_order(t, (t.vaccine, 150))
    services.order_allocate(order=order, actor=t.seller_desk, reason="allocate")
    dispatch(t, plan(t, order))
    with pytest.raises(RuleViolation) as refused:
        services.order_cancel(order=order, actor=t.seller_desk, reason="give up")
    assert refused.value.code == "partly_shipped"


def test_the_api_shows_ordered_allocated_shipped_and_backordered(shipping):
    t = shipping
    order = confirmed_order(t, (t.vaccine, 150))
    services.order_allocate(order=order, actor=t.seller_desk, reason="allocate")
    dispatch(t, plan(t, order))

    body = client_for(t.buyer_user).get(f"/api/v1/orders/{order.pk}/").json()

    assert body["status"] == OrderStatus.ALLOCATED
    assert body["has_backorders"] is True
    (line,) = body["lines"]
    assert (
        line["quantity"],
        line["quantity_allocated"],
        line["quantity_shipped"],
        line["quantity_backordered"],
    ) == (150, 130, 130, 20)
