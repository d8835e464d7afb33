"""The stock ledger service: moves, balances, allocation (FEFO) and their refusals."""

from __future__ import annotations

import datetime

import pytest
from django.db import IntegrityError, connection, transaction

from audit.history import HistoryBypassRefused
from batches import services
from batches.models import AllocationStatus, BatchStatus, MoveKind, StockBalance, StockMove
from pharmadms.exceptions import InvalidInput, NotPermitted, RuleViolation
from tests.factories import BatchFactory, LocationFactory, ProductFactory

TODAY = datetime.date(2026, 11, 28)


def balance(batch, location) -> StockBalance:
    return StockBalance.objects.get(batch=batch, location=location)


@pytest.fixture
def lot(network):
    product = ProductFactory(manufacturer=network.manufacturer)
    return BatchFactory(product=product)


def test_receipt_creates_balance_and_move(network, lot):
    """A receipt posts one move and puts the units on hand at the location."""
    move = services.stock_receive(
        batch=lot,
        location=network.manufacturer_storage,
        quantity=100,
        actor=network.warehouse,
        reason="production output",
    )
    assert move.kind == MoveKind.RECEIPT
    assert move.from_location is None
    assert balance(lot, network.manufacturer_storage).on_hand == 100
    assert move.user == network.warehouse
    assert move.reason == "production output"


def test_transfer_moves_units_between_locations(network, lot):
    services.stock_receive(
        batch=lot,
        location=network.manufacturer_storage,
        quantity=50,
        actor=network.warehouse,
        reason="production output",
    )
    services.stock_transfer(
        batch=lot,
        from_location=network.manufacturer_storage,
        to_location=network.manufacturer_quarantine,
        quantity=20,
        actor=network.warehouse,
        reason="damaged outer box",
    )
    assert balance(lot, network.manufacturer_storage).on_hand == 30
    assert balance(lot, network.manufacturer_quarantine).on_hand == 20


def test_moving_more_than_available_is_refused_and_writes_nothing(network, lot):
    services.stock_receive(
        batch=lot,
        location=network.manufacturer_storage,
        quantity=10,
        actor=network.warehouse,
        reason="production output",
    )
    with pytest.raises(services.InsufficientStock) as refusal:
        services.stock_transfer(
            batch=lot,
            from_location=network.manufacturer_storage,
            to_location=network.manufacturer_quarantine,
            quantity=11,
            actor=network.warehouse,
            reason="too many",
        )
    assert refusal.value.code == "insufficient_stock"
    assert StockMove.objects.count() == 1
    assert balance(lot, network.manufacturer_storage).on_hand == 10


@pytest.mark.parametrize("quantity", [0, -5, 2.5, True, "3"])
def test_quantity_must_be_a_positive_whole_number(network, lot, quantity):
    with pytest.raises(InvalidInput) as refusal:
        services.stock_receive(
            batch=lot,
            location=network.manufacturer_storage,
            quantity=quantity,
            actor=network.warehouse,
            reason="x",
        )
    assert refusal.value.code == "invalid_quantity"
    assert not StockMove.objects.exists()


def test_move_without_reason_is_refused(network, lot):
    with pytest.raises(InvalidInput) as refusal:
        services.stock_receive(
            batch=lot,
            location=network.manufacturer_storage,
            quantity=1,
            actor=network.warehouse,
            reason="  ",
        )
    assert refusal.value.code == "reason_required"


def test_transfer_to_another_partner_is_refused(network, lot):
    services.stock_receive(
        batch=lot,
        location=network.manufacturer_storage,
        quantity=5,
        actor=network.warehouse,
        reason="production output",
    )
    with pytest.raises(RuleViolation) as refusal:
        services.stock_transfer(
            batch=lot,
            from_location=network.manufacturer_storage,
            to_location=network.wholesaler_storage,
            quantity=1,
            actor=network.warehouse,
            reason="x",
        )
    assert refusal.value.code == "transfer_across_partners"


def test_quarantined_lot_cannot_enter_saleable_storage(network):
    lot = BatchFactory(
        product=ProductFactory(manufacturer=network.manufacturer), status=BatchStatus.QUARANTINE
    )
    services.stock_receive(
        batch=lot,
        location=network.manufacturer_quarantine,
        quantity=5,
        actor=network.warehouse,
        reason="production output",
    )
    with pytest.raises(RuleViolation) as refusal:
        services.stock_transfer(
            batch=lot,
            from_location=network.manufacturer_quarantine,
            to_location=network.manufacturer_storage,
            quantity=5,
            actor=network.warehouse,
            reason="x",
        )
    assert refusal.value.code == "batch_not_released"


def test_adjustment_is_for_qa_only_and_posts_a_move(network, lot):
    services.stock_receive(
        batch=lot,
        location=network.manufacturer_storage,
        quantity=10,
        actor=network.warehouse,
        reason="production output",
    )
    with pytest.raises(NotPermitted):
        services.stock_adjust(
            batch=lot,
            location=network.manufacturer_storage,
            quantity_change=-2,
            actor=network.warehouse,
            reason="count",
        )
    move = services.stock_adjust(
        batch=lot,
        location=network.manufacturer_storage,
        quantity_change=-2,
        actor=network.qa,
        reason="cycle count",
    )
    assert move.kind == MoveKind.ADJUSTMENT
    assert move.to_location is None
    assert move.quantity == 2
    assert balance(lot, network.manufacturer_storage).on_hand == 8


def test_adjustment_on_another_partners_location_is_refused(network, lot):
    with pytest.raises(NotPermitted):
        services.stock_adjust(
            batch=lot,
            location=network.wholesaler_storage,
            quantity_change=5,
            actor=network.qa,
            reason="count",
        )


def test_stock_moves_are_append_only(network, lot):
    """Neither the ORM nor raw SQL can change or delete a posted move."""
    move = services.stock_receive(
        batch=lot,
        location=network.manufacturer_storage,
        quantity=3,
        actor=network.warehouse,
        reason="production output",
    )
    move.quantity = 30
    with pytest.raises(HistoryBypassRefused):
        move.save()
    with pytest.raises(HistoryBypassRefused):
        move.delete()
    with pytest.raises(HistoryBypassRefused):
        StockMove.objects.filter(pk=move.pk).update(quantity=30)
    with pytest.raises(HistoryBypassRefused):
        StockMove.objects.filter(pk=move.pk).delete()
    for sql in ("UPDATE batches_stockmove SET quantity = 30", "DELETE FROM batches_stockmove"):
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert StockMove.objects.get(pk=move.pk).quantity == 3


def test_database_refuses_negative_balance(network, lot):
    services.stock_receive(
        batch=lot,
        location=network.manufacturer_storage,
        quantity=3,
        actor=network.warehouse,
        reason="production output",
    )
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE batches_stockbalance SET on_hand = -1")
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE batches_stockbalance SET allocated = on_hand + 1")


# --- FEFO allocation -------------------------------------------------------------------------


@pytest.fixture
def three_lots(network):
    """Three released lots of one product, expiring in different months, plus one quarantined
    and one expired, each with 10 units in manufacturer storage."""
    product = ProductFactory(manufacturer=network.manufacturer)
    lots = {
        "late": BatchFactory(
            product=product, lot_number="LATE", expires_on=datetime.date(2027, 9, 30)
        ),
        "early": BatchFactory(
            product=product, lot_number="EARLY", expires_on=datetime.date(2027, 1, 31)
        ),
        "mid": BatchFactory(
            product=product, lot_number="MID", expires_on=datetime.date(2027, 5, 31)
        ),
        "expired": BatchFactory(
            product=product,
            lot_number="OLD",
            manufactured_on=datetime.date(2024, 1, 1),
            expires_on=datetime.date(2026, 10, 31),
        ),
        "quarantine": BatchFactory(
            product=product,
            lot_number="QUAR",
            status=BatchStatus.QUARANTINE,
            expires_on=datetime.date(2026, 12, 31),
        ),
    }
    for lot in lots.values():
        services.stock_post_move(
            batch=lot,
            quantity=10,
            kind=MoveKind.RECEIPT,
            actor=network.warehouse,
            reason="production output",
            to_location=network.manufacturer_storage,
        )
    return product, lots


def test_allocation_takes_earliest_expiry_first(network, three_lots):
    product, lots = three_lots
    allocations = services.stock_allocate(
        product=product,
        quantity=15,
        locations=[network.manufacturer_storage],
        reference="SO-1",
        actor=network.warehouse,
        reason="order SO-1",
        on=TODAY,
    )
    assert [(a.batch.lot_number, a.quantity) for a in allocations] == [("EARLY", 10), ("MID", 5)]
    assert balance(lots["early"], network.manufacturer_storage).allocated == 10


def test_allocation_honours_minimum_remaining_shelf_life(network, three_lots):
    product, _ = three_lots
    allocations = services.stock_allocate(
        product=product,
        quantity=5,
        locations=[network.manufacturer_storage],
        reference="SO-2",
        actor=network.warehouse,
        reason="order SO-2",
        on=TODAY,
        min_remaining_shelf_life_days=200,
    )
    assert [a.batch.lot_number for a in allocations] == ["LATE"]


def test_allocation_never_takes_expired_or_quarantined_lots(network, three_lots):
    product, _ = three_lots
    with pytest.raises(services.InsufficientStock) as refusal:
        services.stock_allocate(
            product=product,
            quantity=31,
            locations=[network.manufacturer_storage],
            reference="SO-3",
            actor=network.warehouse,
            reason="x",
            on=TODAY,
        )
    assert refusal.value.extra["available"] == 30
    assert not StockBalance.objects.filter(allocated__gt=0).exists()


def test_partial_allocation_takes_what_there_is(network, three_lots):
    product, _ = three_lots
    allocations = services.stock_allocate(
        product=product,
        quantity=50,
        locations=[network.manufacturer_storage],
        reference="SO-4",
        actor=network.warehouse,
        reason="x",
        on=TODAY,
        allow_partial=True,
    )
    assert sum(a.quantity for a in allocations) == 30


def test_allocated_units_cannot_be_moved_and_deallocation_frees_them(network, three_lots):
    product, lots = three_lots
    [allocation] = services.stock_allocate(
        product=product,
        quantity=10,
        locations=[network.manufacturer_storage],
        reference="SO-5",
        actor=network.warehouse,
        reason="x",
        on=TODAY,
    )
    with pytest.raises(services.InsufficientStock):
        services.stock_transfer(
            batch=lots["early"],
            from_location=network.manufacturer_storage,
            to_location=network.manufacturer_quarantine,
            quantity=1,
            actor=network.warehouse,
            reason="x",
        )
    services.stock_deallocate(
        allocation=allocation, actor=network.warehouse, reason="order cancelled"
    )
    allocation.refresh_from_db()
    assert allocation.status == AllocationStatus.RELEASED
    assert balance(lots["early"], network.manufacturer_storage).allocated == 0


def test_a_move_can_consume_its_allocation(network, three_lots):
    product, lots = three_lots
    [allocation] = services.stock_allocate(
        product=product,
        quantity=4,
        locations=[network.manufacturer_storage],
        reference="SO-6",
        actor=network.warehouse,
        reason="x",
        on=TODAY,
    )
    in_transit = LocationFactory(site=network.manufacturer_site, code="TRUCK", kind="in_transit")
    services.stock_post_move(
        batch=lots["early"],
        quantity=4,
        kind=MoveKind.SHIPMENT,
        actor=network.warehouse,
        reason="dispatch",
        reference="SO-6",
        from_location=network.manufacturer_storage,
        to_location=in_transit,
        consume_allocation=allocation,
    )
    row = balance(lots["early"], network.manufacturer_storage)
    assert (row.on_hand, row.allocated) == (6, 0)
    allocation.refresh_from_db()
    assert allocation.status == AllocationStatus.CONSUMED
