"""The ledger under real concurrency: 20 transactions race for too little stock on PostgreSQL.

SQLite serialises writers on the whole file, so only PostgreSQL's row locks are put to the test
here. Each thread has its own connection (Django's are per thread) and closes it at the end.
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum

from batches import services
from batches.models import (
    AllocationStatus,
    MoveKind,
    StockAllocation,
    StockBalance,
    StockMove,
)
from partners.models import LocationKind, PartnerKind, Role
from tests.factories import (
    BatchFactory,
    LocationFactory,
    PartnerFactory,
    ProductFactory,
    SiteFactory,
    UserFactory,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: set DATABASE_URL=postgres://...",
    ),
]

THREADS = 20
LOT_UNITS = 100
ASKED_EACH = 7  # 20 × 7 = 140 asked of 100: 14 fit, 6 must be refused
TODAY = datetime.date(2026, 11, 28)
JOIN_TIMEOUT_SECONDS = 60


@dataclass
class Race:
    """What each of the racing threads came back with."""

    results: dict[int, Any] = field(default_factory=dict)
    errors: dict[int, BaseException] = field(default_factory=dict)
    broken_balances: list[tuple[int, int, int]] = field(default_factory=list)


def run_race(action, *, watch_batch) -> Race:
    """Start ``THREADS`` threads at the same instant, each calling ``action(i)``.

    A watcher thread reads the committed balances of ``watch_batch`` over and over while the
    race runs, so a balance that is ever negative or over-allocated, even briefly, is caught.
    """
    race = Race()
    barrier = threading.Barrier(THREADS + 1)
    done = threading.Event()

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            race.results[i] = action(i)
        except BaseException as error:  # every outcome is recorded, and judged by the test
            race.errors[i] = error
        finally:
            connection.close()

    def watcher() -> None:
        try:
            barrier.wait(timeout=30)
            while not done.is_set():
                for row in StockBalance.objects.filter(batch=watch_batch).values_list(
                    "location_id", "on_hand", "allocated"
                ):
                    _, on_hand, allocated = row
                    if on_hand < 0 or allocated < 0 or allocated > on_hand:
                        race.broken_balances.append(row)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    observer = threading.Thread(target=watcher)
    observer.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT_SECONDS)
    done.set()
    observer.join(timeout=JOIN_TIMEOUT_SECONDS)
    assert not any(t.is_alive() for t in [*threads, observer]), "a thread hung (lock wait?)"
    return race


def assert_clean_refusals(race: Race, winners: int) -> None:
    """Exactly ``winners`` threads succeeded; every other one got InsufficientStock, nothing
    else (no deadlock, no IntegrityError, no serialization failure)."""
    unexpected = {
        i: repr(error)
        for i, error in race.errors.items()
        if not isinstance(error, services.InsufficientStock)
    }
    assert unexpected == {}
    assert len(race.results) == winners
    assert len(race.errors) == THREADS - winners
    assert {error.code for error in race.errors.values()} <= {"insufficient_stock"}
    for error in race.errors.values():
        assert error.extra["available"] < ASKED_EACH
    assert race.broken_balances == []


@pytest.fixture
def warehouse():
    """A manufacturer's warehouse: a user, a released lot and two storage locations, the first
    holding ``LOT_UNITS`` units (committed: the racing threads see it)."""

    place = SimpleNamespace()
    manufacturer = PartnerFactory(kind=PartnerKind.MANUFACTURER)
    site = SiteFactory(partner=manufacturer)
    place.source = LocationFactory(site=site, code="STORE-A", kind=LocationKind.STORAGE)
    place.target = LocationFactory(site=site, code="STORE-B", kind=LocationKind.STORAGE)
    place.user = UserFactory(partner=manufacturer, role=Role.WAREHOUSE_OPERATOR)
    place.product = ProductFactory(manufacturer=manufacturer)
    place.lot = BatchFactory(product=place.product)
    services.stock_post_move(
        batch=place.lot,
        quantity=LOT_UNITS,
        kind=MoveKind.RECEIPT,
        actor=place.user,
        reason="production output",
        to_location=place.source,
    )
    return place


def test_concurrent_allocations_never_over_allocate(warehouse):
    """20 orders of 7 race for a lot of 100: 14 get their units, 6 are refused cleanly, and the
    balance's allocated count is exactly the sum of the active allocations."""

    def allocate(i: int):
        return services.stock_allocate(
            product=warehouse.product,
            quantity=ASKED_EACH,
            locations=[warehouse.source],
            reference=f"SO-{i}",
            actor=warehouse.user,
            reason=f"order SO-{i}",
            on=TODAY,
        )

    # when
    race = run_race(allocate, watch_batch=warehouse.lot)

    # then
    winners = LOT_UNITS // ASKED_EACH
    assert_clean_refusals(race, winners)
    for allocations in race.results.values():
        assert [(a.batch_id, a.quantity) for a in allocations] == [(warehouse.lot.pk, ASKED_EACH)]
    active = StockAllocation.objects.filter(status=AllocationStatus.ACTIVE)
    assert sorted(active.values_list("reference", flat=True)) == sorted(
        f"SO-{i}" for i in race.results
    )
    assert not StockAllocation.objects.filter(
        reference__in=[f"SO-{i}" for i in race.errors]
    ).exists()
    row = StockBalance.objects.get(batch=warehouse.lot, location=warehouse.source)
    assert row.on_hand == LOT_UNITS
    assert row.allocated <= row.on_hand
    assert row.allocated == active.aggregate(total=Sum("quantity"))["total"]
    assert row.allocated == winners * ASKED_EACH
    # every allocation kept its history row, written in its own transaction
    assert StockAllocation.history.filter(history_type="+").count() == winners


def test_concurrent_moves_out_of_one_location_never_go_negative(warehouse):
    """20 transfers of 7 race out of a location holding 100 into one with no balance row yet:
    14 post, 6 are refused cleanly, and each balance equals the sum of the moves."""

    def move_out(i: int):
        return services.stock_post_move(
            batch=warehouse.lot,
            quantity=ASKED_EACH,
            kind=MoveKind.TRANSFER,
            actor=warehouse.user,
            reason=f"put-away {i}",
            from_location=warehouse.source,
            to_location=warehouse.target,
            reference=f"MV-{i}",
        )

    # when
    race = run_race(move_out, watch_batch=warehouse.lot)

    # then
    winners = LOT_UNITS // ASKED_EACH
    assert_clean_refusals(race, winners)
    transfers = StockMove.objects.filter(kind=MoveKind.TRANSFER)
    assert sorted(transfers.values_list("reference", flat=True)) == sorted(
        f"MV-{i}" for i in race.results
    )
    balances = {
        row.location_id: row.on_hand for row in StockBalance.objects.filter(batch=warehouse.lot)
    }
    assert balances == {
        warehouse.source.pk: LOT_UNITS - winners * ASKED_EACH,
        warehouse.target.pk: winners * ASKED_EACH,
    }
    assert all(on_hand >= 0 for on_hand in balances.values())
    # the balances are the projection of the moves: in minus out, location by location
    for location_id, on_hand in balances.items():
        assert (
            units_moved(to_location_id=location_id) - units_moved(from_location_id=location_id)
            == on_hand
        )


def units_moved(**lookup) -> int:
    return StockMove.objects.filter(**lookup).aggregate(total=Sum("quantity"))["total"] or 0
