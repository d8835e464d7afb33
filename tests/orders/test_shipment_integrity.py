"""A shipment's allocations belong to it alone, and only what shipped is read as shipped.

- Allocation runs on a confirmed or allocated order, never while a shipment is being picked;
  a second shipment is planned only once the first has left, and never over the first one's
  allocations.
- A line of which nothing was picked ships nothing: transaction information, the lot's
  previous owners, EPCIS, the shipment's events, sales and saleable-returns verification all
  read ``ShipmentLine.objects.shipped()`` and never list it.
- A shipment whose order was cancelled (its allocations released) is not picked.
"""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from audit.history import update_with_reason
from batches import services as stock
from batches.models import AllocationStatus, StockAllocation
from orders import analytics, services
from orders.epcis import shipment_epcis_document
from orders.models import OrderStatus, ShipmentLine, ShipmentStatus
from orders.selectors import lot_previous_owners, shipment_transaction_information
from pharmadms.exceptions import RuleViolation
from tests.factories import BatchFactory
from tests.orders.conftest import (
    allocated_units,
    confirmed_order,
    days,
    ledger_balanced,
    planned_shipment,
)


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


def pick(t, shipment, batch, quantity):
    return services.shipment_pick(
        shipment=shipment,
        batch=batch,
        quantity=quantity,
        location=t.net.manufacturer_storage,
        actor=t.seller_warehouse,
        reason="picked by scan",
    )


def new_stock(t, lot_number: str, quantity: int):
    lot = BatchFactory(product=t.vaccine, lot_number=lot_number, expires_on=days(800))
    stock.stock_receive(
        batch=lot,
        location=t.net.manufacturer_storage,
        quantity=quantity,
        actor=t.net.warehouse,
        reason="production output",
    )
    return lot


def refreshed(obj):
    obj.refresh_from_db()
    return obj


# --- 1. allocation and planning while a shipment is open ---------------------------------------


def test_allocating_again_while_a_shipment_is_picked_is_refused(shipping):
    """The reviewer's case: 150 ordered, 130 allocated, S1 planned; new stock arrives. Allocation
    waits for S1 to leave; then the backorder is allocated and S2 carries exactly it, and the
    order is shipped and delivered."""
    t = shipping
    order = confirmed_order(t, (t.vaccine, 150))
    services.order_allocate(order=order, actor=t.seller_desk, reason="allocate")
    first = plan(t, order)
    assert refreshed(order).status == OrderStatus.PICKING
    new_stock(t, "V800", 100)
    versions = order.history.count()

    with pytest.raises(RuleViolation) as refused:
        services.order_allocate(order=order, actor=t.seller_desk, reason="stock arrived")

    assert refused.value.code == "invalid_transition"
    assert refreshed(order).status == OrderStatus.PICKING
    assert order.history.count() == versions
    assert allocated_units() == 130

    dispatch(t, first)
    assert refreshed(order).status == OrderStatus.ALLOCATED  # 20 backordered
    services.order_allocate(order=order, actor=t.seller_desk, reason="stock arrived")
    second = plan(t, order)
    assert [(line.batch.lot_number, line.quantity) for line in second.lines.all()] == [("V800", 20)]
    assert not set(second.lines.values_list("allocation_id", flat=True)) & set(
        first.lines.values_list("allocation_id", flat=True)
    )
    dispatch(t, second)
    assert refreshed(order).status == OrderStatus.SHIPPED
    receive(t, first)
    receive(t, second)
    assert refreshed(order).status == OrderStatus.DELIVERED
    assert allocated_units() == 0
    assert ledger_balanced()


@pytest.mark.parametrize("first_status", [ShipmentStatus.PLANNED, ShipmentStatus.PICKED])
def test_no_second_shipment_while_one_is_planned_or_picked(shipping, first_status):
    """An order left ``allocated`` with its first shipment still open (as the old allocation
    left it) gets no second shipment over the same allocations."""
    t = shipping
    first = planned_shipment(t, (t.vaccine, 10))
    if first_status == ShipmentStatus.PICKED:
        pick(t, first, t.lot_200, 10)
        assert refreshed(first).status == ShipmentStatus.PICKED
    order = first.order
    update_with_reason(
        refreshed(order),
        actor=t.seller_desk,
        reason="test: the state the old allocation left",
        changes={"status": OrderStatus.ALLOCATED},
        editable={"status"},
    )
    shipments = order.shipments.count()

    with pytest.raises(RuleViolation) as refused:
        plan(t, order)

    assert refused.value.code == "shipment_in_progress"
    assert first.number in refused.value.detail
    assert order.shipments.count() == shipments
    update_with_reason(
        refreshed(order),
        actor=t.seller_desk,
        reason="test: back to picking",
        changes={"status": OrderStatus.PICKING},
        editable={"status"},
    )
    dispatch(t, first)  # the first shipment still leaves
    assert refreshed(order).status == OrderStatus.SHIPPED


# --- 2. a line of which nothing was picked shipped nothing -----------------------------------


@pytest.fixture
def short_picked(shipping):
    """50 ordered: V200 (40) and V400 (10) planned; 30 of V200 picked, nothing of V400, then
    dispatched: the V400 line keeps quantity 0."""
    t = shipping
    t.shipment = planned_shipment(t, (t.vaccine, 50))
    pick(t, t.shipment, t.lot_200, 30)
    dispatch(t, t.shipment)
    t.lines = {line.batch.lot_number: line for line in t.shipment.lines.select_related("batch")}
    assert (t.lines["V400"].quantity, t.lines["V200"].quantity) == (0, 30)
    return t


def test_shipped_lines_are_one_decision(short_picked):
    t = short_picked
    assert list(ShipmentLine.objects.filter(shipment=t.shipment).shipped()) == [t.lines["V200"]]
    assert list(t.shipment.lines.shipped()) == [t.lines["V200"]]
    # A planned shipment has shipped nothing yet.
    planned = planned_shipment(t, (t.insulin, 2))
    assert not planned.lines.shipped().exists()
    assert planned.lines.count() == 1


def test_transaction_information_lists_only_lots_that_shipped(short_picked):
    t = short_picked
    information = shipment_transaction_information(t.shipment)
    assert [(line["lot"], line["quantity"]) for line in information["lines"]] == [("V200", 30)]


def test_a_lot_that_never_shipped_has_no_previous_owner(short_picked):
    t = short_picked
    receive(t, t.shipment)
    later = timezone.now() + datetime.timedelta(days=1)
    assert lot_previous_owners(batch_id=t.lot_400.pk, owner=t.buyer, before=later) == []
    (owner,) = lot_previous_owners(batch_id=t.lot_200.pk, owner=t.buyer, before=later)
    assert (owner["shipment"], owner["quantity"]) == (t.shipment.number, 30)


def test_epcis_and_the_shipment_event_carry_only_shipped_lots(short_picked):
    t = short_picked
    (event,) = shipment_epcis_document(t.shipment)["epcisBody"]["eventList"]
    assert [entry["quantity"] for entry in event["quantityList"]] == [30]
    payload = services.shipment_payload(t.shipment)
    assert [(line["lot"], line["quantity"]) for line in payload["lines"]] == [("V200", 30)]


def test_sales_count_only_shipped_lines(short_picked):
    t = short_picked
    assert analytics.shipped_lines(seller_id=t.seller.pk).count() == 1
    (row,) = analytics.sales_summary(group_by="product", seller_id=t.seller.pk)
    assert row["quantity"] == 30


def test_a_line_that_shipped_nothing_is_not_returned(short_picked):
    """Saleable-returns verification: the V400 line is no shipment of V400 to the customer."""
    t = short_picked
    receive(t, t.shipment)
    with pytest.raises(RuleViolation) as refused:
        services.return_request_create(
            shipment=t.shipment,
            lines=[
                {"shipment_line": t.lines["V400"].pk, "quantity": 1, "reason_code": "overstock"}
            ],
            actor=t.buyer_user,
            reason="send back",
            temperature_evidence="logger LG-1",
        )
    assert refused.value.code == "not_shipped_to_customer"


# --- 6. a shipment whose allocations were released is not picked ----------------------------


def test_a_cancelled_orders_shipment_is_not_picked(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 10))
    services.order_cancel(order=shipment.order, actor=t.seller_desk, reason="customer withdrew")
    assert set(
        StockAllocation.objects.filter(pk__in=shipment.lines.values("allocation_id")).values_list(
            "status", flat=True
        )
    ) == {AllocationStatus.RELEASED}
    versions = ShipmentLine.history.count()

    with pytest.raises(RuleViolation) as refused:
        pick(t, shipment, t.lot_200, 5)

    assert refused.value.code == "shipment_not_allocated"
    assert ShipmentLine.history.count() == versions
    assert refreshed(shipment).status == ShipmentStatus.PLANNED
