"""A later release adds a column to a sealed or signed table: what was sealed and signed before
still verifies over the columns it covered, and tampering with those columns is still caught."""

from __future__ import annotations

import pytest
from django.db import connection

from audit import chain
from audit.chain import content_hash, verify
from audit.models import AuditEntry, ColumnSet
from audit.services import SIGNATURE_VALID, signature_status
from batches import services as stock
from batches.models import Batch, BatchStatus
from partners.models import Partner
from tests.conftest import append_only_guard_lifted
from tests.factories import TEST_PASSWORD, BatchFactory, PartnerFactory, ProductFactory


def grow(monkeypatch, model, column: str = "added_later") -> str:
    """Make ``model``'s column set what it would be after a release adds ``column``."""
    _, columns = chain.column_set(model)
    grown = tuple(sorted((*columns, column)))
    digest = content_hash([model._meta.label_lower, grown])
    monkeypatch.setitem(chain._column_sets, model, (digest, grown))
    return digest


def test_every_table_has_its_column_set_recorded_at_migrate(db):
    history_model = Partner.history.model
    digest, columns = chain.column_set(history_model)
    recorded = ColumnSet.objects.get(digest=digest)
    assert recorded.source == "partners.historicalpartner"
    assert tuple(recorded.columns) == columns
    assert "history_id" not in columns  # the key is the entry's record_id, not content


def test_seals_made_before_a_column_was_added_still_verify(db, monkeypatch):
    partner = PartnerFactory(name="Before the release")
    sealed_with = chain.column_set(Partner.history.model)[0]
    new_digest = grow(monkeypatch, Partner.history.model)

    entry = AuditEntry.objects.filter(source="partners.historicalpartner").latest("sequence")
    assert entry.column_set == sealed_with != new_digest
    assert verify().ok, verify().as_dict()

    # A column the seal covered, changed behind the application's back, is still caught.
    version = Partner.history.filter(id=partner.pk).latest("history_id")
    with append_only_guard_lifted(connection), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE partners_historicalpartner SET name = %s WHERE history_id = %s",
            ["After the release", version.pk],
        )
    result = verify()
    assert not result.ok
    assert result.findings[0].problem == "content_changed"
    assert result.findings[0].sequence == entry.sequence


def test_a_seal_naming_a_column_set_not_on_record_is_reported(db, monkeypatch):
    PartnerFactory()
    grow(monkeypatch, Partner.history.model)
    entry = AuditEntry.objects.filter(source="partners.historicalpartner").latest("sequence")
    with append_only_guard_lifted(connection), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_columnset WHERE digest = %s", [entry.column_set])
    result = verify()
    assert not result.ok
    assert result.findings[0].problem == "content_changed"
    assert "not on record" in result.findings[0].detail


def test_a_column_set_record_changed_no_longer_counts(db, monkeypatch):
    """Dropping a column from the recorded set would hide changes to it: the digest no longer
    matches the record, so the set is refused."""
    PartnerFactory()
    grow(monkeypatch, Partner.history.model)
    entry = AuditEntry.objects.filter(source="partners.historicalpartner").latest("sequence")
    recorded = ColumnSet.objects.get(digest=entry.column_set)
    fewer = [c for c in recorded.columns if c != "name"]
    with append_only_guard_lifted(connection), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_columnset SET columns = %s WHERE digest = %s",
            [chain.json.dumps(fewer), entry.column_set],
        )
    result = verify()
    assert not result.ok
    assert "not on record" in result.findings[0].detail


def test_a_signature_made_before_a_column_was_added_stays_valid(db, network, monkeypatch):
    lot = BatchFactory(
        product=ProductFactory(manufacturer=network.manufacturer), status=BatchStatus.QUARANTINE
    )
    decision = stock.batch_release(
        batch=lot, signer=network.qa, password=TEST_PASSWORD, reason="QA release"
    )
    grow(monkeypatch, Batch)
    assert signature_status(decision.signature) == SIGNATURE_VALID


@pytest.mark.parametrize("column", ["lot_number", "expires_on"])
def test_a_signed_column_changed_after_the_release_is_still_flagged(
    db, network, monkeypatch, column
):
    lot = BatchFactory(
        product=ProductFactory(manufacturer=network.manufacturer), status=BatchStatus.QUARANTINE
    )
    decision = stock.batch_release(
        batch=lot, signer=network.qa, password=TEST_PASSWORD, reason="QA release"
    )
    grow(monkeypatch, Batch)
    value = "X-CHANGED" if column == "lot_number" else "2099-01-01"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE batches_batch SET {column} = %s WHERE id = %s",  # noqa: S608 - fixed names
            [value, lot.pk],
        )
    assert signature_status(decision.signature) != SIGNATURE_VALID
