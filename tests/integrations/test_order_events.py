"""A real order, submitted and confirmed through orders.services, reaches both partners."""

from __future__ import annotations

import json

import pytest
from django.core import mail

from integrations.models import WebhookDelivery
from orders import services as orders
from partners.models import Role
from tests.factories import (
    AgreementFactory,
    AgreementPriceFactory,
    LicenceFactory,
    ProductFactory,
    UserFactory,
)

from .conftest import verify_signature
from .test_webhook_delivery import register


@pytest.mark.django_db(transaction=True)
def test_submitting_and_confirming_an_order_notifies_buyer_and_seller(admins, receiver):
    # given North Wholesale buying from Acme under an agreement, each with an endpoint
    seller, buyer = admins.manufacturer, admins.wholesaler
    LicenceFactory(partner=buyer)
    product = ProductFactory(manufacturer=seller)
    AgreementPriceFactory(
        agreement=AgreementFactory(supplier=seller, customer=buyer), product=product
    )
    buyer_user = UserFactory(username="north-buyer", partner=buyer, role=Role.PARTNER_USER)
    seller_desk = UserFactory(username="acme-desk", partner=seller, role=Role.ORDER_DESK)
    buyer_hook = register(admins.wholesaler_admin, receiver.url_for("/north"), ["order.confirmed"])
    seller_hook = register(admins.admin, receiver.url_for("/acme"), ["order.submitted"])
    order = orders.order_create(
        buyer=buyer,
        seller=seller,
        ship_to=admins.wholesaler_site,
        lines=[{"product": product, "quantity": 5}],
        actor=buyer_user,
        reason="weekly order",
    )
    mail.outbox.clear()

    # when the buyer submits and the seller confirms
    orders.order_submit(order=order, actor=buyer_user, reason="send")
    orders.order_confirm(order=order, actor=seller_desk, reason="accepted")

    # then the seller's system heard of the submission, the buyer's of the confirmation
    by_path = {r.path: r for r in receiver.requests}
    assert set(by_path) == {"/acme", "/north"}
    assert verify_signature(seller_hook["secret"], by_path["/acme"])
    assert verify_signature(buyer_hook["secret"], by_path["/north"])
    submitted = json.loads(by_path["/acme"].body)
    assert (submitted["event"], submitted["data"]["number"]) == ("order.submitted", order.number)
    assert submitted["data"]["lines"][0]["quantity"] == 5
    assert json.loads(by_path["/north"].body)["data"]["status"] == "confirmed"
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}
    # and both contacts got an e-mail for each event
    subjects = sorted((m.to[0], m.subject) for m in mail.outbox)
    assert subjects == sorted(
        (partner.contact_email, f"PharmaDMS: {event} {order.number}")
        for partner in (seller, buyer)
        for event in ("order.submitted", "order.confirmed")
    )
