"""Cancelling what an order still waits for: a partly shipped order whose backorder will never
fill is closed out as its shipments dictate (shipped, or delivered once every shipment is in)."""

from __future__ import annotations

import pytest

from batches import services as stock
from batches.models import AllocationStatus, StockAllocation
from orders import services
from orders.models import OrderStatus, ShipmentLine
from orders.signals import EVENTS, business_event
from pharmadms.exceptions import NotPermitted, RuleViolation
from tests.factories import BatchFactory
from tests.orders.conftest import allocated_units, confirmed_order, days, ledger_balanced
from tests.orders.test_shipments_api import assert_refused, client_for


def plan(t, order):
    return services.shipment_create_from_order(order=order, actor=t.seller_desk, reason="plan")


def dispatch(t, shipment):
    return services.shipment_dispatch(shipment=shipment, actor=t.seller_warehouse, reason="truck")


def receive(t, shipment):
    return services.shipment_receive(
        shipment=shipment,
        lines=[
            {"line": line.pk, "received_quantity": line.quantity, "damaged_quantity": 0}
            for line in ShipmentLine.objects.filter(shipment=shipment).shipped()
        ],
        actor=t.buyer_warehouse,
        reason="goods in",
    )


def cancel_backorder(t, order, actor=None):
    return services.order_cancel_backorder(
        order=order, actor=actor or t.seller_desk, reason="the manufacturer discontinued it"
    )


def quantities(order) -> list[tuple[int, int, int, int]]:
    """(ordered, allocated, shipped, backordered) of each line."""
    return [
        (line.quantity, line.quantity_allocated, line.quantity_shipped, line.quantity_backordered)
        for line in order.lines.order_by("id")
    ]


def refreshed(obj):
    obj.refresh_from_db()
    return obj


@pytest.fixture
def events():
    heard: list[tuple[str, dict, list[int]]] = []

    def receiver(sender, event, payload, partner_ids, **kwargs):
        heard.append((event, payload, partner_ids))

    business_event.connect(receiver, dispatch_uid="test-backorder-events")
    yield heard
    business_event.disconnect(dispatch_uid="test-backorder-events")


@pytest.fixture
def partly_shipped(shipping):
    """150 vaccines ordered, 130 in stock: the first shipment carries 130, 20 stay backordered."""
    t = shipping
    t.order = confirmed_order(t, (t.vaccine, 150))
    services.order_allocate(order=t.order, actor=t.seller_desk, reason="allocate")
    t.first = plan(t, t.order)
    dispatch(t, t.first)
    assert refreshed(t.order).status == OrderStatus.ALLOCATED
    assert quantities(t.order) == [(150, 130, 130, 20)]
    return t


def test_the_backorder_is_cancelled_and_the_order_is_shipped_then_delivered(
    partly_shipped, events, django_capture_on_commit_callbacks
):
    t = partly_shipped
    with django_capture_on_commit_callbacks(execute=True):
        cancel_backorder(t, t.order)

    order = refreshed(t.order)
    assert order.status == OrderStatus.SHIPPED  # the first shipment is still on the road
    assert quantities(order) == [(150, 130, 130, 0)]
    assert order.has_backorders is False
    line = order.lines.get()
    assert line.quantity_open == 0
    assert line.history.first().history_change_reason == "the manufacturer discontinued it"
    assert order.history.first().history_change_reason == "the manufacturer discontinued it"
    assert "order.backorder_cancelled" in EVENTS
    ((event, payload, partner_ids),) = events
    assert event == "order.backorder_cancelled"
    assert payload["status"] == OrderStatus.SHIPPED
    assert payload["lines"][0]["quantity_backordered"] == 0
    assert partner_ids == sorted([t.buyer.pk, t.seller.pk])

    receive(t, t.first)
    assert refreshed(order).status == OrderStatus.DELIVERED
    assert ledger_balanced()


def test_after_every_shipment_is_received_the_order_is_delivered(partly_shipped):
    t = partly_shipped
    receive(t, t.first)
    assert refreshed(t.order).status == OrderStatus.ALLOCATED

    cancel_backorder(t, t.order)

    assert refreshed(t.order).status == OrderStatus.DELIVERED


def test_allocations_not_on_a_shipment_are_released(partly_shipped):
    """10 of the 20 arrive and are allocated; the rest never will: the 10 go back to available
    stock, nothing remains open, the order is shipped."""
    t = partly_shipped
    fresh = BatchFactory(product=t.vaccine, lot_number="V800", expires_on=days(800))
    stock.stock_receive(
        batch=fresh,
        location=t.net.manufacturer_storage,
        quantity=10,
        actor=t.net.warehouse,
        reason="production output",
    )
    services.order_allocate(order=t.order, actor=t.seller_desk, reason="stock arrived")
    assert quantities(refreshed(t.order)) == [(150, 140, 130, 10)]
    assert allocated_units() == 10
    (held,) = StockAllocation.objects.filter(batch=fresh)

    cancel_backorder(t, t.order)

    assert quantities(refreshed(t.order)) == [(150, 130, 130, 0)]
    assert t.order.status == OrderStatus.SHIPPED
    assert allocated_units() == 0
    held.refresh_from_db()
    assert held.status == AllocationStatus.RELEASED
    with pytest.raises(RuleViolation) as refused:
        plan(t, t.order)
    assert refused.value.code == "invalid_transition"
    assert ledger_balanced()


def test_during_picking_the_planned_shipment_still_ships_and_closes_the_order(shipping):
    """Cancelled while the first shipment is being picked: its allocations stay with it, and
    its dispatch leaves nothing open, so the order is shipped."""
    t = shipping
    order = confirmed_order(t, (t.vaccine, 150))
    services.order_allocate(order=order, actor=t.seller_desk, reason="allocate")
    first = plan(t, order)

    cancel_backorder(t, order)

    assert refreshed(order).status == OrderStatus.PICKING
    assert quantities(order) == [(150, 130, 0, 0)]
    assert allocated_units() == 130  # the planned shipment's allocations are kept
    dispatch(t, first)
    assert refreshed(order).status == OrderStatus.SHIPPED
    receive(t, first)
    assert refreshed(order).status == OrderStatus.DELIVERED


def test_refusals_write_nothing(partly_shipped):
    t = partly_shipped
    versions = (t.order.history.count(), refreshed(t.order).lines.get().history.count())
    with pytest.raises(NotPermitted):
        cancel_backorder(t, t.order, actor=t.buyer_user)  # the seller decides what it ships
    with pytest.raises(NotPermitted):
        cancel_backorder(t, t.order, actor=t.net.other_user)
    assert (t.order.history.count(), t.order.lines.get().history.count()) == versions

    cancel_backorder(t, t.order)
    with pytest.raises(RuleViolation) as refused:
        cancel_backorder(t, t.order)
    assert refused.value.code == "invalid_transition"  # shipped: nothing left to cancel

    never_shipped = confirmed_order(t, (t.insulin, 20))
    services.order_allocate(order=never_shipped, actor=t.seller_desk, reason="allocate")
    with pytest.raises(RuleViolation) as refused:
        cancel_backorder(t, never_shipped)
    assert refused.value.code == "nothing_shipped"  # cancel the order instead
    confirmed = confirmed_order(t, (t.vaccine, 1))
    with pytest.raises(RuleViolation) as refused:
        cancel_backorder(t, confirmed)
    assert refused.value.code == "invalid_transition"


def test_cancel_backorder_over_the_api(partly_shipped):
    t = partly_shipped
    url = f"/api/v1/orders/{t.order.pk}/cancel-backorder/"
    assert_refused(client_for(t.seller_desk).post(url, {}, format="json"), 400, "reason_required")
    assert client_for(t.net.other_user).post(url, {"reason": "x"}, format="json").status_code == 404
    assert client_for(t.net.regulator).post(url, {"reason": "x"}, format="json").status_code == 403

    response = client_for(t.seller_desk).post(url, {"reason": "discontinued"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == OrderStatus.SHIPPED
    assert body["has_backorders"] is False
    assert body["lines"][0]["quantity_backordered"] == 0
