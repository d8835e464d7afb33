"""A shipment's EPCIS 2.0 document validates against GS1's JSON schema and says the right things."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings

from orders import services
from orders.epcis import lot_class_id, shipment_epcis_document
from tests.factories import ProductFactory
from tests.orders.conftest import planned_shipment

SCHEMA = (
    Path(settings.BASE_DIR).parent / "shared" / "standards" / "epcis" / "EPCIS-JSON-Schema.json"
)


@pytest.fixture(scope="module")
def validator():
    if not SCHEMA.exists():
        pytest.skip("needs GS1's EPCIS schema at ../shared/standards/epcis/")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def assert_valid(validator, document) -> None:
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def test_the_lgtin_splits_the_gtin_at_the_company_prefix(network):
    product = ProductFactory(gtin="07038010000065", manufacturer=network.manufacturer)
    assert lot_class_id(product, "AB/12") == "urn:epc:class:lgtin:703801.0000006.AB%2F12"


def test_shipping_and_receiving_events(shipping, validator):
    t = shipping
    shipment = planned_shipment(t, (t.vaccine, 50))
    shipment = services.shipment_dispatch(
        shipment=shipment, actor=t.seller_warehouse, reason="truck 7"
    )
    document = shipment_epcis_document(shipment)
    assert_valid(validator, document)
    assert document["@context"] == [
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
    ]
    assert (document["type"], document["schemaVersion"]) == ("EPCISDocument", "2.0")
    (shipping_event,) = document["epcisBody"]["eventList"]
    assert shipping_event["type"] == "ObjectEvent"
    assert (shipping_event["action"], shipping_event["bizStep"]) == ("OBSERVE", "shipping")
    assert shipping_event["disposition"] == "in_transit"
    assert shipping_event["eventTimeZoneOffset"] == "+00:00"
    quantities = {q["epcClass"]: q["quantity"] for q in shipping_event["quantityList"]}
    assert quantities == {
        lot_class_id(t.vaccine, "V200"): 40,
        lot_class_id(t.vaccine, "V400"): 10,
    }
    assert all(key.startswith("urn:epc:class:lgtin:") for key in quantities)
    assert shipping_event["readPoint"] == {
        "id": f"https://id.gs1.org/414/{t.net.manufacturer_site.gln}"
    }
    assert {"type": "owning_party", "source": f"https://id.gs1.org/417/{t.seller.gln}"} in (
        shipping_event["sourceList"]
    )
    assert {
        "type": "owning_party",
        "destination": f"https://id.gs1.org/417/{t.buyer.gln}",
    } in shipping_event["destinationList"]
    assert {
        "type": "po",
        "bizTransaction": f"urn:epcglobal:cbv:bt:{t.buyer.gln}:{shipment.order.number}",
    } in shipping_event["bizTransactionList"]

    line_200, line_400 = shipment.lines.order_by("batch__expires_on")
    services.shipment_receive(
        shipment=shipment,
        lines=[
            {"line": line_200.pk, "received_quantity": 40},
            {"line": line_400.pk, "received_quantity": 7, "damaged_quantity": 3},
        ],
        actor=t.buyer_warehouse,
        reason="goods in",
    )
    document = shipment_epcis_document(shipment)
    assert_valid(validator, document)
    events = document["epcisBody"]["eventList"]
    assert [(e["bizStep"], e["disposition"]) for e in events] == [
        ("shipping", "in_transit"),
        ("receiving", "in_progress"),
        ("receiving", "damaged"),
    ]
    received = {q["epcClass"]: q["quantity"] for q in events[1]["quantityList"]}
    assert received == {lot_class_id(t.vaccine, "V200"): 40, lot_class_id(t.vaccine, "V400"): 7}
    assert events[1]["bizLocation"] == {"id": f"https://id.gs1.org/414/{t.net.wholesaler_site.gln}"}


def test_the_schema_catches_a_broken_document(shipping, validator):
    t = shipping
    shipment = services.shipment_dispatch(
        shipment=planned_shipment(t, (t.vaccine, 5)), actor=t.seller_warehouse, reason="go"
    )
    document = shipment_epcis_document(shipment)
    document["epcisBody"]["eventList"][0]["action"] = "SHIPPED"
    assert list(validator.iter_errors(document))
