"""Scans racing on PostgreSQL: one pick sent twice at the same instant with the same scan_id
(a handheld retrying) answers one record and picks once; two receipt scans of one shipment
are counted one after the other, so the receipt is posted exactly once."""

from __future__ import annotations

import pytest
from django.db import connection

from audit import chain
from batches.models import ScanRecord, StockMove
from orders.models import Shipment, ShipmentLine, ShipmentStatus
from tests.orders.conftest import ledger_balanced, on_hand, planned_shipment
from tests.orders.test_scanning import code, dispatch, pick, receive
from tests.orders.test_shipment_concurrency_postgres import race

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: set DATABASE_URL=postgres://...",
    ),
]


def test_the_same_pick_sent_twice_at_once_picks_once(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    versions = ShipmentLine.history.count()

    def send():
        return pick(t, Shipment.objects.get(pk=shipment.pk), t.lot_200, 7, scan_id="hh-1:99")

    results, errors = race([send, send])

    assert errors == []
    assert len({record.pk for record in results}) == 1
    assert ScanRecord.objects.filter(scan_id="hh-1:99").count() == 1
    assert shipment.lines.get(batch=t.lot_200).picked_quantity == 7
    assert ShipmentLine.history.count() == versions + 1
    assert chain.verify().ok


def test_two_last_receipt_scans_racing_post_the_receipt_once(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    pick(t, shipment, t.lot_200, 40)
    pick(t, shipment, t.lot_400, 10)
    dispatch(t, shipment)
    receive(t, code(t.lot_200), shipment.number, quantity=40)
    moves = StockMove.objects.count()

    def last():
        return receive(t, code(t.lot_400), shipment.number, quantity=10)

    results, errors = race([last, last])

    assert errors == []
    verdicts = sorted(record.verdict for record in results)
    assert verdicts == ["accepted", "refused"]
    (refused,) = [record for record in results if record.verdict == "refused"]
    assert refused.reasons[0]["code"] in {"already_received", "quantity_exceeds_expected"}
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.RECEIVED
    assert on_hand(t.lot_400, t.net.wholesaler_storage) == 10
    assert StockMove.objects.count() == moves + 2  # one delivery move per line, once
    assert ledger_balanced()
    assert chain.verify().ok
