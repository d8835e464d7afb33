"""The pick, pack and deliver actions of the shipments API."""

from __future__ import annotations

from biip.sscc import Sscc

from audit.history import update_with_reason
from orders.models import ShipmentPackage, ShipmentStatus
from partners.models import PartnerKind, Role
from tests.factories import PartnerFactory, UserFactory
from tests.orders.conftest import allocated_order, ledger_balanced, on_hand
from tests.orders.test_shipments_api import assert_refused, client_for

API = "/api/v1/shipments"


def planned(t, *lines, carrier_partner=None):
    order = allocated_order(t, *lines)
    body = {"order": order.pk, "carrier": "ColdTrans", "reason": "plan"}
    if carrier_partner is not None:
        body["carrier_partner"] = carrier_partner.pk
    response = client_for(t.seller_desk).post(f"{API}/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def pick(t, shipment_id, lot, quantity, location=None, user=None, **extra):
    return client_for(user or t.seller_warehouse).post(
        f"{API}/{shipment_id}/pick/",
        {
            "lot": lot.pk,
            "quantity": quantity,
            "location": (location or t.net.manufacturer_storage).pk,
            "reason": "scan",
            **extra,
        },
        format="json",
    )


def test_pick_then_dispatch_through_the_api(shipping):
    t = shipping
    body = planned(t, (t.vaccine, 50))

    response = pick(t, body["id"], t.lot_200, 40, serials=[])
    assert response.status_code == 200, response.content
    assert response.json()["status"] == ShipmentStatus.PLANNED
    response = pick(t, body["id"], t.lot_400, 10)
    assert response.json()["status"] == ShipmentStatus.PICKED
    assert {line["lot"]: line["picked_quantity"] for line in response.json()["lines"]} == {
        "V200": 40,
        "V400": 10,
    }

    response = client_for(t.seller_warehouse).post(
        f"{API}/{body['id']}/dispatch/", {"reason": "truck"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert on_hand(t.lot_200, t.in_transit) == 40
    assert ledger_balanced()


def test_pick_refusals_answer_their_codes(shipping):
    t = shipping
    body = planned(t, (t.vaccine, 10))
    assert_refused(pick(t, body["id"], t.lot_600, 1), 409, "not_allocated_lot")
    assert_refused(
        pick(t, body["id"], t.lot_200, 1, location=t.net.manufacturer_quarantine),
        409,
        "wrong_location",
    )
    assert_refused(pick(t, body["id"], t.lot_200, 11), 409, "quantity_exceeds_expected")
    assert_refused(pick(t, body["id"], t.lot_200, 0), 400, "invalid_quantity")
    assert_refused(pick(t, body["id"], t.lot_200, 1, user=t.buyer_warehouse), 403, "not_a_party")
    assert_refused(pick(t, body["id"], t.lot_200, 1, user=t.net.other_user), 404, "not_found")
    response = pick(t, body["id"], t.lot_200, 1, user=t.net.regulator)
    assert response.status_code == 403


def test_pack_answers_the_package_with_its_sscc(shipping):
    t = shipping
    update_with_reason(
        t.seller,
        actor=t.net.admin,
        reason="test: GS1 membership",
        changes={"gs1_company_prefix": "4012345"},
        editable={"gs1_company_prefix"},
    )
    body = planned(t, (t.vaccine, 10))
    line = body["lines"][0]["id"]

    response = client_for(t.seller_warehouse).post(
        f"{API}/{body['id']}/pack/",
        {"contents": [{"line": line, "quantity": 10}], "reason": "case 1"},
        format="json",
    )

    assert response.status_code == 201, response.content
    package = response.json()
    Sscc.parse(package["sscc"])
    assert package["lines"] == [{"shipment_line": line, "quantity": 10}]
    assert ShipmentPackage.objects.filter(sscc=package["sscc"]).exists()
    shipment = client_for(t.seller_warehouse).get(f"{API}/{body['id']}/").json()
    assert shipment["packages"][0]["sscc"] == package["sscc"]
    response = client_for(t.seller_warehouse).post(
        f"{API}/{body['id']}/pack/",
        {"contents": [{"line": line, "quantity": 1}], "reason": "case 2"},
        format="json",
    )
    assert_refused(response, 409, "quantity_exceeds_expected")


def test_the_carrier_sees_and_delivers_its_shipment_only(shipping):
    t = shipping
    carrier = PartnerFactory(name="ColdTrans Logistics", kind=PartnerKind.LOGISTICS)
    driver = UserFactory(username="driver", partner=carrier, role=Role.PARTNER_USER)
    carried = planned(t, (t.vaccine, 10), carrier_partner=carrier)
    other = planned(t, (t.insulin, 2))
    assert carried["carrier_partner"] == carrier.pk
    for body in (carried, other):
        response = client_for(t.seller_warehouse).post(
            f"{API}/{body['id']}/dispatch/", {"reason": "truck"}, format="json"
        )
        assert response.status_code == 200

    listed = client_for(driver).get(f"{API}/").json()["results"]
    assert [row["id"] for row in listed] == [carried["id"]]
    assert_refused(
        client_for(driver).post(f"{API}/{other['id']}/deliver/", {"reason": "pod"}, format="json"),
        404,
        "not_found",
    )
    response = client_for(driver).post(
        f"{API}/{carried['id']}/deliver/", {"reason": "POD signed"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == ShipmentStatus.DELIVERED
    assert response.json()["delivered_at"]
    # The buyer cannot confirm a carrier's delivery.
    assert_refused(
        client_for(t.buyer_warehouse).post(
            f"{API}/{other['id']}/deliver/", {"reason": "pod"}, format="json"
        ),
        403,
        "not_a_party",
    )
