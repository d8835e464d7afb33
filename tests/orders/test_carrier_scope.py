"""What the carrier of a shipment sees, endpoint by endpoint (the scoping matrix style of
tests/pharmadms/test_api_scoping.py).

The logistics provider named as a shipment's ``carrier_partner`` reads the delivery fields of
the shipments it carries (number, status, both sites with their addresses, carrier, tracking
number, dispatch and delivery times) and confirms delivery; nothing else. Transaction
information, EPCIS, lines, packages and their labels, readings, history and every warehouse
action stay with the buyer, the seller and regulators: for the carrier they do not exist (404).
"""

from __future__ import annotations

import pytest

from audit.history import update_with_reason
from orders import services
from orders.models import ShipmentStatus
from partners.models import PartnerKind, Role
from tests.factories import PartnerFactory, UserFactory
from tests.orders.conftest import allocated_order
from tests.orders.test_shipments_api import client_for

API = "/api/v1"

CARRIER_FIELDS = {
    "id",
    "number",
    "status",
    "from_site",
    "to_site",
    "carrier",
    "carrier_partner",
    "tracking_number",
    "dispatched_at",
    "delivered_at",
}
SITE_FIELDS = {"id", "name", "gln", "address_line", "postal_code", "city", "country"}

# Reads of a shipment that belong to its parties and regulators only.
PARTY_READS = [
    "transaction-information/",
    "transaction-information/?format=pdf",
    "epcis/",
    "history/",
    "readings/",
    "temperature/",
]
# Writes of the seller's warehouse and the buyer: (action, body).
WAREHOUSE_WRITES = [
    ("pick", {"lot": 0, "quantity": 1, "location": 0, "reason": "x"}),
    ("pack", {"contents": [{"line": 0, "quantity": 1}], "reason": "x"}),
    ("unpack", {"package": 0, "reason": "x"}),
    ("dispatch", {"reason": "x"}),
    ("receive", {"lines": [{"line": 0, "received_quantity": 1}], "reason": "x"}),
]


class Carried:
    """A dispatched shipment carried by ColdTrans, with a package, and one it does not carry."""


@pytest.fixture
def carried(shipping):
    t = shipping
    c = Carried()
    c.t = t
    c.carrier = PartnerFactory(name="ColdTrans Logistics", kind=PartnerKind.LOGISTICS)
    c.driver = UserFactory(username="driver", partner=c.carrier, role=Role.PARTNER_USER)
    c.dispatcher = UserFactory(username="ct-desk", partner=c.carrier, role=Role.WAREHOUSE_OPERATOR)
    update_with_reason(
        t.seller,
        actor=t.net.admin,
        reason="test: GS1 membership",
        changes={"gs1_company_prefix": "4012345"},
        editable={"gs1_company_prefix"},
    )
    c.shipment = services.shipment_create_from_order(
        order=allocated_order(t, (t.vaccine, 10)),
        actor=t.seller_desk,
        reason="plan",
        tracking_number="CT-77",
        carrier_partner=c.carrier,
    )
    c.package = services.shipment_pack(
        shipment=c.shipment,
        contents=[(c.shipment.lines.get(), 10)],
        actor=t.seller_warehouse,
        reason="case 1",
    )
    services.shipment_dispatch(shipment=c.shipment, actor=t.seller_warehouse, reason="truck")
    c.not_carried = services.shipment_create_from_order(
        order=allocated_order(t, (t.insulin, 2)), actor=t.seller_desk, reason="plan"
    )
    c.url = f"{API}/shipments/{c.shipment.pk}/"
    return c


def parties(c: Carried) -> list:
    return [c.t.buyer_user, c.t.seller_desk, c.t.net.regulator]


@pytest.mark.parametrize("user", ["driver", "dispatcher"])
def test_the_carrier_reads_the_delivery_fields_only(carried, user):
    c = carried
    client = client_for(getattr(c, user))

    detail = client.get(c.url)
    listed = client.get(f"{API}/shipments/")

    assert detail.status_code == 200, detail.content
    body = detail.json()
    assert set(body) == CARRIER_FIELDS
    assert (body["number"], body["status"], body["tracking_number"]) == (
        c.shipment.number,
        ShipmentStatus.DISPATCHED,
        "CT-77",
    )
    assert set(body["to_site"]) == SITE_FIELDS
    assert body["to_site"]["city"] == c.t.net.wholesaler_site.city
    assert body["from_site"]["gln"] == c.t.net.manufacturer_site.gln
    assert listed.status_code == 200
    (row,) = listed.json()["results"]
    assert row == body


def test_the_parties_read_the_whole_shipment(carried):
    c = carried
    for user in parties(c):
        body = client_for(user).get(c.url).json()
        assert {"order", "lines", "packages", "received_at"} <= set(body), user
        assert body["from_site"] == c.t.net.manufacturer_site.pk


@pytest.mark.parametrize("path", PARTY_READS)
def test_party_reads_do_not_exist_for_the_carrier(carried, path):
    c = carried
    assert client_for(c.driver).get(f"{c.url}{path}").status_code == 404
    for user in parties(c):
        assert client_for(user).get(f"{c.url}{path}").status_code == 200, (user, path)


@pytest.mark.parametrize("suffix", ["label.png", "label.pdf"])
def test_package_labels_do_not_exist_for_the_carrier(carried, suffix):
    c = carried
    url = f"{API}/packages/{c.package.sscc}/{suffix}"
    assert client_for(c.driver).get(url).status_code == 404
    assert client_for(c.t.seller_warehouse).get(url).status_code == 200


@pytest.mark.parametrize(("action", "body"), WAREHOUSE_WRITES)
def test_warehouse_actions_do_not_exist_for_the_carrier(carried, action, body):
    c = carried
    response = client_for(c.dispatcher).post(f"{c.url}{action}/", body, format="json")
    assert response.status_code == 404, response.content


def test_the_carrier_delivers_its_shipment_and_reads_the_answer_narrowly(carried):
    c = carried
    foreign = f"{API}/shipments/{c.not_carried.pk}/"
    assert client_for(c.driver).get(foreign).status_code == 404
    assert (
        client_for(c.driver).post(f"{foreign}deliver/", {"reason": "pod"}, format="json")
    ).status_code == 404

    response = client_for(c.driver).post(f"{c.url}deliver/", {"reason": "POD 4411"}, format="json")

    assert response.status_code == 200, response.content
    assert set(response.json()) == CARRIER_FIELDS
    assert response.json()["status"] == ShipmentStatus.DELIVERED
    assert response.json()["delivered_at"]


def test_the_carrier_cannot_learn_a_shipments_order_by_filtering(carried):
    c = carried
    order = c.shipment.order_id

    carrier_sees = client_for(c.driver).get(f"{API}/shipments/", {"order": order}).json()
    party_sees = client_for(c.t.seller_desk).get(f"{API}/shipments/", {"order": order}).json()

    assert carrier_sees["results"] == []
    assert [row["number"] for row in party_sees["results"]] == [c.shipment.number]
