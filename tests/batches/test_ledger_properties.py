"""The ledger's invariants, checked over random sequences of operations (hypothesis).

For every lot: the moves add up to the balances, nothing is negative, allocated never exceeds on
hand, and allocated equals the units of the active allocations.
"""

from __future__ import annotations

import datetime

from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from batches import services
from batches.models import AllocationStatus, StockAllocation, StockBalance, StockMove
from pharmadms.exceptions import ApplicationError
from tests.conftest import build_network
from tests.factories import BatchFactory, LocationFactory, ProductFactory

TODAY = datetime.date(2026, 11, 28)


class LedgerMachine(RuleBasedStateMachine):
    """Receive / transfer / allocate / deallocate / adjust in any order; refusals are allowed,
    but a refusal must leave nothing behind."""

    @initialize()
    def set_up(self):
        # Each example runs in a savepoint that teardown() rolls back: examples never mix.
        self.savepoint = transaction.atomic()
        self.savepoint.__enter__()
        self.net = build_network()
        product = ProductFactory(manufacturer=self.net.manufacturer)
        self.lots = [
            BatchFactory(product=product, expires_on=datetime.date(2027, month, 28))
            for month in (3, 6, 9)
        ]
        self.locations = [
            self.net.manufacturer_storage,
            LocationFactory(site=self.net.manufacturer_site, code="STORE-2"),
            self.net.manufacturer_quarantine,
        ]
        self.active: list[StockAllocation] = []

    def teardown(self):
        if hasattr(self, "savepoint"):
            transaction.set_rollback(True)
            self.savepoint.__exit__(None, None, None)

    def attempt(self, action, **kwargs):
        before = self.snapshot()
        try:
            return action(**kwargs)
        except ApplicationError:
            assert self.snapshot() == before, "a refused operation changed the ledger"
            return None

    def snapshot(self):
        return (
            StockMove.objects.count(),
            list(StockBalance.objects.order_by("pk").values_list("on_hand", "allocated")),
            StockAllocation.objects.filter(status=AllocationStatus.ACTIVE).count(),
        )

    @rule(lot=st.integers(0, 2), location=st.integers(0, 2), quantity=st.integers(-3, 60))
    def receive(self, lot, location, quantity):
        self.attempt(
            services.stock_receive,
            batch=self.lots[lot],
            location=self.locations[location],
            quantity=quantity,
            actor=self.net.warehouse,
            reason="goods in",
        )

    @rule(
        lot=st.integers(0, 2),
        source=st.integers(0, 2),
        destination=st.integers(0, 2),
        quantity=st.integers(-3, 60),
    )
    def transfer(self, lot, source, destination, quantity):
        self.attempt(
            services.stock_transfer,
            batch=self.lots[lot],
            from_location=self.locations[source],
            to_location=self.locations[destination],
            quantity=quantity,
            actor=self.net.warehouse,
            reason="relocation",
        )

    @rule(
        quantity=st.integers(1, 80), min_days=st.sampled_from([0, 150, 300]), partial=st.booleans()
    )
    def allocate(self, quantity, min_days, partial):
        made = self.attempt(
            services.stock_allocate,
            product=self.lots[0].product,
            quantity=quantity,
            locations=self.locations[:2],
            reference="SO",
            actor=self.net.warehouse,
            reason="order",
            on=TODAY,
            min_remaining_shelf_life_days=min_days,
            allow_partial=partial,
        )
        self.active.extend(made or [])

    @precondition(lambda self: self.active)
    @rule(index=st.integers(0, 1000))
    def deallocate(self, index):
        allocation = self.active.pop(index % len(self.active))
        services.stock_deallocate(
            allocation=allocation, actor=self.net.warehouse, reason="order cancelled"
        )

    @rule(lot=st.integers(0, 2), location=st.integers(0, 2), change=st.integers(-40, 40))
    def adjust(self, lot, location, change):
        self.attempt(
            services.stock_adjust,
            batch=self.lots[lot],
            location=self.locations[location],
            quantity_change=change,
            actor=self.net.qa,
            reason="cycle count",
        )

    @invariant()
    def moves_add_up_to_balances(self):
        if not hasattr(self, "lots"):
            return
        for row in StockBalance.objects.filter(batch__in=self.lots):
            moved_in = (
                StockMove.objects.filter(batch=row.batch_id, to_location=row.location_id).aggregate(
                    total=Sum("quantity")
                )["total"]
                or 0
            )
            moved_out = (
                StockMove.objects.filter(
                    batch=row.batch_id, from_location=row.location_id
                ).aggregate(total=Sum("quantity"))["total"]
                or 0
            )
            assert row.on_hand == moved_in - moved_out
            assert 0 <= row.allocated <= row.on_hand
            reserved = (
                StockAllocation.objects.filter(
                    batch=row.batch_id, location=row.location_id, status=AllocationStatus.ACTIVE
                ).aggregate(total=Sum("quantity"))["total"]
                or 0
            )
            assert row.allocated == reserved


def test_ledger_invariants_hold_under_any_sequence(db):
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
