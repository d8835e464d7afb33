"""Picking and packing a shipment (the services the scan workflow calls), and the carrier's
delivery confirmation: planned → picked → dispatched → delivered → received."""

from __future__ import annotations

import pytest
from biip.sscc import Sscc

from audit.history import update_with_reason
from batches import hooks
from batches.models import AllocationStatus, MoveKind, StockAllocation, StockMove
from orders import services
from orders.models import (
    OrderStatus,
    ShipmentLine,
    ShipmentPackage,
    ShipmentPackageLine,
    ShipmentStatus,
    SsccCounter,
)
from partners.models import PartnerKind, Role
from pharmadms.exceptions import InvalidInput, NotFound, NotPermitted, RuleViolation
from tests.factories import PartnerFactory, UserFactory
from tests.orders.conftest import (
    allocated_units,
    ledger_balanced,
    on_hand,
    planned_shipment,
    receive_whole,
)

ACME_PREFIX = "4012345"


def pick(t, shipment, batch, quantity, location=None, **kwargs):
    return services.shipment_pick(
        shipment=shipment,
        batch=batch,
        quantity=quantity,
        location=location or t.net.manufacturer_storage,
        actor=kwargs.pop("actor", t.seller_warehouse),
        reason="picked by scan",
        **kwargs,
    )


def lines_by_lot(shipment) -> dict[str, ShipmentLine]:
    return {line.batch.lot_number: line for line in shipment.lines.select_related("batch")}


def dispatch(t, shipment):
    return services.shipment_dispatch(shipment=shipment, actor=t.seller_warehouse, reason="truck")


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


@pytest.fixture
def hold_registry():
    """Register a hold check for one test and take it away afterwards."""
    registered = []

    def register(check):
        hooks.register_hold_check(check)
        registered.append(check)

    yield register
    for check in registered:
        hooks._checks.remove(check)


# --- picking ---------------------------------------------------------------------------------


def test_picking_every_line_makes_the_shipment_picked_and_moves_no_stock(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50), (t.insulin, 4))
    moves = StockMove.objects.count()
    lines = lines_by_lot(shipment)

    line = pick(t, shipment, t.lot_200, 25)
    assert line.picked_quantity == 25
    pick(t, shipment, t.lot_200, 15, serials=[f"S{n}" for n in range(15)])
    pick(t, shipment, t.lot_400, 10)
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.PLANNED  # insulin not yet picked
    pick(t, shipment, t.lot_insulin, 4)

    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.PICKED
    lines = lines_by_lot(shipment)
    assert {lot: line.picked_quantity for lot, line in lines.items()} == {
        "V200": 40,
        "V400": 10,
        "I1": 4,
    }
    assert lines["V200"].serials == [f"S{n}" for n in range(15)]
    assert StockMove.objects.count() == moves  # picking moves nothing
    assert lines["V200"].history.first().history_change_reason == "picked by scan"


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("lot not on the shipment", "not_allocated_lot"),
        ("wrong location", "wrong_location"),
        ("more than needed", "quantity_exceeds_expected"),
        ("shipment dispatched", "invalid_transition"),
    ],
)
def test_a_wrong_pick_is_refused_and_writes_nothing(shipping, case, code):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    kwargs = {"batch": t.lot_200, "quantity": 5}
    if case == "lot not on the shipment":
        kwargs["batch"] = t.lot_600
    elif case == "wrong location":
        kwargs["location"] = t.net.manufacturer_quarantine
    elif case == "more than needed":
        pick(t, shipment, t.lot_200, 38)
        kwargs["quantity"] = 3
    else:
        dispatch(t, shipment)
    before = ShipmentLine.history.count()

    with pytest.raises(RuleViolation) as refused:
        pick(t, shipment, **kwargs)

    assert refused.value.code == code
    assert ShipmentLine.history.count() == before


def test_pick_refusals_for_bad_input_and_wrong_people(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 10))
    with pytest.raises(InvalidInput) as refused:
        pick(t, shipment, t.lot_200, 0)
    assert refused.value.code == "invalid_quantity"
    with pytest.raises(InvalidInput) as refused:
        pick(t, shipment, t.lot_200, 2, serials=["A"])
    assert refused.value.code == "serials_mismatch"
    pick(t, shipment, t.lot_200, 1, serials=["A"])
    with pytest.raises(RuleViolation) as refused:
        pick(t, shipment, t.lot_200, 1, serials=["A"])
    assert refused.value.code == "duplicate_serial"
    with pytest.raises(NotPermitted):
        pick(t, shipment, t.lot_200, 1, actor=t.buyer_warehouse)
    with pytest.raises(NotPermitted):
        pick(t, shipment, t.lot_200, 1, actor=t.seller_desk)  # order desk does not pick


def test_a_held_lot_is_not_picked(shipping, hold_registry):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 10))

    def recall_check(batch, location):
        if batch.pk == t.lot_200.pk:
            return [hooks.Hold("lot_recalled", "lot V200 is under recall RC-1", "RC-1")]
        return []

    hold_registry(recall_check)
    with pytest.raises(RuleViolation) as refused:
        pick(t, shipment, t.lot_200, 5)
    assert refused.value.code == "lot_recalled"
    assert "RC-1" in refused.value.detail


# --- dispatch of picked quantities -------------------------------------------------------------


def test_dispatch_of_a_picked_shipment_ships_what_was_picked(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    pick(t, shipment, t.lot_200, 40)
    pick(t, shipment, t.lot_400, 10)

    dispatch(t, shipment)

    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.DISPATCHED
    assert on_hand(t.lot_200, t.in_transit) == 40
    assert on_hand(t.lot_400, t.in_transit) == 10
    order = shipment.order
    order.refresh_from_db()
    assert order.status == OrderStatus.SHIPPED
    line = order.lines.get()
    assert (line.quantity_allocated, line.quantity_shipped, line.quantity_backordered) == (
        50,
        50,
        0,
    )
    assert ledger_balanced()


def test_a_short_pick_ships_the_picked_units_and_backorders_the_rest(shipping):
    """40 of V200 planned but 30 found; nothing of V400 found: 30 ship, the V400 line ships
    nothing, 20 units go back to the order line as a backorder and to available stock."""
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    pick(t, shipment, t.lot_200, 30)
    assert allocated_units() == 50

    dispatch(t, shipment)

    lines = lines_by_lot(shipment)
    assert (lines["V200"].quantity, lines["V200"].picked_quantity) == (30, 30)
    assert (lines["V400"].quantity, lines["V400"].picked_quantity) == (0, 0)
    assert on_hand(t.lot_200, t.in_transit) == 30
    assert on_hand(t.lot_200, t.net.manufacturer_storage) == 10
    assert on_hand(t.lot_400, t.in_transit) == 0
    assert allocated_units() == 0
    statuses = set(
        StockAllocation.objects.filter(
            pk__in=[line.allocation_id for line in lines.values()]
        ).values_list("status", flat=True)
    )
    assert statuses == {AllocationStatus.RELEASED}
    order = shipment.order
    order.refresh_from_db()
    assert order.status == OrderStatus.ALLOCATED  # the rest is open
    line = order.lines.get()
    assert (line.quantity_allocated, line.quantity_shipped, line.quantity_backordered) == (
        30,
        30,
        20,
    )
    assert (
        StockMove.objects.filter(
            reference=f"shipment:{shipment.number}", kind=MoveKind.SHIPMENT
        ).count()
        == 1
    )
    assert ledger_balanced()
    # The buyer checks in the one line that shipped something.
    services.shipment_receive(
        shipment=shipment,
        lines=[{"line": lines["V200"].pk, "received_quantity": 30, "damaged_quantity": 0}],
        actor=t.buyer_warehouse,
        reason="goods in",
    )
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.RECEIVED
    order.refresh_from_db()
    assert order.status == OrderStatus.ALLOCATED  # still open: not delivered


def test_a_held_lot_is_not_dispatched(shipping, hold_registry):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 10))

    def excursion_check(batch, location):
        return [hooks.Hold("excursion_hold", "held after excursion EX-1", "EX-1")]

    hold_registry(excursion_check)
    moves = StockMove.objects.count()
    with pytest.raises(RuleViolation) as refused:
        dispatch(t, shipment)
    assert refused.value.code == "excursion_hold"
    assert StockMove.objects.count() == moves


# --- packing -----------------------------------------------------------------------------------


def test_packing_labels_a_package_with_a_valid_sscc_from_the_sellers_prefix(prefixed):
    t = prefixed
    shipment = planned_shipment(t, (t.vaccine, 50), (t.insulin, 4))
    lines = lines_by_lot(shipment)

    first = services.shipment_pack(
        shipment=shipment,
        contents=[(lines["V200"], 40), (lines["I1"], 4)],
        actor=t.seller_warehouse,
        reason="case 1",
    )
    second = services.shipment_pack(
        shipment=shipment,
        contents=[(lines["V400"], 10)],
        actor=t.seller_warehouse,
        reason="case 2",
    )

    for package in (first, second):
        assert len(package.sscc) == 18
        parsed = Sscc.parse(package.sscc)  # biip checks the check digit
        assert parsed.extension_digit == 0
        assert package.sscc[1:8] == ACME_PREFIX
    # The serial reference comes from a counter: 1, then 2.
    assert first.sscc[8:17] == "000000001"
    assert second.sscc[8:17] == "000000002"
    assert SsccCounter.objects.get(company_prefix=ACME_PREFIX).last_serial == 2
    assert {(pl.shipment_line_id, pl.quantity) for pl in first.lines.all()} == {
        (lines["V200"].pk, 40),
        (lines["I1"].pk, 4),
    }
    assert services.package_by_sscc(first.sscc) == first
    assert ShipmentPackage.history.filter(id=first.pk).get().history_change_reason == "case 1"


def test_the_sscc_extension_digit_extends_the_serial_range(prefixed):
    t = prefixed
    SsccCounter.objects.create(company_prefix=ACME_PREFIX, last_serial=999_999_999)
    shipment = planned_shipment(t, (t.vaccine, 5))
    line = shipment.lines.get()
    package = services.shipment_pack(
        shipment=shipment, contents=[(line, 5)], actor=t.seller_warehouse, reason="case"
    )
    assert package.sscc.startswith(f"1{ACME_PREFIX}000000000")
    Sscc.parse(package.sscc)


@pytest.mark.parametrize(
    ("case", "error", "code"),
    [
        ("beyond the line", RuleViolation, "quantity_exceeds_expected"),
        ("another shipment's line", InvalidInput, "unknown_line"),
        ("zero units", InvalidInput, "invalid_quantity"),
        ("nothing", InvalidInput, "empty_package"),
        ("dispatched", RuleViolation, "invalid_transition"),
    ],
)
def test_bad_packing_is_refused_and_writes_nothing(prefixed, case, error, code):
    t = prefixed
    shipment = planned_shipment(t, (t.vaccine, 10))
    line = shipment.lines.get()
    contents = [(line, 5)]
    if case == "beyond the line":
        services.shipment_pack(
            shipment=shipment, contents=[(line, 8)], actor=t.seller_warehouse, reason="c1"
        )
    elif case == "another shipment's line":
        contents = [(line.pk + 1000, 1)]
    elif case == "zero units":
        contents = [(line, 0)]
    elif case == "nothing":
        contents = []
    else:
        dispatch(t, shipment)
    before = (ShipmentPackage.objects.count(), ShipmentPackageLine.objects.count())

    with pytest.raises(error) as refused:
        services.shipment_pack(
            shipment=shipment, contents=contents, actor=t.seller_warehouse, reason="c2"
        )

    assert refused.value.code == code
    assert (ShipmentPackage.objects.count(), ShipmentPackageLine.objects.count()) == before


def test_packing_needs_the_sellers_company_prefix(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 10))
    with pytest.raises(RuleViolation) as refused:
        services.shipment_pack(
            shipment=shipment,
            contents=[(shipment.lines.get(), 1)],
            actor=t.seller_warehouse,
            reason="case",
        )
    assert refused.value.code == "no_company_prefix"


def test_an_unknown_sscc_is_not_found(prefixed):
    with pytest.raises(NotFound):
        services.package_by_sscc("340123450000000017")


def test_packed_units_beyond_the_picked_ones_stop_the_dispatch(prefixed):
    t = prefixed
    shipment = planned_shipment(t, (t.vaccine, 10))
    line = shipment.lines.get()
    services.shipment_pack(
        shipment=shipment, contents=[(line, 10)], actor=t.seller_warehouse, reason="case"
    )
    pick(t, shipment, t.lot_200, 6)
    with pytest.raises(RuleViolation) as refused:
        dispatch(t, shipment)
    assert refused.value.code == "packed_exceeds_shipped"


# --- delivery by the carrier -------------------------------------------------------------------


@pytest.fixture
def carried(shipping):
    t = shipping
    t.carrier = PartnerFactory(name="ColdTrans Logistics", kind=PartnerKind.LOGISTICS)
    t.driver = UserFactory(username="driver", partner=t.carrier, role=Role.PARTNER_USER)
    order = planned_shipment(t, (t.vaccine, 10)).order
    t.shipment = order.shipments.get()
    # The carrier is named when the shipment is planned; re-plan on a second order for it.
    return t


def carried_shipment(t):
    from tests.orders.conftest import allocated_order

    order = allocated_order(t, (t.insulin, 2))
    return services.shipment_create_from_order(
        order=order,
        actor=t.seller_desk,
        reason="plan",
        tracking_number="CT-9",
        carrier_partner=t.carrier,
    )


def test_the_carrier_confirms_delivery_before_the_receipt(carried):
    t = carried
    shipment = carried_shipment(t)
    assert shipment.carrier == "ColdTrans Logistics"
    dispatch(t, shipment)

    services.shipment_deliver(shipment=shipment, actor=t.driver, reason="signed POD 4411")

    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.DELIVERED
    assert shipment.delivered_at is not None
    with pytest.raises(RuleViolation) as refused:
        services.shipment_deliver(shipment=shipment, actor=t.driver, reason="again")
    assert refused.value.code == "already_delivered"
    receive_whole(t, shipment)
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.RECEIVED
    shipment.order.refresh_from_db()
    assert shipment.order.status == OrderStatus.DELIVERED


def test_the_seller_confirms_delivery_and_nobody_else_does(carried):
    t = carried
    shipment = t.shipment
    with pytest.raises(RuleViolation) as refused:
        services.shipment_deliver(shipment=shipment, actor=t.seller_warehouse, reason="pod")
    assert refused.value.code == "not_dispatched"
    dispatch(t, shipment)
    # Not this shipment's carrier, and the buyer: refused.
    for outsider in (t.driver, t.buyer_warehouse):
        with pytest.raises(NotPermitted):
            services.shipment_deliver(shipment=shipment, actor=outsider, reason="pod")
    services.shipment_deliver(shipment=shipment, actor=t.seller_desk, reason="carrier called")
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.DELIVERED


def test_a_non_logistics_partner_is_no_carrier(shipping):
    t = shipping
    from tests.orders.conftest import allocated_order

    order = allocated_order(t, (t.insulin, 2))
    with pytest.raises(InvalidInput) as refused:
        services.shipment_create_from_order(
            order=order, actor=t.seller_desk, reason="plan", carrier_partner=t.net.other
        )
    assert refused.value.code == "invalid_carrier"
