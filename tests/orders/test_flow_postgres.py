"""The distribution flow end to end on PostgreSQL: manufacturer → wholesaler → pharmacy.

Orders, allocation, dispatch and receipt at both tiers, in committed transactions (so the
business events fire), with the ledger balanced at every step and the audit chain intact.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from audit import chain
from orders import services
from orders.models import OrderStatus, ShipmentStatus
from orders.selectors import shipment_transaction_information
from orders.signals import business_event
from partners.models import PartnerKind, Role
from tests.factories import (
    AgreementFactory,
    AgreementPriceFactory,
    LicenceFactory,
    LocationFactory,
    PartnerFactory,
    SiteFactory,
    UserFactory,
)
from tests.orders.conftest import ledger_balanced, on_hand

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: set DATABASE_URL=postgres://...",
    ),
]


def sell(
    *,
    seller_desk,
    seller_warehouse,
    buyer_user,
    buyer_warehouse,
    ship_to,
    seller,
    buyer,
    product,
    quantity,
):
    """One tier of the chain: order, confirm, allocate, plan, dispatch, receive."""
    order = services.order_create(
        buyer=buyer,
        seller=seller,
        ship_to=ship_to,
        lines=[{"product": product, "quantity": quantity}],
        actor=buyer_user,
        reason="replenishment",
    )
    services.order_submit(order=order, actor=buyer_user, reason="send")
    services.order_confirm(order=order, actor=seller_desk, reason="accepted")
    services.order_allocate(order=order, actor=seller_desk, reason="allocate")
    assert ledger_balanced()
    shipment = services.shipment_create_from_order(
        order=order, actor=seller_desk, reason="plan", carrier="ColdTrans"
    )
    shipment = services.shipment_dispatch(shipment=shipment, actor=seller_warehouse, reason="go")
    assert ledger_balanced()
    lines = [
        {"line": line.pk, "received_quantity": line.quantity}
        for line in shipment.lines.order_by("id")
    ]
    shipment = services.shipment_receive(
        shipment=shipment, lines=lines, actor=buyer_warehouse, reason="goods in"
    )
    assert ledger_balanced()
    order.refresh_from_db()
    assert (order.status, shipment.status) == (OrderStatus.DELIVERED, ShipmentStatus.RECEIVED)
    return shipment


def test_manufacturer_to_wholesaler_to_pharmacy(shipping):
    t = shipping
    heard: list[str] = []

    def receiver(sender, event, **kwargs):
        heard.append(event)

    business_event.connect(receiver, dispatch_uid="test-flow-events")
    try:
        first = sell(
            seller_desk=t.seller_desk,
            seller_warehouse=t.seller_warehouse,
            buyer_user=t.buyer_user,
            buyer_warehouse=t.buyer_warehouse,
            ship_to=t.net.wholesaler_site,
            seller=t.seller,
            buyer=t.buyer,
            product=t.vaccine,
            quantity=50,
        )
        assert on_hand(t.lot_200, t.net.wholesaler_storage) == 40
        assert on_hand(t.lot_400, t.net.wholesaler_storage) == 10

        # The wholesaler sells on to a pharmacy.
        pharmacy = PartnerFactory(name="Linden Apotheke", kind=PartnerKind.PHARMACY)
        pharmacy_site = SiteFactory(partner=pharmacy, name="Linden Apotheke, Marienplatz")
        pharmacy_storage = LocationFactory(site=pharmacy_site, code="SHELF")
        LocationFactory(site=pharmacy_site, code="QUAR", kind="quarantine")
        LicenceFactory(partner=pharmacy)
        LocationFactory(site=t.net.wholesaler_site, code="TRANSIT", kind="in_transit")
        agreement = AgreementFactory(supplier=t.buyer, customer=pharmacy, territory=["DE"])
        AgreementPriceFactory(agreement=agreement, product=t.vaccine, unit_price=Decimal("15"))
        pharmacist = UserFactory(username="linden", partner=pharmacy, role=Role.PARTNER_USER)
        north_desk = t.buyer_desk
        second = sell(
            seller_desk=north_desk,
            seller_warehouse=t.buyer_warehouse,
            buyer_user=pharmacist,
            buyer_warehouse=pharmacist,
            ship_to=pharmacy_site,
            seller=t.buyer,
            buyer=pharmacy,
            product=t.vaccine,
            quantity=45,
        )
        assert on_hand(t.lot_200, pharmacy_storage) == 40
        assert on_hand(t.lot_400, pharmacy_storage) == 5
        assert on_hand(t.lot_400, t.net.wholesaler_storage) == 5

        info = shipment_transaction_information(second)
        line = next(line for line in info["lines"] if line["lot"] == "V200")
        assert [
            (entry["shipment"], entry["seller"]["gln"], entry["buyer"]["gln"])
            for entry in line["previous_owners"]
        ] == [(first.number, t.seller.gln, t.buyer.gln)]
    finally:
        business_event.disconnect(dispatch_uid="test-flow-events")

    assert heard.count("shipment.dispatched") == 2
    assert heard.count("shipment.received") == 2
    assert ledger_balanced()
    assert chain.verify().ok
