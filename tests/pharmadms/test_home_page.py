"""The home page: who I am, and my partner's stock by product and lot, with expiry flags."""

from __future__ import annotations

import datetime

from django.utils import timezone

from batches import services
from batches.models import MoveKind
from tests.factories import BatchFactory, ProductFactory


def test_home_needs_sign_in(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_home_lists_own_stock_with_expiry_flags(client, network):
    today = timezone.localdate()
    product = ProductFactory(manufacturer=network.manufacturer, name="Insulin glargine")
    lots = {
        "FRESH": today + datetime.timedelta(days=400),
        "SOON": today + datetime.timedelta(days=30),
        "PAST": today - datetime.timedelta(days=3),
    }
    for lot_number, expires_on in lots.items():
        lot = BatchFactory(
            product=product,
            lot_number=lot_number,
            expires_on=expires_on,
            manufactured_on=expires_on - datetime.timedelta(days=500),
        )
        services.stock_post_move(
            batch=lot,
            quantity=7,
            kind=MoveKind.RECEIPT,
            actor=network.warehouse,
            reason="production output",
            to_location=network.manufacturer_storage,
        )
    client.force_login(network.qa)
    html = client.get("/").content.decode()
    assert "Acme Pharma" in html
    assert "QA officer" in html
    assert html.count("Insulin glargine") == 3
    assert html.count("near expiry") == 1
    assert html.count(">expired<") == 1


def test_home_shows_nothing_of_other_partners(client, network):
    lot = BatchFactory(product=ProductFactory(manufacturer=network.manufacturer), lot_number="MINE")
    services.stock_post_move(
        batch=lot,
        quantity=7,
        kind=MoveKind.RECEIPT,
        actor=network.warehouse,
        reason="production output",
        to_location=network.manufacturer_storage,
    )
    client.force_login(network.other_user)
    html = client.get("/").content.decode()
    assert "MINE" not in html
    assert "No stock is held" in html
