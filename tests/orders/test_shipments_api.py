"""The shipments API: status codes, refusal codes, scoping and the transaction documents."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from batches.models import StockMove
from orders.models import Order, Shipment, ShipmentLine
from tests.orders.conftest import allocated_order, allocated_units, ledger_balanced, on_hand

API = "/api/v1/shipments"


def client_for(user) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user=user)
    return client


def assert_refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert body["detail"]


def counts() -> tuple[int, ...]:
    return (
        Shipment.objects.count(),
        ShipmentLine.objects.count(),
        Shipment.history.count(),
        StockMove.objects.count(),
        allocated_units(),
        Order.history.count(),
    )


def create(t, order, user=None):
    return client_for(user or t.seller_desk).post(
        f"{API}/",
        {"order": order.pk, "carrier": "ColdTrans", "tracking_number": "CT-9", "reason": "plan"},
        format="json",
    )


def dispatch(t, shipment_id, user=None):
    return client_for(user or t.seller_warehouse).post(
        f"{API}/{shipment_id}/dispatch/", {"reason": "truck 7"}, format="json"
    )


def receive(t, body, user=None, **override):
    lines = [
        {"line": line["id"], "received_quantity": line["quantity"], "damaged_quantity": 0}
        | override
        for line in body["lines"]
    ]
    return client_for(user or t.buyer_warehouse).post(
        f"{API}/{body['id']}/receive/", {"lines": lines, "reason": "goods in"}, format="json"
    )


@pytest.fixture
def dispatched(shipping):
    t = shipping
    created = create(t, allocated_order(t, (t.vaccine, 50)))
    assert created.status_code == 201, created.content
    response = dispatch(t, created.json()["id"])
    assert response.status_code == 200, response.content
    t.shipment = response.json()
    return t


def test_the_flow_over_the_api(shipping):
    t = shipping
    created = create(t, allocated_order(t, (t.vaccine, 50)))
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "planned"
    assert body["number"].startswith("SH-")
    assert sorted((line["lot"], line["quantity"]) for line in body["lines"]) == [
        ("V200", 40),
        ("V400", 10),
    ]
    dispatched = dispatch(t, body["id"])
    assert dispatched.status_code == 200, dispatched.content
    assert dispatched.json()["status"] == "dispatched"
    received = receive(t, dispatched.json())
    assert received.status_code == 200, received.content
    assert received.json()["status"] == "received"
    assert on_hand(t.lot_200, t.net.wholesaler_storage) == 40
    assert ledger_balanced()
    history = client_for(t.buyer_user).get(f"{API}/{body['id']}/history/")
    assert [e["history_change_reason"] for e in history.json()["results"]] == [
        "plan",
        "truck 7",
        "goods in",
    ]


def test_bad_requests_answer_a_code_and_write_nothing(dispatched):
    t = dispatched
    before = counts()
    assert_refused(dispatch(t, t.shipment["id"]), 409, "already_dispatched")
    assert_refused(receive(t, t.shipment, received_quantity=41), 409, "over_delivery")
    assert_refused(
        receive(t, t.shipment, received_quantity=30, damaged_quantity=20), 409, "over_delivery"
    )
    assert_refused(receive(t, t.shipment, received_quantity=-1), 400, "invalid_quantity")
    no_reason = client_for(t.buyer_warehouse).post(
        f"{API}/{t.shipment['id']}/receive/", {"lines": []}, format="json"
    )
    assert no_reason.status_code == 400
    assert counts() == before
    assert receive(t, t.shipment).status_code == 200
    before = counts()
    assert_refused(receive(t, t.shipment), 409, "already_received")
    assert counts() == before


def test_dispatch_when_the_buyers_licence_lapsed(shipping):
    t = shipping
    shipment_id = create(t, allocated_order(t, (t.vaccine, 10))).json()["id"]
    t.licence.status = "suspended"
    t.licence._change_reason = "test: authority suspended the licence"
    t.licence.save()
    before = counts()
    assert_refused(dispatch(t, shipment_id), 409, "no_valid_licence")
    assert counts() == before
    assert on_hand(t.lot_200, t.net.manufacturer_storage) == 40


def test_an_unallocated_shipment_is_not_dispatched(shipping):
    t = shipping
    order = allocated_order(t, (t.vaccine, 10))
    shipment_id = create(t, order).json()["id"]
    cancelled = client_for(t.seller_desk).post(
        f"/api/v1/orders/{order.pk}/cancel/", {"reason": "withdrawn"}, format="json"
    )
    assert cancelled.status_code == 200, cancelled.content
    before = counts()
    assert_refused(dispatch(t, shipment_id), 409, "shipment_not_allocated")
    assert counts() == before


def test_scoping_and_roles(dispatched):
    t = dispatched
    url = f"{API}/{t.shipment['id']}/"
    for user in (t.buyer_user, t.seller_desk, t.net.regulator):
        assert client_for(user).get(url).status_code == 200
    assert client_for(t.net.other_user).get(url).status_code == 404
    assert client_for(t.net.other_user).get(f"{API}/").json()["count"] == 0
    assert client_for(t.buyer_user).get(f"{API}/").json()["count"] == 1
    assert receive(t, t.shipment, user=t.net.other_user).status_code == 404
    assert client_for(t.net.other_user).get(f"{url}epcis/").status_code == 404
    assert client_for(t.net.regulator).get(f"{url}epcis/").status_code == 200
    # Regulators read; they never write.
    assert receive(t, t.shipment, user=t.net.regulator).status_code == 403
    assert_refused(receive(t, t.shipment, user=t.buyer_desk), 403, "role_not_permitted")
    assert_refused(receive(t, t.shipment, user=t.seller_warehouse), 403, "not_a_party")
    order = allocated_order(t, (t.vaccine, 5))
    assert create(t, order, user=t.net.other_user).status_code == 400  # order not found to them
    assert_refused(create(t, order, user=t.buyer_user), 403, "role_not_permitted")


def test_transaction_information_json_and_pdf(dispatched):
    t = dispatched
    url = f"{API}/{t.shipment['id']}/transaction-information/"
    response = client_for(t.buyer_user).get(url)
    assert response.status_code == 200, response.content
    info = response.json()
    assert info["shipment"] == t.shipment["number"]
    assert info["seller"]["gln"] == t.seller.gln
    assert info["buyer"]["gln"] == t.buyer.gln
    assert info["buyer"]["site"]["gln"] == t.net.wholesaler_site.gln
    assert info["buyer"]["site"]["city"] == t.net.wholesaler_site.city
    line = next(line for line in info["lines"] if line["lot"] == "V200")
    assert line["gtin"] == t.vaccine.gtin
    assert line["quantity"] == 40
    assert line["expires_on"] == t.lot_200.expires_on.isoformat()
    assert (line["strength"], line["dosage_form"], line["pack_size"]) == (
        t.vaccine.strength,
        t.vaccine.dosage_form,
        t.vaccine.pack_size,
    )
    assert line["previous_owners"] == []  # the manufacturer is the first owner
    assert (
        "did not knowingly ship a suspect or illegitimate product" in info["transaction_statement"]
    )
    pdf = client_for(t.buyer_user).get(url, {"format": "pdf"})
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")


def test_no_transaction_information_before_dispatch(shipping):
    t = shipping
    shipment_id = create(t, allocated_order(t, (t.vaccine, 10))).json()["id"]
    url = f"{API}/{shipment_id}/transaction-information/"
    assert_refused(client_for(t.buyer_user).get(url), 409, "not_dispatched")
    pdf = client_for(t.buyer_user).get(url, {"format": "pdf"})
    assert_refused(pdf, 409, "not_dispatched")
    assert_refused(
        client_for(t.buyer_user).get(f"{API}/{shipment_id}/epcis/"), 409, "not_dispatched"
    )
