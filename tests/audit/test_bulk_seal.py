"""A bulk write's history rows are sealed together (chain.append_many): the statements do not
grow with the rows, and the chain is the one that sealing them one by one would have built."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit import chain
from audit.history import bulk_create_with_reason, bulk_update_with_reason
from audit.models import AuditAction, AuditEntry, ChainHead
from partners.models import Partner, PartnerKind
from tests.factories import PartnerFactory, UserFactory, gln


@pytest.fixture
def admin(db):
    return UserFactory(username="importer", is_superuser=True, is_staff=True)


def pharmacies(first: int, count: int) -> list[Partner]:
    """Unsaved pharmacies with GLNs of their own, for a bulk write."""
    return [
        PartnerFactory.build(name=f"Pharmacy {n}", kind=PartnerKind.PHARMACY, gln=gln(810_000 + n))
        for n in range(first, first + count)
    ]


def entries_after(sequence: int) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(sequence__gt=sequence).order_by("sequence"))


def event(what: str) -> None:
    chain.record_event(action=AuditAction.LOGIN, reason=what, detail={"what": what})


def head() -> ChainHead:
    return ChainHead.objects.get(pk=1)


def test_a_bulk_write_is_sealed_row_by_row_in_order_and_verifies(admin):
    event("before")  # the chain has a head to go on from
    start = head()

    created = bulk_create_with_reason(pharmacies(0, 5), actor=admin, reason="import")

    entries = entries_after(start.sequence)
    history = [Partner.history.get(id=partner.pk) for partner in created]
    assert [e.sequence for e in entries] == list(range(start.sequence + 1, start.sequence + 6))
    assert [(e.source, e.record_id) for e in entries] == [
        ("partners.historicalpartner", row.pk) for row in history
    ]
    assert [e.content_hash for e in entries] == [
        chain.content_hash(chain.row_content(row)) for row in history
    ]
    sealed_as = {(e.username, e.reason, e.action) for e in entries}
    assert sealed_as == {("importer", "import", "created")}
    # Each links to the one before; the head stands on the last two.
    assert [e.previous_hash for e in entries] == [start.head_hash] + [
        e.entry_hash for e in entries[:-1]
    ]
    assert (head().sequence, head().previous_hash, head().head_hash) == (
        entries[-1].sequence,
        entries[-2].entry_hash,
        entries[-1].entry_hash,
    )
    assert chain.verify().ok, chain.verify().as_dict()

    # The chain goes on from there, one by one and in bulk alike.
    event("after")
    for partner in created:
        partner.region = "DE-BY"
    bulk_update_with_reason(created, ["region"], actor=admin, reason="regions merged")
    assert chain.verify().ok, chain.verify().as_dict()


def test_a_bulk_seal_takes_as_many_statements_for_two_rows_as_for_forty(admin):
    def statements(first: int, count: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            bulk_create_with_reason(pharmacies(first, count), actor=admin, reason="import")
        return len(captured)

    statements(0, 1)  # the first write of a model may read what later ones have kept
    start = head().sequence
    assert statements(100, 2) == statements(200, 40)
    assert len(entries_after(start)) == 42
    assert chain.verify().ok


def test_more_rows_than_one_statement_takes_are_sealed_in_parts(admin, monkeypatch):
    columns = len(chain._COLUMNS)
    monkeypatch.setattr(connection.features, "max_query_params", 3 * columns)  # 3 rows a part

    start = head().sequence

    with CaptureQueriesContext(connection) as captured:
        bulk_create_with_reason(pharmacies(0, 7), actor=admin, reason="import")

    inserts = [q for q in captured if q["sql"].startswith("INSERT INTO audit_auditentry")]
    assert len(inserts) == 3  # 3 + 3 + 1
    assert [e.sequence for e in entries_after(start)] == list(range(start + 1, start + 8))
    assert chain.verify().ok, chain.verify().as_dict()


def test_sealing_nothing_is_refused():
    with pytest.raises(ValueError, match="nothing to seal"):
        chain.append_many([])
