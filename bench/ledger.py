"""Ledger throughput: stock moves posted per second through the service, against plain INSERTs.

    .venv/bin/python bench/ledger.py [--moves N] [--rounds R] [--show-queries]

Runs on whatever DATABASE_URL names (SQLite when unset), in a throw-away database created for
the run and dropped after it: a temporary file for SQLite, a database of its own on PostgreSQL.
Each round times N transfers through batches.services.stock_post_move (each its own
transaction, with its row locks and balance updates) and N single-row INSERTs of the same rows
into batches_stockmove in autocommit through the same connection: the floor no ledger can beat.
The two alternate in slices of 100 so a busy machine slows both alike. The medians of the
rounds give the ratio service/floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from throwaway import throwaway_database  # sets Django up before any model is imported

from batches import services
from batches.models import BatchStatus, MoveKind, StockBalance, StockMove
from partners.models import LocationKind, PartnerKind, Role
from tests.factories import (
    BatchFactory,
    LocationFactory,
    PartnerFactory,
    ProductFactory,
    SiteFactory,
    UserFactory,
)

GOAL = 0.2
OPENING_STOCK = 1_000
SLICE = 100  # moves per alternating slice of a round


def seed():
    """One manufacturer's warehouse: a user, a released lot, two storage locations, stock in A."""
    manufacturer = PartnerFactory(name="Bench Pharma", kind=PartnerKind.MANUFACTURER)
    site = SiteFactory(partner=manufacturer)
    store_a = LocationFactory(site=site, code="A", kind=LocationKind.STORAGE)
    store_b = LocationFactory(site=site, code="B", kind=LocationKind.STORAGE)
    user = UserFactory(username="bench", partner=manufacturer, role=Role.WAREHOUSE_OPERATOR)
    lot = BatchFactory(
        product=ProductFactory(manufacturer=manufacturer), status=BatchStatus.RELEASED
    )
    services.stock_post_move(
        batch=lot,
        quantity=OPENING_STOCK,
        kind=MoveKind.RECEIPT,
        actor=user,
        reason="bench opening stock",
        to_location=store_a,
    )
    return lot, store_a, store_b, user


def post_moves(count: int, lot, store_a, store_b, user) -> float:
    """Post ``count`` transfers of one unit, A→B then B→A, each its own transaction; seconds."""
    started = time.perf_counter()
    for i in range(count):
        source, target = (store_a, store_b) if i % 2 == 0 else (store_b, store_a)
        services.stock_post_move(
            batch=lot,
            quantity=1,
            kind=MoveKind.TRANSFER,
            actor=user,
            reason="bench transfer",
            from_location=source,
            to_location=target,
            reference=f"BENCH-{i}",
        )
    return time.perf_counter() - started


INSERT_MOVE = (
    "INSERT INTO batches_stockmove (batch_id, quantity, from_location_id, to_location_id,"
    " kind, reference, reason, user_id, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def insert_rows(count: int, lot, store_a, store_b, user) -> float:
    """The floor: the same rows, one plain INSERT each, in autocommit; seconds."""
    assert connection.get_autocommit()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for i in range(count):
            source, target = (store_a, store_b) if i % 2 == 0 else (store_b, store_a)
            cursor.execute(
                INSERT_MOVE,
                [
                    lot.pk,
                    1,
                    source.pk,
                    target.pk,
                    MoveKind.TRANSFER.value,
                    f"BENCH-{i}",
                    "bench transfer",
                    user.pk,
                    connection.ops.adapt_datetimefield_value(timezone.now()),
                ],
            )
    return time.perf_counter() - started


def timed_round(moves: int, place) -> tuple[float, float]:
    """Seconds for ``moves`` service moves and ``moves`` plain INSERTs, timed in alternating
    slices so that both sides see the same load on a shared machine."""
    service_seconds = floor_seconds = 0.0
    for start in range(0, moves, SLICE):
        count = min(SLICE, moves - start)
        service_seconds += post_moves(count, *place)
        floor_seconds += insert_rows(count, *place)
    return service_seconds, floor_seconds


def show_queries(lot, store_a, store_b, user) -> None:
    """Print every statement one stock_post_move issues (transaction control included)."""
    with CaptureQueriesContext(connection) as captured:
        post_moves(1, lot, store_a, store_b, user)
    print(f"stock_post_move issues {len(captured)} statements:")
    for query in captured:
        print(f"  {query['sql']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=2000, help="moves per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=300, help="untimed moves first")
    parser.add_argument(
        "--show-queries", action="store_true", help="print the SQL of one service call"
    )
    args = parser.parse_args()

    with throwaway_database("ledger"):
        place = seed()
        post_moves(args.warmup, *place)
        insert_rows(args.warmup, *place)
        if args.show_queries:
            show_queries(*place)
        service_rates, floor_rates = [], []
        for round_number in range(1, args.rounds + 1):
            service_seconds, floor_seconds = timed_round(args.moves, place)
            service_rates.append(args.moves / service_seconds)
            floor_rates.append(args.moves / floor_seconds)
            print(
                f"  round {round_number}: {service_rates[-1]:.0f} moves/s, "
                f"{floor_rates[-1]:.0f} INSERTs/s"
            )
        check_ledger(*place)

    service, floor = statistics.median(service_rates), statistics.median(floor_rates)
    print(
        f"ledger: {service:.0f} moves/s through the service, {floor:.0f} plain INSERTs/s, "
        f"ratio {service / floor:.2f} (goal >= {GOAL})"
    )
    return 0


def check_ledger(lot, store_a, store_b, user) -> None:
    """The service's moves kept the balances whole (the floor's raw rows touch no balance)."""
    on_hand = sum(StockBalance.objects.filter(batch=lot).values_list("on_hand", flat=True))
    if on_hand != OPENING_STOCK:
        raise SystemExit(f"ledger broken: {on_hand} units on hand, {OPENING_STOCK} received")
    if not StockMove.objects.filter(reason="bench transfer").exists():
        raise SystemExit("no move was posted")


if __name__ == "__main__":
    sys.exit(main())
