"""The append-only guard holds in transactional tests too, and yields only to the test flush."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from batches import services
from batches.models import StockMove
from tests.factories import BatchFactory, ProductFactory


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", [1, 2])
def test_moves_posted_in_a_transactional_test_are_flushed_and_guarded(network, round_):
    """Two rounds: the second starts empty, so the flush after the first emptied the ledger."""
    assert not StockMove.objects.exists()
    lot = BatchFactory(product=ProductFactory(manufacturer=network.manufacturer))
    services.stock_receive(
        batch=lot,
        location=network.manufacturer_storage,
        quantity=5,
        actor=network.warehouse,
        reason="production output",
    )
    for sql in ("UPDATE batches_stockmove SET quantity = 6", "DELETE FROM batches_stockmove"):
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert StockMove.objects.get().quantity == 5
