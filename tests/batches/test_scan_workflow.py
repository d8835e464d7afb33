"""The scan workflow at lot level: every refusal code by a scan that produces it, and the
lot-level actions (put-away, count with its QA approval, verify and decommission)."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit import chain
from batches import hooks, scanning
from batches import services as stock
from batches.models import (
    BatchStatus,
    CountDiscrepancy,
    CountStatus,
    MoveKind,
    ScanRecord,
    Serial,
    SerialState,
    StockBalance,
    StockMove,
)
from partners.models import Role
from pharmadms.exceptions import InvalidInput, NotFound, NotPermitted, RuleViolation
from tests.factories import (
    BatchFactory,
    ProductFactory,
    UserFactory,
    datamatrix,
    gtin14,
    sscc18,
)

GS = "\x1d"


def days(n: int) -> datetime.date:
    return timezone.localdate() + datetime.timedelta(days=n)


class Lots:
    """Acme's product with lots in every state, 100 units of each in Acme's storage."""


@pytest.fixture
def lots(network):
    s = Lots()
    s.net = network
    s.product = ProductFactory(manufacturer=network.manufacturer, name="Vaccine")
    s.good = BatchFactory(product=s.product, lot_number="GOOD1", expires_on=days(400))
    s.quarantined = BatchFactory(
        product=s.product, lot_number="QUAR1", expires_on=days(400), status=BatchStatus.QUARANTINE
    )
    s.rejected = BatchFactory(
        product=s.product, lot_number="REJ1", expires_on=days(400), status=BatchStatus.REJECTED
    )
    s.recalled = BatchFactory(
        product=s.product, lot_number="REC1", expires_on=days(400), status=BatchStatus.RECALLED
    )
    s.expired = BatchFactory(
        product=s.product, lot_number="EXP1", manufactured_on=days(-400), expires_on=days(-1)
    )
    for lot in (s.good, s.quarantined, s.rejected, s.recalled, s.expired):
        stock.stock_receive(
            batch=lot,
            location=network.manufacturer_storage,
            quantity=100,
            actor=network.warehouse,
            reason="opening stock",
        )
    return s


def code(lot, serial=None, *, expires_on=None, **kwargs) -> str:
    return datamatrix(
        lot.product.gtin, lot.lot_number, expires_on or lot.expires_on, serial, **kwargs
    )


def scan(user, text, action="verify", location=None, **kwargs):
    if location is None:
        location = user.partner.sites.first().locations.get(code="STORE")
    return scanning.scan_submit(actor=user, code=text, action=action, location=location, **kwargs)


def written() -> dict[str, int]:
    """Everything a scan may write besides its own record."""
    return {
        "moves": StockMove.objects.count(),
        "serials": Serial.objects.count(),
        "serial_history": Serial.history.count(),
        "counts": CountDiscrepancy.objects.count(),
        "on_hand": sum(StockBalance.objects.values_list("on_hand", flat=True)),
    }


def assert_refused(answer, code_: str) -> ScanRecord:
    record = answer.record
    assert record.verdict == "refused", record.reasons
    assert code_ in [reason["code"] for reason in record.reasons], record.reasons
    assert all(reason["detail"] for reason in record.reasons)
    assert record.warnings == []
    return record


# --- one refusal code, one scan ------------------------------------------------------------


@pytest.fixture
def hold_on_good_lot(lots, monkeypatch):
    """A hold check as coldchain registers one: the good lot is held for an excursion."""

    def excursion(batch, location):
        if batch.pk != lots.good.pk:
            return []
        return [hooks.Hold("excursion_hold", "excursion EX-7 on SH-2026-000009", "EX-7")]

    monkeypatch.setattr(hooks, "_checks", [excursion])


REFUSALS = {
    "empty_code": lambda s: "",
    "code_too_long": lambda s: "0" * 5000,
    "not_gs1": lambda s: "10D9T",
    "malformed_gs1": lambda s: f"]d201{s.product.gtin}17271331",
    "check_digit_invalid": lambda s: (
        f"]d201{s.product.gtin[:-1]}{(int(s.product.gtin[-1]) + 1) % 10}10GOOD1"
    ),
    "untrusted_digital_link_host": lambda s: (
        f"https://scan.evil.example/01/{s.product.gtin}/10/GOOD1"
    ),
    "sscc_not_accepted": lambda s: f"00{sscc18(1)}",
    "no_trade_item": lambda s: "]d210GOOD1",
    "unknown_gtin": lambda s: datamatrix(gtin14(99_999), "GOOD1"),
    "lot_missing": lambda s: datamatrix(s.product.gtin),
    "lot_unknown": lambda s: datamatrix(s.product.gtin, "NOPE"),
    "expiry_mismatch": lambda s: code(s.good, expires_on=s.good.expires_on - datetime.timedelta(1)),
    "lot_expired": lambda s: code(s.expired),
    "lot_quarantined": lambda s: code(s.quarantined),
    "lot_rejected": lambda s: code(s.rejected),
    "lot_recalled": lambda s: code(s.recalled),
    "serial_unknown": lambda s: code(s.good, "NEVER1"),
    "quantity_mismatch": lambda s: f"{code(s.good)}{GS}3012",
}


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_each_refusal_code_is_produced_and_writes_only_the_scan(lots, refusal):
    before, records = written(), ScanRecord.objects.count()
    answer = scan(lots.net.warehouse, REFUSALS[refusal](lots), quantity=1)
    record = assert_refused(answer, refusal)
    assert written() == before
    assert ScanRecord.objects.count() == records + 1
    assert record.user == lots.net.warehouse
    assert record.partner == lots.net.manufacturer
    assert record.location == lots.net.manufacturer_storage
    assert chain.verify().ok


def test_an_excursion_hold_refuses_with_the_holds_code_and_detail(lots, hold_on_good_lot):
    record = assert_refused(scan(lots.net.warehouse, code(lots.good)), "excursion_hold")
    assert "EX-7" in record.reasons[0]["detail"]


def test_the_digital_link_host_refusal_matches_nothing(lots):
    answer = scan(lots.net.warehouse, REFUSALS["untrusted_digital_link_host"](lots))
    assert (answer.record.product, answer.record.batch) == (None, None)
    assert answer.record.parsed["host"] == "scan.evil.example"
    assert answer.record.parsed["lot"] == "GOOD1"  # read, reported, never matched


def test_a_trusted_digital_link_is_accepted(lots):
    answer = scan(
        lots.net.warehouse,
        f"https://id.gs1.org/01/{lots.product.gtin}/10/GOOD1?17={lots.good.expires_on:%y%m%d}",
    )
    assert answer.record.verdict == "accepted"
    assert answer.record.batch == lots.good


def test_every_reason_is_given_not_only_the_first(lots, hold_on_good_lot, monkeypatch):
    lots.good.status = BatchStatus.QUARANTINE
    lots.good._change_reason = "test: QA hold"
    lots.good.save()
    record = scan(lots.net.warehouse, code(lots.good)).record
    assert {reason["code"] for reason in record.reasons} == {"lot_quarantined", "excursion_hold"}


def test_a_serial_already_shipped_or_dispensed_is_refused(lots):
    shipped, dispensed = stock.serial_commission(
        batch=lots.good, serial_numbers=["S1", "S2"], actor=lots.net.warehouse, reason="labelled"
    )
    stock.serial_transition(
        serial=shipped,
        to_state=SerialState.SHIPPED,
        actor=lots.net.warehouse,
        reason="test",
        shipment_reference="SH-2026-000001",
    )
    stock.serial_transition(
        serial=dispensed, to_state=SerialState.DISPENSED, actor=lots.net.warehouse, reason="test"
    )
    assert_refused(scan(lots.net.warehouse, code(lots.good, "S2")), "serial_decommissioned")
    verified = scan(lots.net.warehouse, code(lots.good, "S1")).record
    assert verified.verdict == "accepted"
    assert [w["code"] for w in verified.warnings] == ["serial_in_transit"]


# --- malformed requests: 4xx, nothing recorded ---------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "error_code"),
    [
        ({"action": "dance"}, InvalidInput, "unknown_action"),
        ({"action": "count"}, InvalidInput, "quantity_required"),
        ({"action": "pick"}, InvalidInput, "reference_required"),
        ({"quantity": -1}, InvalidInput, "invalid_quantity"),
        ({"quantity": 0}, InvalidInput, "invalid_quantity"),
        ({"action": "pick", "decommission": "dispensed"}, InvalidInput, "reference_required"),
        ({"decommission": "stolen"}, InvalidInput, "invalid_decommission"),
    ],
)
def test_a_malformed_request_records_nothing(lots, kwargs, error, error_code):
    with pytest.raises(error) as refused:
        scan(lots.net.warehouse, code(lots.good), **kwargs)
    assert refused.value.code == error_code
    assert ScanRecord.objects.count() == 0


def test_another_partners_location_is_not_found(lots):
    with pytest.raises(NotFound):
        scan(lots.net.warehouse, code(lots.good), location=lots.net.other_storage)
    assert ScanRecord.objects.count() == 0


def test_a_role_that_does_not_scan_is_refused(lots):
    desk = UserFactory(partner=lots.net.manufacturer, role=Role.ORDER_DESK)
    with pytest.raises(NotPermitted):
        scan(desk, code(lots.good))
    with pytest.raises(NotPermitted):
        scan(lots.net.regulator, code(lots.good), location=lots.net.manufacturer_storage)


# --- idempotency ---------------------------------------------------------------------------


def test_the_same_scan_id_answers_the_first_record_and_acts_once(lots):
    first = scan(lots.net.warehouse, code(lots.good), "count", quantity=90, scan_id="c-1")
    again = scan(lots.net.warehouse, code(lots.good), "count", quantity=90, scan_id="c-1")
    assert (first.replayed, again.replayed) == (False, True)
    assert again.record.pk == first.record.pk
    assert ScanRecord.objects.count() == 1
    assert CountDiscrepancy.objects.count() == 1


def test_a_scan_id_reused_for_another_scan_is_refused(lots):
    scan(lots.net.warehouse, code(lots.good), scan_id="x-1")
    with pytest.raises(RuleViolation) as refused:
        scan(lots.net.warehouse, code(lots.quarantined), scan_id="x-1")
    assert refused.value.code == "scan_id_reused"


def test_scan_ids_are_per_user(lots):
    colleague = UserFactory(partner=lots.net.manufacturer, role=Role.WAREHOUSE_OPERATOR)
    scan(lots.net.warehouse, code(lots.good), scan_id="s-1")
    assert scan(colleague, code(lots.good), scan_id="s-1").replayed is False
    assert ScanRecord.objects.count() == 2


# --- the record ----------------------------------------------------------------------------


def test_the_raw_code_is_kept_escaped_and_bounded_with_its_length_and_digest(lots):
    text = code(lots.good) + "\x00" * 3000
    record = scan(lots.net.warehouse, text).record
    assert record.raw_length == len(text)
    assert len(record.raw_code) <= 600
    assert "\x00" not in record.raw_code
    assert record.raw_code.startswith("]d201")
    assert "<GS>" not in record.raw_code or GS not in record.raw_code
    assert len(record.raw_sha256) == 64


def test_scan_records_are_append_only_and_sealed(lots):
    from audit.history import HistoryBypassRefused

    record = scan(lots.net.warehouse, code(lots.good)).record
    with pytest.raises(HistoryBypassRefused):
        record.save()
    with pytest.raises(HistoryBypassRefused):
        ScanRecord.objects.filter(pk=record.pk).update(verdict="refused")
    with pytest.raises(HistoryBypassRefused):
        record.delete()
    assert chain.verify().ok


# --- put-away ------------------------------------------------------------------------------


def test_putaway_moves_from_the_receiving_location_into_storage(lots):
    net = lots.net
    lot = BatchFactory(product=lots.product, lot_number="NEW1", expires_on=days(300))
    stock.stock_receive(
        batch=lot,
        location=net.manufacturer_quarantine,
        quantity=10,
        actor=net.warehouse,
        reason="in",
    )
    record = scan(net.warehouse, code(lot), "putaway", quantity=4).record
    assert record.verdict == "accepted", record.reasons
    assert record.outcome["from"] == "QUAR"
    move = StockMove.objects.get(pk=record.outcome["move"])
    assert (move.kind, move.quantity, move.to_location) == (
        MoveKind.TRANSFER,
        4,
        net.manufacturer_storage,
    )
    assert_refused(
        scan(net.warehouse, code(lot), "putaway", location=net.manufacturer_quarantine),
        "not_a_storage_location",
    )
    assert_refused(scan(net.warehouse, code(lot), "putaway", quantity=7), "insufficient_stock")
    assert_refused(scan(net.warehouse, code(lots.good), "putaway"), "nothing_to_put_away")


# --- count ---------------------------------------------------------------------------------


def test_a_matching_count_is_accepted_and_changes_nothing(lots):
    before = written()
    record = scan(lots.net.warehouse, code(lots.good), "count", quantity=100).record
    assert record.verdict == "accepted"
    assert record.outcome == {"counted": 100, "on_hand": 100, "discrepancy": None}
    assert written() == before


def test_counts_include_blocked_and_expired_stock(lots):
    for lot in (lots.expired, lots.recalled, lots.quarantined):
        record = scan(lots.net.warehouse, code(lot), "count", quantity=100).record
        assert record.verdict == "accepted", record.reasons


def test_a_count_discrepancy_awaits_qa_and_approval_posts_the_adjustment(lots):
    net = lots.net
    record = scan(net.warehouse, code(lots.good), "count", quantity=97).record
    assert record.verdict == "accepted"
    assert [w["code"] for w in record.warnings] == ["count_discrepancy"]
    discrepancy = CountDiscrepancy.objects.get(pk=record.outcome["discrepancy"])
    assert (discrepancy.expected, discrepancy.counted, discrepancy.status) == (
        100,
        97,
        CountStatus.PENDING,
    )
    balance = StockBalance.objects.get(batch=lots.good, location=net.manufacturer_storage)
    assert balance.on_hand == 100  # nothing moves before QA
    assert_refused(scan(net.warehouse, code(lots.good), "count", quantity=96), "count_pending_qa")
    with pytest.raises(NotPermitted):
        stock.count_discrepancy_approve(discrepancy=discrepancy, actor=net.warehouse, reason="ok")
    approved = stock.count_discrepancy_approve(
        discrepancy=discrepancy, actor=net.qa, reason="three vials broken, found in the bin"
    )
    assert approved.status == CountStatus.APPROVED
    assert approved.adjustment.kind == MoveKind.ADJUSTMENT
    assert approved.adjustment.quantity == 3
    balance.refresh_from_db()
    assert balance.on_hand == 97
    with pytest.raises(RuleViolation) as again:
        stock.count_discrepancy_approve(discrepancy=discrepancy, actor=net.qa, reason="again")
    assert again.value.code == "count_already_decided"
    assert approved.history.count() == 2
    assert chain.verify().ok


def test_qa_does_not_approve_its_own_count_and_may_reject(lots):
    net = lots.net
    record = scan(net.qa, code(lots.good), "count", quantity=101).record
    discrepancy = CountDiscrepancy.objects.get(pk=record.outcome["discrepancy"])
    with pytest.raises(NotPermitted) as own:
        stock.count_discrepancy_approve(discrepancy=discrepancy, actor=net.qa, reason="mine")
    assert own.value.code == "self_approval"
    other_qa = UserFactory(partner=net.manufacturer, role=Role.QA_OFFICER)
    rejected = stock.count_discrepancy_reject(
        discrepancy=discrepancy, actor=other_qa, reason="recount the shelf"
    )
    assert rejected.status == CountStatus.REJECTED
    assert rejected.adjustment is None
    assert scan(net.qa, code(lots.good), "count", quantity=100).record.verdict == "accepted"


# --- verify and decommission ---------------------------------------------------------------


def test_verify_and_decommission_as_dispensed(lots):
    net = lots.net
    (serial,) = stock.serial_commission(
        batch=lots.good, serial_numbers=["PACK01"], actor=net.warehouse, reason="labelled"
    )
    verified = scan(net.warehouse, code(lots.good, "PACK01")).record
    assert verified.verdict == "accepted"
    assert verified.outcome == {"verified": True, "serial": "PACK01", "state": "commissioned"}
    assert verified.serial == serial
    moves = StockMove.objects.count()
    dispensed = scan(net.warehouse, code(lots.good, "PACK01"), decommission="dispensed").record
    assert dispensed.verdict == "accepted", dispensed.reasons
    serial.refresh_from_db()
    assert serial.state == SerialState.DISPENSED
    move = StockMove.objects.get(pk=dispensed.outcome["move"])
    assert (move.kind, move.quantity, move.to_location) == (MoveKind.DISPENSING, 1, None)
    assert StockMove.objects.count() == moves + 1
    again = scan(net.warehouse, code(lots.good, "PACK01"), decommission="dispensed")
    assert_refused(again, "serial_decommissioned")
    assert StockMove.objects.count() == moves + 1
    reasons = [row.history_change_reason for row in serial.history.order_by("history_id")]
    assert reasons[0] == "labelled"
    assert "dispensed" in reasons[-1]


def test_decommission_needs_a_serial_and_a_serial_is_one_pack(lots):
    assert_refused(
        scan(lots.net.warehouse, code(lots.good), decommission="dispensed"), "serial_missing"
    )
    stock.serial_commission(
        batch=lots.good, serial_numbers=["P9"], actor=lots.net.warehouse, reason="labelled"
    )
    assert_refused(scan(lots.net.warehouse, code(lots.good, "P9"), quantity=2), "invalid_quantity")
    warned = scan(lots.net.warehouse, code(lots.good)).record
    assert [w["code"] for w in warned.warnings] == ["no_serial"]


def test_a_serial_is_commissioned_once_per_lot(lots):
    stock.serial_commission(
        batch=lots.good, serial_numbers=["A1"], actor=lots.net.warehouse, reason="labelled"
    )
    with pytest.raises(RuleViolation) as duplicate:
        stock.serial_commission(
            batch=lots.good, serial_numbers=["A1"], actor=lots.net.warehouse, reason="again"
        )
    assert duplicate.value.code == "duplicate_serial"
    # the same number in another lot is another pack
    stock.serial_commission(
        batch=lots.quarantined, serial_numbers=["A1"], actor=lots.net.warehouse, reason="labelled"
    )
    with pytest.raises(NotPermitted):
        stock.serial_commission(
            batch=lots.good, serial_numbers=["B1"], actor=lots.net.wholesaler_qa, reason="not ours"
        )


def test_a_lots_packs_are_commissioned_together(lots):
    """A production lot's packs are registered at once: each validated and sealed with its
    history row, in as many statements for fifty packs as for two."""

    def commission(prefix: str, count: int) -> tuple[list, int]:
        with CaptureQueriesContext(connection) as captured:
            packs = stock.serial_commission(
                batch=lots.good,
                serial_numbers=[f"{prefix}{n:04d}" for n in range(count)],
                actor=lots.net.warehouse,
                reason="labelled",
            )
        return packs, len(captured)

    commission("W", 1)  # the first write of a model may read what later ones have kept
    two, few = commission("X", 2)
    fifty, many = commission("Y", 50)

    assert few == many
    assert [pack.serial_number for pack in fifty] == [f"Y{n:04d}" for n in range(50)]
    assert all(pack.pk and pack.state == SerialState.COMMISSIONED for pack in two + fifty)
    assert {pack.holder_id for pack in fifty} == {lots.good.product.manufacturer_id}
    first = fifty[0].history.get()
    assert (first.history_user, first.history_change_reason) == (lots.net.warehouse, "labelled")
    assert chain.verify().ok


def test_one_bad_serial_number_refuses_the_whole_commissioning(lots):
    with pytest.raises(InvalidInput) as refused:
        stock.serial_commission(
            batch=lots.good,
            serial_numbers=["OK1", "OK2", "NOT VALID"],  # AI 21 takes no space
            actor=lots.net.warehouse,
            reason="labelled",
        )
    assert "serial_number" in refused.value.detail
    assert not Serial.objects.filter(batch=lots.good).exists()


# --- allocation skips held lots --------------------------------------------------------------


def test_fefo_allocation_skips_a_held_lot(lots, hold_on_good_lot):
    other = BatchFactory(product=lots.product, lot_number="LATER", expires_on=days(600))
    stock.stock_receive(
        batch=other,
        location=lots.net.manufacturer_storage,
        quantity=50,
        actor=lots.net.warehouse,
        reason="in",
    )
    allocations = stock.stock_allocate(
        product=lots.product,
        quantity=30,
        locations=[lots.net.manufacturer_storage],
        reference="order-line:1",
        actor=lots.net.warehouse,
        reason="allocate",
    )
    assert [allocation.batch for allocation in allocations] == [other]
