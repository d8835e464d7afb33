"""A small trade on top of the test network: North Wholesale buys from Acme Pharma."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from batches import services as stock
from batches.models import BatchStatus, ControlledSchedule, StockBalance
from orders import services
from orders.models import Order
from partners.models import Role
from tests.factories import (
    AgreementFactory,
    AgreementPriceFactory,
    BatchFactory,
    LicenceFactory,
    LocationFactory,
    ProductFactory,
    UserFactory,
)

MIN_SHELF_LIFE_DAYS = 90


class Trade:
    """The network, plus what a trade between Acme (seller) and North (buyer) needs."""


def days(n: int) -> datetime.date:
    return timezone.localdate() + datetime.timedelta(days=n)


@pytest.fixture
def trade(network):
    """Acme Pharma sells to North Wholesale under an agreement for Germany with 90 days minimum
    shelf life. Acme's storage holds ``vaccine`` in three usable lots (40 expiring in 200 days,
    60 in 400 days, 30 in 600 days) and in lots that must never be taken (expired, too short,
    quarantined, rejected, recalled, and a usable lot sitting in quarantine)."""
    t = Trade()
    t.net = network
    t.today = timezone.localdate()
    t.seller, t.buyer = network.manufacturer, network.wholesaler
    t.seller_desk = UserFactory(username="acme-desk", partner=t.seller, role=Role.ORDER_DESK)
    t.buyer_user = UserFactory(username="north-buyer", partner=t.buyer, role=Role.PARTNER_USER)
    t.buyer_desk = UserFactory(username="north-desk", partner=t.buyer, role=Role.ORDER_DESK)
    t.licence = LicenceFactory(partner=t.buyer)
    t.vaccine = ProductFactory(manufacturer=t.seller, name="Vaccine")
    t.insulin = ProductFactory(manufacturer=t.seller, name="Insulin", category="insulin")
    t.opioid = ProductFactory(
        manufacturer=t.seller,
        name="Opioid",
        category="small_molecule",
        controlled_schedule=ControlledSchedule.CII,
    )
    t.unpriced = ProductFactory(manufacturer=t.seller, name="Unpriced")
    t.agreement = AgreementFactory(
        supplier=t.seller,
        customer=t.buyer,
        territory=["DE"],
        min_remaining_shelf_life_days=MIN_SHELF_LIFE_DAYS,
    )
    t.prices = {
        product.pk: AgreementPriceFactory(agreement=t.agreement, product=product, unit_price=price)
        for product, price in [
            (t.vaccine, Decimal("12.5000")),
            (t.insulin, Decimal("7.2500")),
            (t.opioid, Decimal("3.1000")),
        ]
    }
    storage, quarantine = network.manufacturer_storage, network.manufacturer_quarantine
    t.lot_200 = BatchFactory(product=t.vaccine, lot_number="V200", expires_on=days(200))
    t.lot_400 = BatchFactory(product=t.vaccine, lot_number="V400", expires_on=days(400))
    t.lot_600 = BatchFactory(product=t.vaccine, lot_number="V600", expires_on=days(600))
    t.lot_expired = BatchFactory(
        product=t.vaccine, lot_number="VEXP", manufactured_on=days(-400), expires_on=days(-1)
    )
    t.lot_short = BatchFactory(product=t.vaccine, lot_number="VSHORT", expires_on=days(30))
    t.bad_lots = [t.lot_expired, t.lot_short]
    for lot, quantity in [
        (t.lot_200, 40),
        (t.lot_400, 60),
        (t.lot_600, 30),
        (t.lot_expired, 500),
        (t.lot_short, 500),
    ]:
        stock.stock_receive(
            batch=lot,
            location=storage,
            quantity=quantity,
            actor=network.warehouse,
            reason="production output",
        )
    # A good lot held in quarantine: never allocated from there.
    t.lot_in_quarantine = BatchFactory(product=t.vaccine, lot_number="VQLOC", expires_on=days(100))
    stock.stock_receive(
        batch=t.lot_in_quarantine,
        location=quarantine,
        quantity=500,
        actor=network.warehouse,
        reason="held for investigation",
    )
    t.bad_lots.append(t.lot_in_quarantine)
    # Lots whose QA status forbids sale, with stock that got in before the status changed.
    for number, status in [
        ("VQUAR", BatchStatus.QUARANTINE),
        ("VREJ", BatchStatus.REJECTED),
        ("VREC", BatchStatus.RECALLED),
    ]:
        lot = BatchFactory(product=t.vaccine, lot_number=number, expires_on=days(150))
        stock.stock_receive(
            batch=lot,
            location=storage,
            quantity=500,
            actor=network.warehouse,
            reason="opening stock",
        )
        lot.status = status
        lot._change_reason = "test: QA status"
        lot.save()
        t.bad_lots.append(lot)
    t.lot_insulin = BatchFactory(product=t.insulin, lot_number="I1", expires_on=days(300))
    stock.stock_receive(
        batch=t.lot_insulin,
        location=storage,
        quantity=10,
        actor=network.warehouse,
        reason="production output",
    )
    return t


def place_order(t: Trade, *lines: tuple, actor=None) -> Order:
    """A draft order of North to Acme, shipped to North's site."""
    return services.order_create(
        buyer=t.buyer,
        seller=t.seller,
        ship_to=t.net.wholesaler_site,
        lines=[{"product": product, "quantity": quantity} for product, quantity in lines],
        actor=actor or t.buyer_user,
        reason="weekly replenishment",
    )


def confirmed_order(t: Trade, *lines: tuple) -> Order:
    order = place_order(t, *lines)
    services.order_submit(order=order, actor=t.buyer_user, reason="send to Acme")
    services.order_confirm(order=order, actor=t.seller_desk, reason="accepted")
    order.refresh_from_db()
    return order


def allocated_units() -> int:
    return sum(StockBalance.objects.values_list("allocated", flat=True))


# --- shipments -------------------------------------------------------------------------------


@pytest.fixture
def shipping(trade):
    """The trade, plus what shipping needs: an in-transit location at Acme's site, and North's
    warehouse operator to check goods in (North's site already has storage and quarantine)."""
    t = trade
    t.in_transit = LocationFactory(site=t.net.manufacturer_site, code="TRANSIT", kind="in_transit")
    t.seller_warehouse = t.net.warehouse
    t.buyer_warehouse = UserFactory(
        username="north-wh", partner=t.buyer, role=Role.WAREHOUSE_OPERATOR
    )
    return t


def allocated_order(t: Trade, *lines: tuple) -> Order:
    order = confirmed_order(t, *lines)
    services.order_allocate(order=order, actor=t.seller_desk, reason="allocate")
    order.refresh_from_db()
    return order


def planned_shipment(t: Trade, *lines: tuple):
    order = allocated_order(t, *lines)
    return services.shipment_create_from_order(
        order=order,
        actor=t.seller_desk,
        reason="plan the shipment",
        carrier="ColdTrans",
        tracking_number="CT-1",
    )


def receive_whole(t: Trade, shipment, reason: str = "goods in"):
    """The buyer checks every shipped unit in, sound (through the service, not by scanning)."""
    return services.shipment_receive(
        shipment=shipment,
        lines=[
            {"line": line.pk, "received_quantity": line.quantity, "damaged_quantity": 0}
            for line in shipment.lines.all()
        ],
        actor=t.buyer_warehouse,
        reason=reason,
    )


def on_hand(batch, location) -> int:
    balance = StockBalance.objects.filter(batch=batch, location=location).first()
    return balance.on_hand if balance else 0


def ledger_balanced() -> bool:
    """Every balance equals the sum of the moves into its location less the moves out."""
    from collections import defaultdict

    from batches.models import StockMove

    expected: dict[tuple[int, int], int] = defaultdict(int)
    for move in StockMove.objects.all():
        if move.to_location_id:
            expected[(move.batch_id, move.to_location_id)] += move.quantity
        if move.from_location_id:
            expected[(move.batch_id, move.from_location_id)] -= move.quantity
    actual = {(b.batch_id, b.location_id): b.on_hand for b in StockBalance.objects.all()}
    keys = set(expected) | set(actual)
    return all(expected.get(key, 0) == actual.get(key, 0) for key in keys)
