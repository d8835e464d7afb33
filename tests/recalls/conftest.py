"""A distribution chain built through the real services: Acme Pharma → wholesalers → pharmacies.

``Chain.ship(seller, buyer, quantity)`` runs the whole order flow (order, submit, confirm, FEFO
allocation, shipment, dispatch and, unless told otherwise, receipt), so every edge of the trace
graph and every ledger figure the tests read was written by the services that write them in
production.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import pytest
from django.utils import timezone

from batches import services as stock
from batches.models import Batch
from orders import services as orders
from orders.models import Shipment
from partners.models import Location, Partner, PartnerKind, Role, Site, User
from tests.factories import (
    AgreementFactory,
    AgreementPriceFactory,
    BatchFactory,
    LicenceFactory,
    LocationFactory,
    PartnerFactory,
    ProductFactory,
    SiteFactory,
    UserFactory,
)


@dataclass
class Member:
    """A trading partner of the chain, with its places and the people who act for it."""

    partner: Partner
    site: Site
    storage: Location
    quarantine: Location
    in_transit: Location
    returns: Location
    desk: User
    warehouse: User
    buyer: User
    qa: User


def days(n: int) -> datetime.date:
    return timezone.localdate() + datetime.timedelta(days=n)


class Chain:
    """Partners that trade one product, each able to buy from the others under an agreement."""

    def __init__(self, network):
        self.net = network
        self.product = ProductFactory(manufacturer=network.manufacturer, name="Vaccine")
        self.members: dict[int, Member] = {}
        self.manufacturer = self._member(
            network.manufacturer,
            site=network.manufacturer_site,
            storage=network.manufacturer_storage,
            quarantine=network.manufacturer_quarantine,
            qa=network.qa,
            warehouse=network.warehouse,
        )
        self.north = self._member(
            network.wholesaler,
            site=network.wholesaler_site,
            storage=network.wholesaler_storage,
            quarantine=network.wholesaler_quarantine,
            qa=network.wholesaler_qa,
        )
        self.south = self._member(
            network.other,
            site=network.other_site,
            storage=network.other_storage,
            quarantine=network.other_quarantine,
        )
        self._agreements: set[tuple[int, int]] = set()

    def add(self, name: str, kind: str = PartnerKind.PHARMACY) -> Member:
        partner = PartnerFactory(name=name, kind=kind)
        site = SiteFactory(partner=partner)
        return self._member(
            partner,
            site=site,
            storage=LocationFactory(site=site, code="STORE"),
            quarantine=LocationFactory(site=site, code="QUAR", kind="quarantine"),
        )

    def _member(self, partner, *, site, storage, quarantine, qa=None, warehouse=None) -> Member:
        slug = f"p{partner.pk}"

        def user(role: str, existing=None):
            return existing or UserFactory(username=f"{slug}-{role}", partner=partner, role=role)

        member = Member(
            partner=partner,
            site=site,
            storage=storage,
            quarantine=quarantine,
            in_transit=LocationFactory(site=site, code="TRANSIT", kind="in_transit"),
            returns=LocationFactory(site=site, code="RETURNS", kind="returns"),
            desk=user(Role.ORDER_DESK),
            warehouse=user(Role.WAREHOUSE_OPERATOR, warehouse),
            buyer=user(Role.PARTNER_USER),
            qa=user(Role.QA_OFFICER, qa),
        )
        if partner.kind != PartnerKind.MANUFACTURER:
            LicenceFactory(partner=partner)
        self.members[partner.pk] = member
        return member

    def lot(self, number: str, quantity: int, *, expires_in: int = 400) -> Batch:
        lot = BatchFactory(product=self.product, lot_number=number, expires_on=days(expires_in))
        stock.stock_receive(
            batch=lot,
            location=self.manufacturer.storage,
            quantity=quantity,
            actor=self.manufacturer.warehouse,
            reason="production output",
        )
        return lot

    def _agree(self, seller: Member, buyer: Member) -> None:
        key = (seller.partner.pk, buyer.partner.pk)
        if key in self._agreements:
            return
        agreement = AgreementFactory(supplier=seller.partner, customer=buyer.partner)
        AgreementPriceFactory(agreement=agreement, product=self.product)
        self._agreements.add(key)

    def ship(
        self,
        seller: Member,
        buyer: Member,
        quantity: int,
        *,
        receive: bool = True,
        damaged: int = 0,
        short: int = 0,
    ) -> Shipment:
        """Sell ``quantity`` units FEFO from ``seller``'s storage to ``buyer``: dispatched, and
        received unless ``receive`` is false (``damaged``/``short`` units on its first line)."""
        self._agree(seller, buyer)
        order = orders.order_create(
            buyer=buyer.partner,
            seller=seller.partner,
            ship_to=buyer.site,
            lines=[{"product": self.product, "quantity": quantity}],
            actor=buyer.buyer,
            reason="replenishment",
        )
        orders.order_submit(order=order, actor=buyer.buyer, reason="send")
        orders.order_confirm(order=order, actor=seller.desk, reason="accepted")
        orders.order_allocate(order=order, actor=seller.desk, reason="allocate")
        shipment = orders.shipment_create_from_order(
            order=order, actor=seller.desk, reason="plan the shipment"
        )
        orders.shipment_dispatch(shipment=shipment, actor=seller.warehouse, reason="dispatch")
        if receive:
            self.receive(shipment, buyer, damaged=damaged, short=short)
        shipment.refresh_from_db()
        return shipment

    def receive(self, shipment: Shipment, buyer: Member, *, damaged: int = 0, short: int = 0):
        entries = []
        for index, line in enumerate(shipment.lines.order_by("id")):
            lost = (damaged + short) if index == 0 else 0
            entries.append(
                {
                    "line": line.pk,
                    "received_quantity": line.quantity - lost,
                    "damaged_quantity": damaged if index == 0 else 0,
                }
            )
        orders.shipment_receive(
            shipment=shipment, lines=entries, actor=buyer.warehouse, reason="checked in"
        )

    def give_back(self, shipment: Shipment, customer: Member, seller: Member, quantity: int):
        """``customer`` returns ``quantity`` units of the shipment's first line; received."""
        line = shipment.lines.order_by("id").first()
        ret = orders.return_request_create(
            shipment=shipment,
            lines=[{"shipment_line": line.pk, "quantity": quantity, "reason_code": "overstock"}],
            actor=customer.buyer,
            reason="overstock",
            temperature_evidence="LOG-REF-1",
        )
        orders.return_authorise(return_request=ret, actor=seller.desk, reason="accepted")
        orders.return_receive(return_request=ret, actor=seller.warehouse, reason="checked in")
        return ret


@pytest.fixture
def chain(network):
    return Chain(network)


@pytest.fixture
def traded(chain):
    """Lots A (520 units, earlier expiry) and B (1000) of Acme's vaccine, sold down the chain:

    - Acme → North 300 (A), Acme → South 200 (A), Acme → North 100 (split: the last 20 of A and
      80 of B, one delivery, two lots);
    - North → Pharmacy One 50 (A), North → Pharmacy Two 70 (A), South → Pharmacy Two 30 (A),
      South → City Hospital 40 (A, dispatched, not yet received);
    - Pharmacy One returns 10 (A) to North.
    """
    c = chain
    c.lot_a = c.lot("LOTA", 520, expires_in=300)
    c.lot_b = c.lot("LOTB", 1000, expires_in=600)
    c.p1 = c.add("Pharmacy One")
    c.p2 = c.add("Pharmacy Two")
    c.hospital = c.add("City Hospital", kind=PartnerKind.HOSPITAL)
    c.ship(c.manufacturer, c.north, 300)
    c.ship(c.manufacturer, c.south, 200)
    c.split = c.ship(c.manufacturer, c.north, 100)
    c.to_p1 = c.ship(c.north, c.p1, 50)
    c.ship(c.north, c.p2, 70)
    c.ship(c.south, c.p2, 30)
    c.in_transit = c.ship(c.south, c.hospital, 40, receive=False)
    c.give_back(c.to_p1, c.p1, c.north, 10)
    return c
