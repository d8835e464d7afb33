"""The chain under real concurrency: 20 transactions seal their writes at once on PostgreSQL.

Each append takes the chain head under ``SELECT … FOR UPDATE``, so concurrent writers queue and
the chain stays one line. Twenty threads start together behind a barrier, each in its own
connection (closed at the end), each writing regulated rows through the services: it changes its
own partner several times, registers a lot, and posts stock into a location all of them share.
Meanwhile an inspector runs ``verify()`` over and over: a chain read while it grows must verify
clean. Afterwards the chain is one line: sequences 1…N without a gap, no previous hash used
twice, every history row, stock move and signature sealed exactly once, and ``verify()`` is ok.

SQLite serialises writers on the whole file, so only PostgreSQL's row locks are put to the test.
"""

from __future__ import annotations

import datetime
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone

from audit.chain import EVENT, sealed_models, verify
from audit.history import save_with_reason
from audit.models import AuditEntry, ChainHead
from batches import services as stock
from batches.models import Batch, StockMove
from partners.models import LocationKind, Partner, PartnerKind, Role
from tests.factories import (
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
CHANGES_EACH = 3  # partner changes per thread, each its own transaction
RECEIPTS_EACH = 2  # stock receipts per thread into the shared location
JOIN_TIMEOUT_SECONDS = 120


@dataclass
class Outcome:
    errors: dict[int, BaseException] = field(default_factory=dict)
    broken_reads: list[dict] = field(default_factory=list)
    reads: int = 0


@pytest.fixture
def place():
    """A manufacturer with a QA officer, a warehouse operator, a product, a storage location and
    a released lot, and one wholesaler per thread (all committed: the threads see them)."""
    manufacturer = PartnerFactory(kind=PartnerKind.MANUFACTURER)
    site = SiteFactory(partner=manufacturer)
    today = timezone.localdate()

    place = SimpleNamespace(
        qa=UserFactory(partner=manufacturer, role=Role.QA_OFFICER),
        operator=UserFactory(partner=manufacturer, role=Role.WAREHOUSE_OPERATOR),
        product=ProductFactory(manufacturer=manufacturer),
        storage=LocationFactory(site=site, code="STORE", kind=LocationKind.STORAGE),
        wholesalers=[PartnerFactory(kind=PartnerKind.WHOLESALER) for _ in range(THREADS)],
        manufactured_on=today - datetime.timedelta(days=10),
        expires_on=today + datetime.timedelta(days=365),
    )
    place.shared_lot = stock.batch_create(
        product=place.product,
        lot_number="SHARED",
        manufactured_on=place.manufactured_on,
        expires_on=place.expires_on,
        actor=place.qa,
        reason="shared lot",
    )
    return place


def write(i: int, place) -> None:
    """One thread's writes, each service call its own transaction."""
    partner = Partner.objects.get(pk=place.wholesalers[i].pk)
    for change in range(CHANGES_EACH):
        partner.contact_phone = f"+49 89 {i:03d}{change:04d}"
        save_with_reason(
            partner,
            actor=place.qa,
            reason=f"thread {i} change {change}",
            update_fields=["contact_phone"],
        )
    stock.batch_create(
        product=place.product,
        lot_number=f"T{i:02d}",
        manufactured_on=place.manufactured_on,
        expires_on=place.expires_on,
        actor=place.qa,
        reason=f"thread {i} lot",
    )
    for receipt in range(RECEIPTS_EACH):
        stock.stock_receive(
            batch=place.shared_lot,
            location=place.storage,
            quantity=1,
            actor=place.operator,
            reason=f"thread {i} receipt {receipt}",
        )


def race(place) -> Outcome:
    """Start the writers at the same instant, and an inspector verifying while they write."""
    outcome = Outcome()
    barrier = threading.Barrier(THREADS + 1)
    done = threading.Event()

    def writer(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            write(i, place)
        except BaseException as error:  # every outcome is recorded and judged by the test
            outcome.errors[i] = error
        finally:
            connection.close()

    def inspector() -> None:
        try:
            barrier.wait(timeout=30)
            while True:
                finished = done.is_set()  # one more full read after the writers are done
                result = verify()
                outcome.reads += 1
                if not result.ok:
                    outcome.broken_reads.append(result.as_dict())
                if finished:
                    break
        except BaseException as error:
            outcome.errors[-1] = error
        finally:
            connection.close()

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(THREADS)]
    reader = threading.Thread(target=inspector)
    for thread in [reader, *writers]:
        thread.start()
    for thread in writers:
        thread.join(timeout=JOIN_TIMEOUT_SECONDS)
    done.set()
    reader.join(timeout=JOIN_TIMEOUT_SECONDS)
    assert not any(t.is_alive() for t in [*writers, reader]), "a thread hung (lock wait?)"
    return outcome


def test_concurrent_writers_keep_one_unbroken_chain(place):
    entries_before = AuditEntry.objects.count()

    # when
    outcome = race(place)

    # then: every writer succeeded, and the inspector never saw a broken chain
    assert {i: repr(error) for i, error in outcome.errors.items()} == {}
    assert outcome.broken_reads == []
    assert outcome.reads >= 2

    # ... all the writes are there
    assert Partner.history.filter(history_change_reason__startswith="thread ").count() == (
        THREADS * CHANGES_EACH
    )
    assert Batch.objects.filter(lot_number__startswith="T").count() == THREADS
    assert StockMove.objects.filter(reason__startswith="thread ").count() == (
        THREADS * RECEIPTS_EACH
    )
    written = THREADS * (CHANGES_EACH + 1 + RECEIPTS_EACH)
    assert AuditEntry.objects.count() == entries_before + written

    # ... in one line: 1…N without a gap, each previous hash used once, the head at the end
    sequences = list(AuditEntry.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))
    previous = Counter(AuditEntry.objects.values_list("previous_hash", flat=True))
    assert [h for h, uses in previous.items() if uses > 1] == []
    last = AuditEntry.objects.order_by("sequence").last()
    head = ChainHead.objects.get(pk=1)
    assert (head.sequence, head.head_hash) == (last.sequence, last.entry_hash)

    # ... every history row, move and signature sealed exactly once
    for model in sealed_models():
        label = model._meta.label_lower
        seals = Counter(AuditEntry.objects.filter(source=label).values_list("record_id", flat=True))
        rows = set(model._base_manager.values_list("pk", flat=True))
        assert set(seals) == rows, label
        assert [pk for pk, count in seals.items() if count > 1] == [], label
    assert not AuditEntry.objects.exclude(source=EVENT).filter(record_id__isnull=True).exists()

    result = verify()
    assert result.ok, result.as_dict()
    assert result.checked == len(sequences)
