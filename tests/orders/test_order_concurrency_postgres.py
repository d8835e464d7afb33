"""Orders racing for the last units on PostgreSQL: one allocates, the others backorder.

SQLite serialises writers on the whole file, so only PostgreSQL's row locks are put to the test
here. Each thread has its own connection (Django's are per thread) and closes it at the end.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.db.models import Sum

from audit import chain
from batches import services as stock
from batches.models import AllocationStatus, StockAllocation, StockBalance
from orders import services
from orders.models import Order, OrderLine, OrderStatus
from tests.factories import BatchFactory
from tests.orders.conftest import days, place_order

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: set DATABASE_URL=postgres://...",
    ),
]

JOIN_TIMEOUT_SECONDS = 60


def confirmed(t, *lines) -> Order:
    order = place_order(t, *lines)
    services.order_submit(order=order, actor=t.buyer_user, reason="send")
    services.order_confirm(order=order, actor=t.seller_desk, reason="accepted")
    return order


def race(orders: list[Order], actor) -> dict[int, BaseException]:
    """Allocate every order at the same instant, each in its own thread and connection."""
    barrier = threading.Barrier(len(orders))
    errors: dict[int, BaseException] = {}

    def worker(order: Order) -> None:
        try:
            barrier.wait(timeout=30)
            services.order_allocate(order=order, actor=actor, reason=f"allocate {order.number}")
        except BaseException as error:  # every outcome is recorded, and judged by the test
            errors[order.pk] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(order,)) for order in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (lock wait?)"
    return errors


def usable_vaccine_units(t) -> int:
    return sum(
        StockBalance.objects.filter(
            batch__in=[t.lot_200, t.lot_400, t.lot_600], location=t.net.manufacturer_storage
        ).values_list("on_hand", flat=True)
    )


def test_two_orders_racing_for_the_last_units_one_allocates_one_backorders(trade):
    """Both ask for all 130 usable units: one gets them, the other is backordered whole; the
    balances never allocate more than they hold."""
    first = confirmed(trade, (trade.vaccine, 130))
    second = confirmed(trade, (trade.vaccine, 130))

    errors = race([first, second], trade.seller_desk)

    assert errors == {}
    lines = sorted(
        OrderLine.objects.filter(order__in=[first, second]).values_list(
            "quantity_allocated", "quantity_backordered"
        )
    )
    assert lines == [(0, 130), (130, 0)]
    assert set(
        Order.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True)
    ) == {OrderStatus.ALLOCATED}
    for row in StockBalance.objects.all():
        assert 0 <= row.allocated <= row.on_hand
    active = StockAllocation.objects.filter(status=AllocationStatus.ACTIVE)
    assert active.aggregate(total=Sum("quantity"))["total"] == usable_vaccine_units(trade) == 130
    assert chain.verify().ok


def test_multi_line_orders_locking_in_opposite_line_order_never_deadlock(trade):
    """Six orders of two products, half listing insulin first: every balance is locked before
    the first sealed write, so no transaction waits for a balance while holding the chain head."""
    more_insulin = BatchFactory(product=trade.insulin, lot_number="I2", expires_on=days(500))
    stock.stock_receive(
        batch=more_insulin,
        location=trade.net.manufacturer_storage,
        quantity=20,
        actor=trade.net.warehouse,
        reason="production output",
    )
    orders = []
    for i in range(6):
        lines = [(trade.vaccine, 30), (trade.insulin, 7)]
        orders.append(confirmed(trade, *(lines if i % 2 else reversed(lines))))

    errors = race(orders, trade.seller_desk)

    assert {pk: repr(error) for pk, error in errors.items()} == {}
    totals = (
        OrderLine.objects.filter(order__in=orders)
        .values("product")
        .annotate(allocated=Sum("quantity_allocated"), backordered=Sum("quantity_backordered"))
    )
    by_product = {row["product"]: (row["allocated"], row["backordered"]) for row in totals}
    assert by_product[trade.vaccine.pk] == (130, 6 * 30 - 130)
    assert by_product[trade.insulin.pk] == (30, 6 * 7 - 30)
    for row in StockBalance.objects.all():
        assert 0 <= row.allocated <= row.on_hand
    assert chain.verify().ok
