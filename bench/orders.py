"""Order throughput: orders taken from draft to dispatch per second through the services.

    .venv/bin/python bench/orders.py [--orders N] [--rounds R] [--warmup W] [--profile]

Runs on whatever DATABASE_URL names (SQLite when unset), in a throw-away database created for
the run and dropped after it, like bench/ledger.py.

One order is what the API does for it, each step its own transaction: ``order_create`` (a draft
with one or two lines, alternately), ``order_submit`` (licence, agreement, territory and price
checks, prices copied), ``order_confirm``, ``order_allocate`` (FEFO over three lots of each
product), ``shipment_create_from_order`` and ``shipment_dispatch`` (the order rules again, one
stock move per shipment line into the in-transit location, allocations consumed).

The floor is the same number of committed transactions (six per order) each holding one plain
single-row INSERT, through the same connection. An order's steps are six transactions because
the API makes them six requests, and on a durable database the commit (and, on PostgreSQL, the
round trips) is the cost no implementation can avoid; everything above the floor is the work
the services do (checks, row locks, history rows and their seals, the ledger). A floor of stock
moves through ``stock_post_move`` would price the ledger again, which bench/ledger.py does.

Business events are not delivered while timing: the integrations receiver is disconnected, as in
production the webhook and e-mail work runs in Celery workers, not in the request. The two sides
alternate in slices of 20 orders; the medians of the rounds give the rates and the ratio.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections import defaultdict
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone
from throwaway import throwaway_database  # sets Django up before any model is imported

from audit.chain import verify
from batches import services as stock
from batches.models import AllocationStatus, StockAllocation
from integrations import receivers
from orders import services
from orders.models import Order, OrderStatus
from orders.signals import business_event
from partners.models import LocationKind, Role
from tests.conftest import build_network
from tests.factories import (
    AgreementFactory,
    AgreementPriceFactory,
    BatchFactory,
    LicenceFactory,
    LocationFactory,
    ProductFactory,
    UserFactory,
)

SLICE = 20  # orders per alternating slice of a round
STEPS = ("create", "submit", "confirm", "allocate", "ship-create", "dispatch")
LOT_UNITS = 1_000_000
RECEIVER_UID = "integrations.on_business_event"


class Trade:
    """Acme Pharma sells to North Wholesale: the users, products and stock an order needs."""


def seed() -> Trade:
    t = Trade()
    net = build_network()
    t.net = net
    t.seller, t.buyer = net.manufacturer, net.wholesaler
    t.ship_to = net.wholesaler_site
    LocationFactory(site=net.manufacturer_site, code="TRANSIT", kind=LocationKind.IN_TRANSIT)
    LicenceFactory(partner=t.buyer)
    t.buyer_user = UserFactory(username="north-buyer", partner=t.buyer, role=Role.PARTNER_USER)
    t.desk = UserFactory(username="acme-desk", partner=t.seller, role=Role.ORDER_DESK)
    t.warehouse = net.warehouse
    agreement = AgreementFactory(
        supplier=t.seller, customer=t.buyer, territory=["DE"], min_remaining_shelf_life_days=90
    )
    today = timezone.localdate()
    t.products = []
    for n in range(2):
        product = ProductFactory(manufacturer=t.seller, name=f"Bench product {n}")
        AgreementPriceFactory(agreement=agreement, product=product, unit_price=Decimal("9.5000"))
        for days in (200, 400, 600):  # three lots, so FEFO has a choice to make
            lot = BatchFactory(
                product=product,
                lot_number=f"B{n}-{days}",
                expires_on=today + timezone.timedelta(days=days),
            )
            stock.stock_receive(
                batch=lot,
                location=net.manufacturer_storage,
                quantity=LOT_UNITS,
                actor=t.warehouse,
                reason="bench opening stock",
            )
        t.products.append(product)
    return t


def one_order(t: Trade, i: int, spent: dict[str, float] | None = None) -> None:
    """Take order ``i`` from draft to dispatch, each step its own transaction."""
    lines = [{"product": t.products[0], "quantity": 1 + i % 3}]
    if i % 2:
        lines.append({"product": t.products[1], "quantity": 2})
    clock = time.perf_counter
    marks = [clock()]
    order = services.order_create(
        buyer=t.buyer,
        seller=t.seller,
        ship_to=t.ship_to,
        lines=lines,
        actor=t.buyer_user,
        reason="bench order",
    )
    marks.append(clock())
    order = services.order_submit(order=order, actor=t.buyer_user, reason="bench submit")
    marks.append(clock())
    order = services.order_confirm(order=order, actor=t.desk, reason="bench confirm")
    marks.append(clock())
    order = services.order_allocate(order=order, actor=t.desk, reason="bench allocate")
    marks.append(clock())
    shipment = services.shipment_create_from_order(
        order=order, actor=t.warehouse, reason="bench pick", carrier="Bench Freight"
    )
    marks.append(clock())
    services.shipment_dispatch(shipment=shipment, actor=t.warehouse, reason="bench dispatch")
    marks.append(clock())
    if spent is not None:
        for n, step in enumerate(STEPS):
            spent[step] += marks[n + 1] - marks[n]


def take_orders(count: int, t: Trade, start: int, spent=None) -> float:
    started = time.perf_counter()
    for i in range(start, start + count):
        one_order(t, i, spent)
    return time.perf_counter() - started


def create_floor_table() -> None:
    key = "bigserial" if connection.vendor == "postgresql" else "integer"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE bench_floor (id {key} PRIMARY KEY, reference varchar(40) NOT NULL,"
            " step varchar(20) NOT NULL, created_at varchar(40) NOT NULL)"
        )


INSERT_FLOOR = "INSERT INTO bench_floor (reference, step, created_at) VALUES (%s, %s, %s)"


def floor_orders(count: int, t: Trade, start: int, spent=None) -> float:
    """The floor: per order, six transactions of one plain single-row INSERT each; seconds."""
    assert connection.get_autocommit()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for i in range(start, start + count):
            for step in STEPS:
                with transaction.atomic():
                    cursor.execute(
                        INSERT_FLOOR, [f"SO-BENCH-{i}", step, timezone.now().isoformat()]
                    )
    return time.perf_counter() - started


def timed_round(orders: int, t: Trade, offset: int, spent) -> tuple[float, float]:
    service_seconds = floor_seconds = 0.0
    for start in range(0, orders, SLICE):
        count = min(SLICE, orders - start)
        service_seconds += take_orders(count, t, offset + start, spent)
        floor_seconds += floor_orders(count, t, offset + start)
    return service_seconds, floor_seconds


def profile(orders: int, t: Trade, offset: int) -> None:
    """cProfile ``orders`` orders; print the top functions by cumulative and by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    take_orders(orders, t, offset)
    profiler.disable()
    for key, top in (("cumulative", 45), ("tottime", 25)):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(top)
        print(f"profile of {orders} orders, by {key} seconds:")
        print("\n".join(out.getvalue().splitlines()[4:]))


def check(t: Trade, expected: int) -> None:
    """Every order reached ``shipped``, no allocation is left active, the chain verifies."""
    shipped = Order.objects.filter(status=OrderStatus.SHIPPED).count()
    if shipped != expected:
        raise SystemExit(f"{shipped} orders shipped, {expected} taken")
    if StockAllocation.objects.filter(status=AllocationStatus.ACTIVE).exists():
        raise SystemExit("an allocation was left active")
    result = verify()
    if not result.ok:
        raise SystemExit(f"the chain does not verify: {result.as_dict()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200, help="orders per round (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed orders first")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile and time each step (µs per order)"
    )
    args = parser.parse_args()

    muted = business_event.disconnect(dispatch_uid=RECEIVER_UID)
    try:
        with throwaway_database("orders"):
            t = seed()
            create_floor_table()
            take_orders(args.warmup, t, 0)
            floor_orders(args.warmup, t, 0)
            taken = args.warmup
            if args.profile:
                profile(args.orders, t, taken)
                taken += args.orders
            spent: dict[str, float] = defaultdict(float)
            service_rates, floor_rates = [], []
            for round_number in range(1, args.rounds + 1):
                service_seconds, floor_seconds = timed_round(args.orders, t, taken, spent)
                taken += args.orders
                service_rates.append(args.orders / service_seconds)
                floor_rates.append(args.orders / floor_seconds)
                print(
                    f"  round {round_number}: {service_rates[-1]:.1f} orders/s, floor "
                    f"{floor_rates[-1]:.1f} orders/s (x6 INSERT transactions)"
                )
            check(t, taken)
    finally:
        if muted:
            business_event.connect(receivers.on_business_event, dispatch_uid=RECEIVER_UID)

    timed = args.orders * args.rounds
    if args.profile:
        total = sum(spent.values())
        print(f"per step, µs per order (all {timed} timed orders; 1.5 lines an order):")
        for step in STEPS:
            print(f"  {step:<12} {spent[step] / timed * 1e6:8.0f}  {spent[step] / total:5.1%}")
        print(f"  {'total':<12} {total / timed * 1e6:8.0f}")
    service, floor = statistics.median(service_rates), statistics.median(floor_rates)
    print(
        f"orders: {service:.1f} orders/s draft to dispatch through the services "
        f"({1000 / service:.1f} ms an order), floor {floor:.1f} orders/s of six single-INSERT "
        f"transactions, ratio {service / floor:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
