"""Scans at shipment level: pick, ship and receive, through the scan workflow and its API.

Acme (the manufacturer) picks and ships to North Wholesale, which receives by scanning packs
or the SSCC of each case; the serialised packs go commissioned → shipped → received, and a
pack is never shipped twice.
"""

from __future__ import annotations

import pytest

from audit import chain
from audit.history import update_with_reason
from batches import scanning
from batches.models import ScanRecord, Serial, SerialState, StockMove
from orders import services
from orders.models import ShipmentLine, ShipmentStatus
from orders.scanning import SHIPMENT_HANDLERS
from tests.conftest import client_for
from tests.factories import datamatrix
from tests.orders.conftest import ledger_balanced, on_hand, planned_shipment, receive_whole

ACME_PREFIX = "4012345"


def code(lot, serial=None) -> str:
    return datamatrix(lot.product.gtin, lot.lot_number, lot.expires_on, serial)


def scan(user, text, action, location, reference="", **kwargs):
    return scanning.scan_submit(
        actor=user,
        code=text,
        action=action,
        location=location,
        reference=reference,
        handlers=SHIPMENT_HANDLERS,
        **kwargs,
    ).record


def pick(t, shipment, lot, quantity=None, serial=None, **kwargs):
    return scan(
        t.seller_warehouse,
        code(lot, serial),
        "pick",
        kwargs.pop("location", t.net.manufacturer_storage),
        shipment.number,
        quantity=quantity,
        **kwargs,
    )


def ship(t, shipment, lot, quantity=None, serial=None):
    return scan(
        t.seller_warehouse,
        code(lot, serial),
        "ship",
        t.net.manufacturer_storage,
        shipment.number,
        quantity=quantity,
    )


def receive(t, text, reference="", **kwargs):
    return scan(t.buyer_warehouse, text, "receive", t.net.wholesaler_storage, reference, **kwargs)


def codes(record) -> list[str]:
    return [reason["code"] for reason in record.reasons]


def dispatch(t, shipment):
    return services.shipment_dispatch(shipment=shipment, actor=t.seller_warehouse, reason="truck")


# --- pick ----------------------------------------------------------------------------------


def test_a_pick_scan_confirms_the_allocated_lot(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    record = pick(t, shipment, t.lot_200, 40)
    assert record.verdict == "accepted", record.reasons
    assert record.outcome == {
        "shipment": shipment.number,
        "shipment_status": "planned",
        "picked": 40,
        "of": 40,
    }
    record = pick(t, shipment, t.lot_400, 10)
    assert record.outcome["shipment_status"] == ShipmentStatus.PICKED


@pytest.mark.parametrize(
    ("case", "refusal"),
    [
        ("lot not on the shipment", "not_allocated_lot"),
        ("wrong location", "wrong_location"),
        ("more than expected", "quantity_exceeds_expected"),
        ("expired lot", "lot_expired"),
        ("recalled lot", "lot_recalled"),
        ("unknown shipment", "unknown_shipment"),
    ],
)
def test_a_wrong_pick_is_refused_and_changes_nothing(shipping, case, refusal):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    lot, kwargs, reference = t.lot_200, {"quantity": 5}, shipment.number
    if case == "lot not on the shipment":
        lot = t.lot_600
    elif case == "wrong location":
        kwargs["location"] = t.net.manufacturer_quarantine
    elif case == "more than expected":
        kwargs["quantity"] = 41
    elif case == "expired lot":
        lot = t.lot_expired
    elif case == "recalled lot":
        lot = next(bad for bad in t.bad_lots if bad.lot_number == "VREC")
    else:
        reference = "SH-2099-000001"
    before = (ShipmentLine.history.count(), Serial.history.count(), StockMove.objects.count())
    record = scan(
        t.seller_warehouse,
        code(lot),
        "pick",
        kwargs.pop("location", t.net.manufacturer_storage),
        reference,
        **kwargs,
    )
    assert record.verdict == "refused"
    assert refusal in codes(record), record.reasons
    assert (ShipmentLine.history.count(), Serial.history.count(), StockMove.objects.count()) == (
        before
    )


def test_an_accepted_pick_sent_twice_changes_the_shipment_once(shipping):
    """The same scan_id twice: the first answer comes back, the line is picked once."""
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    first = pick(t, shipment, t.lot_200, 10, scan_id="hand-7:0001")
    versions = ShipmentLine.history.count()
    again = pick(t, shipment, t.lot_200, 10, scan_id="hand-7:0001")
    assert again.pk == first.pk
    assert ShipmentLine.history.count() == versions
    line = shipment.lines.get(batch=t.lot_200)
    assert line.picked_quantity == 10
    assert ScanRecord.objects.filter(action="pick").count() == 1


# --- serials: commissioned at the manufacturer's pick, never shipped twice ------------------


def test_a_serialised_pack_is_never_shipped_twice(shipping):
    t = shipping
    first = planned_shipment(t, (t.vaccine, 50))
    record = pick(t, first, t.lot_200, serial="PACK-1")
    assert record.verdict == "accepted", record.reasons
    serial = Serial.objects.get(batch=t.lot_200, serial_number="PACK-1")
    assert (serial.state, serial.shipment_reference) == (SerialState.COMMISSIONED, first.number)
    assert serial.holder == t.seller
    assert first.lines.get(batch=t.lot_200).serials == ["PACK-1"]

    second = planned_shipment(t, (t.vaccine, 30))
    taken = pick(t, second, t.lot_400, serial="PACK-1")  # another lot: another pack
    assert taken.verdict == "accepted"
    again = pick(t, second, t.lot_200, serial="PACK-1")
    assert codes(again) == ["serial_already_picked"]

    shipped = ship(t, first, t.lot_200, serial="PACK-1")
    assert shipped.verdict == "accepted", shipped.reasons
    serial.refresh_from_db()
    assert serial.state == SerialState.SHIPPED
    assert codes(ship(t, first, t.lot_200, serial="PACK-1")) == ["serial_already_shipped"]
    assert codes(pick(t, second, t.lot_200, serial="PACK-1")) == ["serial_already_shipped"]
    assert serial.history.count() == 3  # commissioned, picked for, shipped


def test_a_wholesaler_never_commissions_a_pack(shipping):
    """Only the manufacturer's pick registers an unknown serial; anyone else's is suspect."""
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    pick(t, shipment, t.lot_200, 40)
    pick(t, shipment, t.lot_400, 10)
    dispatch(t, shipment)
    record = receive(t, code(t.lot_200, "NEVER-SEEN"), shipment.number)
    assert codes(record) == ["serial_unknown"]


def test_ship_confirms_no_more_than_was_picked(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    assert codes(ship(t, shipment, t.lot_200, 1)) == ["not_picked"]
    pick(t, shipment, t.lot_200, 30)
    assert ship(t, shipment, t.lot_200, 20).outcome["confirmed"] == 20
    assert ship(t, shipment, t.lot_200, 10).outcome == {
        "shipment": shipment.number,
        "shipment_status": "planned",
        "confirmed": 30,
        "of": 30,
    }
    assert codes(ship(t, shipment, t.lot_200, 1)) == ["quantity_exceeds_expected"]
    assert codes(ship(t, shipment, t.lot_600, 1)) == ["not_allocated_lot"]


# --- receive -------------------------------------------------------------------------------


def picked_and_dispatched(t, *serials):
    shipment = planned_shipment(t, (t.vaccine, 50))
    for serial in serials:
        assert pick(t, shipment, t.lot_200, serial=serial).verdict == "accepted"
    pick(t, shipment, t.lot_200, 40 - len(serials))
    pick(t, shipment, t.lot_400, 10)
    dispatch(t, shipment)
    shipment.refresh_from_db()
    return shipment


def test_receiving_pack_scans_posts_the_receipt_when_everything_is_counted(shipping):
    t = shipping
    shipment = picked_and_dispatched(t, "P-1", "P-2")
    first = receive(t, code(t.lot_200, "P-1"), shipment.number)
    assert first.verdict == "accepted", first.reasons
    assert first.outcome["complete"] is False
    assert Serial.objects.get(serial_number="P-1").state == SerialState.RECEIVED
    assert Serial.objects.get(serial_number="P-1").holder == t.buyer
    assert on_hand(t.lot_200, t.net.wholesaler_storage) == 0  # nothing posted yet

    assert codes(receive(t, code(t.lot_200), shipment.number, quantity=40)) == [
        "quantity_exceeds_expected"
    ]
    assert codes(receive(t, code(t.lot_600), shipment.number)) == ["lot_not_expected"]
    assert codes(receive(t, code(t.lot_200), "SH-2099-000009")) == ["unknown_shipment"]
    assert codes(receive(t, code(t.lot_200, "P-1"), shipment.number)) == ["serial_already_received"]

    assert receive(t, code(t.lot_200), shipment.number, quantity=39).verdict == "accepted"
    last = receive(t, code(t.lot_400), shipment.number, quantity=10)
    assert last.verdict == "accepted", last.reasons
    assert last.outcome["complete"] is True
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.RECEIVED
    assert on_hand(t.lot_200, t.net.wholesaler_storage) == 40
    assert on_hand(t.lot_400, t.net.wholesaler_storage) == 10
    p2 = Serial.objects.get(serial_number="P-2")
    assert (p2.state, p2.holder, p2.shipment_reference) == (SerialState.RECEIVED, t.buyer, "")
    assert codes(receive(t, code(t.lot_200), shipment.number)) == ["already_received"]
    assert ledger_balanced()
    assert chain.verify().ok


def test_the_receiving_wholesaler_verifies_and_dispenses_the_pack(shipping):
    """DSCSA/FMD verification inside the platform: the pack's serial is known and received."""
    t = shipping
    shipment = picked_and_dispatched(t, "P-9")
    receive(t, code(t.lot_200), shipment.number, quantity=40)
    receive(t, code(t.lot_400), shipment.number, quantity=10)
    storage = t.net.wholesaler_storage
    verified = scan(t.buyer_warehouse, code(t.lot_200, "P-9"), "verify", storage)
    assert verified.verdict == "accepted", verified.reasons
    assert verified.outcome["state"] == SerialState.RECEIVED
    dispensed = scan(
        t.buyer_warehouse, code(t.lot_200, "P-9"), "verify", storage, decommission="dispensed"
    )
    assert dispensed.verdict == "accepted", dispensed.reasons
    assert on_hand(t.lot_200, storage) == 39
    refused = scan(t.buyer_warehouse, code(t.lot_200, "P-9"), "verify", storage)
    assert codes(refused) == ["serial_decommissioned"]
    assert ledger_balanced()


@pytest.fixture
def prefixed(shipping):
    t = shipping
    update_with_reason(
        t.seller,
        actor=t.net.admin,
        reason="test: GS1 membership",
        changes={"gs1_company_prefix": ACME_PREFIX},
        editable={"gs1_company_prefix"},
    )
    return t


def test_picked_packs_follow_a_dispatch_and_a_receipt_made_without_scanning(shipping):
    """Packs reserved by pick scans are shipped by the dispatch and received by the receipt
    even when nobody scans them again (dispatch and receipt through the API or the pages)."""
    t = shipping
    shipment = picked_and_dispatched(t, "A-1", "A-2")
    for number in ("A-1", "A-2"):
        pack = Serial.objects.get(serial_number=number)
        assert (pack.state, pack.holder, pack.shipment_reference) == (
            SerialState.SHIPPED,
            t.seller,
            shipment.number,
        )

    receive_whole(t, shipment, reason="checked in at the dock")

    for number in ("A-1", "A-2"):
        pack = Serial.objects.get(serial_number=number)
        assert (pack.state, pack.holder, pack.shipment_reference) == (
            SerialState.RECEIVED,
            t.buyer,
            "",
        )
        assert [v.state for v in pack.history.order_by("history_id")] == [
            SerialState.COMMISSIONED,
            SerialState.COMMISSIONED,  # picked for the shipment
            SerialState.SHIPPED,
            SerialState.RECEIVED,
        ]
    verified = scan(t.buyer_warehouse, code(t.lot_200, "A-1"), "verify", t.net.wholesaler_storage)
    assert verified.verdict == "accepted", verified.reasons
    assert verified.warnings == []  # received: not "in transit"
    assert chain.verify().ok


def test_packs_of_a_line_received_short_stay_shipped_until_scanned_in(shipping):
    """Which packs of a short or damaged line arrived is known only by scanning them."""
    t = shipping
    shipment = picked_and_dispatched(t, "B-1")
    lines = {line.batch_id: line for line in shipment.lines.all()}
    services.shipment_receive(
        shipment=shipment,
        lines=[
            {"line": lines[t.lot_200.pk].pk, "received_quantity": 39, "damaged_quantity": 1},
            {"line": lines[t.lot_400.pk].pk, "received_quantity": 10, "damaged_quantity": 0},
        ],
        actor=t.buyer_warehouse,
        reason="one case crushed",
    )
    pack = Serial.objects.get(serial_number="B-1")
    assert (pack.state, pack.holder) == (SerialState.SHIPPED, t.seller)
    moves = StockMove.objects.count()

    # Scanned at the buyer's dock, the pack is there: it passes into the buyer's custody.
    identified = receive(t, code(t.lot_200, "B-1"), shipment.number)
    assert identified.verdict == "accepted", identified.reasons
    assert identified.outcome == {
        "shipment": shipment.number,
        "serial": "B-1",
        "identified_after_receipt": True,
        "receipt_posted": False,
    }
    pack.refresh_from_db()
    assert (pack.state, pack.holder, pack.shipment_reference) == (
        SerialState.RECEIVED,
        t.buyer,
        "",
    )
    assert StockMove.objects.count() == moves  # its unit was booked by the receipt
    assert codes(receive(t, code(t.lot_200, "B-1"), shipment.number)) == ["serial_already_received"]
    assert codes(receive(t, code(t.lot_200), shipment.number)) == ["already_received"]


def test_a_ship_scan_and_the_dispatch_ship_a_pack_once(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    pick(t, shipment, t.lot_200, serial="C-1")
    pick(t, shipment, t.lot_200, 39)
    pick(t, shipment, t.lot_400, 10)
    assert ship(t, shipment, t.lot_200, serial="C-1").verdict == "accepted"
    dispatch(t, shipment)
    pack = Serial.objects.get(serial_number="C-1")
    assert pack.state == SerialState.SHIPPED
    assert pack.history.filter(state=SerialState.SHIPPED).count() == 1


def test_an_sscc_scan_receives_everything_packed_under_it(prefixed):
    t = prefixed
    shipment = planned_shipment(t, (t.vaccine, 50))
    pick(t, shipment, t.lot_200, 40)
    pick(t, shipment, t.lot_400, 10)
    lines = {line.batch_id: line for line in shipment.lines.all()}
    case_1 = services.shipment_pack(
        shipment=shipment,
        contents=[(lines[t.lot_200.pk], 30)],
        actor=t.seller_warehouse,
        reason="case 1",
    )
    case_2 = services.shipment_pack(
        shipment=shipment,
        contents=[(lines[t.lot_200.pk], 10), (lines[t.lot_400.pk], 10)],
        actor=t.seller_warehouse,
        reason="case 2",
    )
    dispatch(t, shipment)

    first = receive(t, f"]C100{case_1.sscc}")
    assert first.verdict == "accepted", first.reasons
    assert first.outcome["units"] == {str(t.lot_200.pk): 30}
    assert first.outcome["complete"] is False
    assert codes(receive(t, f"00{case_1.sscc}")) == ["package_already_received"]
    assert codes(receive(t, case_2.sscc, "SH-2099-000001")) == ["package_not_on_shipment"]
    assert codes(receive(t, f"00{case_2.sscc}", quantity=5)) == ["quantity_mismatch"]

    last = receive(t, case_2.sscc)  # 18 bare digits: an SSCC
    assert last.verdict == "accepted", last.reasons
    assert last.outcome["complete"] is True
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.RECEIVED
    assert on_hand(t.lot_200, t.net.wholesaler_storage) == 40
    assert on_hand(t.lot_400, t.net.wholesaler_storage) == 10
    assert ledger_balanced()


def test_an_unknown_or_foreign_sscc_is_refused(prefixed):
    t = prefixed
    shipment = planned_shipment(t, (t.vaccine, 50))
    pick(t, shipment, t.lot_200, 40)
    package = services.shipment_pack(
        shipment=shipment,
        contents=[(shipment.lines.get(batch=t.lot_200), 40)],
        actor=t.seller_warehouse,
        reason="case",
    )
    outsider = scan(t.net.other_user, package.sscc, "receive", t.net.other_storage, "")
    assert codes(outsider) == ["unknown_sscc"]
    assert codes(receive(t, package.sscc)) == ["not_dispatched"]


# --- the API -------------------------------------------------------------------------------


def test_a_pick_over_the_api_answers_the_verdict_and_is_idempotent(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    client = client_for(t.seller_warehouse)
    body = {
        "code": code(t.lot_200),
        "action": "pick",
        "location": t.net.manufacturer_storage.pk,
        "reference": shipment.number,
        "quantity": 5,
        "scan_id": "station-1:42",
    }
    first = client.post("/api/v1/scans/", body, format="json")
    assert first.status_code == 200, first.content
    assert first.json()["verdict"] == "accepted"
    assert first.json()["replayed"] is False
    again = client.post("/api/v1/scans/", body, format="json")
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["id"] == first.json()["id"]
    assert shipment.lines.get(batch=t.lot_200).picked_quantity == 5

    wrong = client.post("/api/v1/scans/", {**body, "code": code(t.lot_600), "scan_id": "s:2"})
    assert wrong.status_code == 200
    assert wrong.json()["verdict"] == "refused"
    assert wrong.json()["reasons"][0]["code"] == "not_allocated_lot"
    assert wrong.json()["lot"]["lot_number"] == "V600"
