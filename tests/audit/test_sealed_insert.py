"""chain.insert_sealed_row: a row that is its own record written with its seal together — on
PostgreSQL in one statement — sealed exactly as seal_row() seals a row written before."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.chain import column_set, content_hash, row_content, verify
from audit.models import AuditEntry
from batches import scanning
from batches.models import ScanRecord
from tests.conftest import append_only_guard_lifted
from tests.factories import BatchFactory, ProductFactory, datamatrix


def scan(network, lot, scan_id):
    return scanning.scan_submit(
        actor=network.warehouse,
        code=datamatrix(lot.product.gtin, lot.lot_number, lot.expires_on),
        action="verify",
        location=network.manufacturer_storage.pk,
        scan_id=scan_id,
    ).record


@pytest.fixture
def lot(network):
    return BatchFactory(product=ProductFactory(manufacturer=network.manufacturer))


def test_the_row_and_its_seal_are_written_together_and_verify(network, lot):
    records = [scan(network, lot, f"s-{n}") for n in range(3)]

    assert verify().ok, verify().as_dict()
    for record in records:
        entry = AuditEntry.objects.get(source="batches.scanrecord", record_id=record.pk)
        stored = ScanRecord.objects.get(pk=record.pk)
        assert entry.object_model == "batches.scanrecord"
        assert entry.object_id == str(record.pk)  # the row is its own record
        assert entry.action == "created"
        assert entry.user_id == network.warehouse.pk
        assert entry.column_set == column_set(ScanRecord)[0]
        assert entry.content_hash == content_hash(row_content(stored))
    sequences = list(AuditEntry.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))  # one unbroken chain


def test_a_row_changed_after_its_seal_breaks_the_chain_there(network, lot):
    record = scan(network, lot, "t-1")
    entry = AuditEntry.objects.get(source="batches.scanrecord", record_id=record.pk)
    with append_only_guard_lifted(connection), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {ScanRecord._meta.db_table} SET verdict = %s WHERE id = %s",  # noqa: S608
            ["refused", record.pk],
        )

    result = verify()
    assert not result.ok
    assert (result.first.sequence, result.first.problem) == (entry.sequence, "content_changed")


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_verify_scan_is_one_read_and_one_write(network, lot):
    """No BEGIN, no COMMIT: on PostgreSQL the record and its seal are one statement, its own
    transaction; SQLite writes them in one transaction of four statements."""
    scan(network, lot, "warm")  # anything prepared once per connection is prepared now
    with CaptureQueriesContext(connection) as captured:
        record = scan(network, lot, "one")

    statements = [query["sql"] for query in captured]
    if connection.vendor == "postgresql":
        assert len(statements) == 2, statements
        assert statements[1].startswith("WITH row_written AS (INSERT INTO")
    else:  # the read; BEGIN, the record, the head, the entry, the head's hash, COMMIT
        assert len(statements) == 7, statements
        assert statements[1].startswith("BEGIN")
    assert AuditEntry.objects.filter(record_id=record.pk, source="batches.scanrecord").exists()
    assert verify().ok
