"""What a scan costs in statements: a scan station waits for every answer, so the verify scan
of a known pack is held to a few round trips (issue 5; bench/scan.py measures the time).

The counts are taken inside the test's transaction, where the scan's transaction is a
savepoint (SAVEPOINT and RELEASE; BEGIN and COMMIT in production)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models.deletion import Collector, ProtectedError
from django.test.utils import CaptureQueriesContext

from batches import hooks, scanning
from batches import services as stock
from batches.models import BatchStatus, ScanRecord
from coldchain.models import Excursion, ExcursionStatus
from coldchain.selectors import excursion_holds
from recalls.models import RecallLot
from recalls.selectors import recall_holds
from tests.factories import BatchFactory, ProductFactory, datamatrix

# One read (location with the partner's membership, product, lot, pack and every hold gate);
# the record with its seal 1 on PostgreSQL (SQLite: 4); inside the test's transaction a
# SAVEPOINT and its RELEASE around the record (production has no transaction there at all).
# Then 1 for each hold check without a gate.
VERIFY_STATEMENTS = 4 if connection.vendor == "postgresql" else 7


@pytest.fixture
def pack(network):
    product = ProductFactory(manufacturer=network.manufacturer, name="Vaccine")
    lot = BatchFactory(product=product, lot_number="Q1", status=BatchStatus.RELEASED)
    stock.serial_commission(
        batch=lot,
        serial_numbers=[f"P{n}" for n in range(5)],
        actor=network.warehouse,
        reason="labelled",
    )
    return lot


@pytest.fixture
def gated(monkeypatch):
    """The project's two hold checks, registered with the gates proposed to their owners."""
    monkeypatch.setattr(hooks, "_checks", [])
    monkeypatch.setattr(hooks, "_gates", {})
    hooks.register_hold_check(
        recall_holds,
        gate=lambda batch_id: RecallLot.objects.filter(batch_id=batch_id, recall__is_drill=False),
    )
    hooks.register_hold_check(
        excursion_holds,
        gate=lambda batch_id: Excursion.objects.filter(
            status__in=[ExcursionStatus.OPEN, ExcursionStatus.ACKNOWLEDGED],
            shipment__lines__batch_id=batch_id,
        ),
    )


def verify(network, lot, serial, scan_id, **kwargs):
    code = datamatrix(lot.product.gtin, lot.lot_number, lot.expires_on, serial)
    return scanning.scan_submit(
        actor=network.warehouse,
        code=code,
        action="verify",
        location=network.manufacturer_storage.pk,
        scan_id=scan_id,
        **kwargs,
    )


def counted(call):
    with CaptureQueriesContext(connection) as captured:
        answer = call()
    return answer, [query["sql"] for query in captured]


def hold_statements() -> int:
    return sum(1 for check in hooks._checks if check not in hooks._gates)


def test_a_verify_scan_costs_a_few_statements_plus_its_hold_checks(network, pack):
    verify(network, pack, "P0", "warm-1")  # anything cached once per process is cached now
    answer, statements = counted(lambda: verify(network, pack, "P1", "q-1"))

    assert answer.record.verdict == "accepted", answer.record.reasons
    assert len(statements) <= VERIFY_STATEMENTS + hold_statements(), "\n".join(statements)
    # the product is read once, with the lot and the pack
    assert sum('FROM "batches_product"' in sql for sql in statements) == 0
    assert sum("batches_product" in sql for sql in statements) == 1


def test_with_gated_hold_checks_a_verify_scan_reads_its_holds_in_one_statement(
    network, pack, gated
):
    verify(network, pack, "P0", "warm-2")
    answer, statements = counted(lambda: verify(network, pack, "P2", "q-2"))

    assert answer.record.verdict == "accepted", answer.record.reasons
    assert len(statements) <= VERIFY_STATEMENTS, "\n".join(statements)
    assert not any("coldchain_excursion" in sql and "EXISTS" not in sql for sql in statements)
    assert not any("recalls_recalllot" in sql and "EXISTS" not in sql for sql in statements)


def test_a_gated_hold_that_finds_a_row_still_refuses_the_scan(network, pack, monkeypatch):
    monkeypatch.setattr(hooks, "_checks", [])
    monkeypatch.setattr(hooks, "_gates", {})

    def held(batch, location):
        return [hooks.Hold("excursion_hold", f"lot {batch.lot_number} held: EX-9", "EX-9")]

    hooks.register_hold_check(
        held, gate=lambda batch_id: ScanRecord.objects.filter(batch_id=batch_id)
    )
    first = verify(network, pack, "P0", "h-1").record  # no scan of the lot yet: gate closed
    assert first.verdict == "accepted", first.reasons
    second = verify(network, pack, "P1", "h-2").record  # the gate finds the first scan
    assert second.verdict == "refused"
    assert second.reasons == [{"code": "excursion_hold", "detail": "lot Q1 held: EX-9"}]


def test_a_repeated_scan_id_answers_the_first_record_without_a_second(network, pack):
    first = verify(network, pack, "P3", "r-1")
    again = verify(network, pack, "P3", "r-1")

    assert (first.replayed, again.replayed) == (False, True)
    assert again.record.pk == first.record.pk
    assert ScanRecord.objects.filter(scan_id="r-1").count() == 1
    assert again.record.serial.serial_number == "P3"  # read with the record


def test_a_count_scan_asks_no_hold(network, pack, gated):
    stock.stock_receive(
        batch=pack,
        location=network.manufacturer_storage,
        quantity=5,
        actor=network.warehouse,
        reason="opening stock",
    )
    code = datamatrix(pack.product.gtin, pack.lot_number, pack.expires_on)
    answer, statements = counted(
        lambda: scanning.scan_submit(
            actor=network.warehouse,
            code=code,
            action="count",
            location=network.manufacturer_storage,
            quantity=5,
        )
    )
    assert answer.record.verdict == "accepted", answer.record.reasons
    assert not any("recalls_recalllot" in sql or "coldchain_excursion" in sql for sql in statements)
    # The location's partner is checked by its id, read with the location: no row of its own.
    assert not any('FROM "partners_partner"' in sql for sql in statements), statements


def test_what_a_scan_names_cannot_be_deleted(network, pack):
    """A scan record keeps what it names: its location, partner, operator, product, lot and
    pack cannot be deleted while the record names them (PROTECT, and the database's foreign
    keys behind it)."""
    answer = verify(network, pack, "P0", "protect-1")
    record = answer.record
    assert record.verdict == "accepted"
    named = [
        record.location,
        record.partner,
        record.user,
        record.product,
        record.batch,
        record.serial,
    ]
    for parent in named:
        collector = Collector(using="default")
        with pytest.raises(ProtectedError) as refused:
            collector.collect([parent])
        assert record in refused.value.protected_objects
    # What the record names is what the scan read, row for row.
    stored = ScanRecord.objects.get(pk=record.pk)
    assert (stored.location_id, stored.batch_id, stored.serial.serial_number) == (
        network.manufacturer_storage.pk,
        pack.pk,
        "P0",
    )
