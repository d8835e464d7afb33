"""The shipment pages: a party's shipments and one shipment with its lines, documents and the
temperature record that coldchain adds to it."""

from __future__ import annotations

from django.test import Client

from orders.models import ShipmentStatus
from tests.factories import UserFactory


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_party_sees_the_shipment_with_lines_documents_and_temperature_record(trip):
    shipment = trip.shipment
    seller_user = UserFactory(partner=shipment.order.seller)
    client = signed_in(seller_user)

    listing = client.get("/sales/shipments/")
    assert listing.status_code == 200
    assert f'href="/sales/shipments/{shipment.pk}/"' in listing.content.decode()

    page = client.get(f"/sales/shipments/{shipment.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert shipment.number in html
    assert 'data-testid="shipment-lines"' in html
    for line in shipment.lines.all():
        assert line.batch.lot_number in html
    assert shipment.status == ShipmentStatus.DISPATCHED
    assert f"/api/v1/shipments/{shipment.pk}/transaction-information/?format=pdf" in html
    assert 'data-testid="temperature-record"' in html


def test_anyone_else_gets_404_and_the_anonymous_a_sign_in(trip):
    shipment = trip.shipment
    stranger = UserFactory()  # a partner of its own, no party to the shipment
    assert signed_in(stranger).get(f"/sales/shipments/{shipment.pk}/").status_code == 404
    listing = signed_in(stranger).get("/sales/shipments/").content.decode()
    assert shipment.number not in listing
    response = Client().get(f"/sales/shipments/{shipment.pk}/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]
