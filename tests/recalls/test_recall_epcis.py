"""A recall's EPCIS 2.0 document: the trace's shipping events and the ``recalled`` events where
the lot is held; valid against GS1's JSON schema; read by the firm and regulators only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders.epcis import lot_class_id
from recalls import services
from recalls.epcis import recall_epcis_document
from tests.conftest import client_for
from tests.factories import TEST_PASSWORD
from tests.recalls.test_recall_services import TERMS

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


def open_recall(c):
    return services.recall_open(
        lots=[c.lot_a],
        signer=c.manufacturer.qa,
        password=TEST_PASSWORD,
        reason="QA decision",
        **TERMS,
    ).recall


def test_the_recall_document_holds_the_shipping_and_the_recalled_events(traded, validator):
    c = traded
    recall = open_recall(c)

    document = recall_epcis_document(recall)

    assert_valid(validator, document)
    assert (document["type"], document["schemaVersion"]) == ("EPCISDocument", "2.0")
    events = document["epcisBody"]["eventList"]
    lot_a = lot_class_id(c.product, "LOTA")
    shipping = [e for e in events if e["bizStep"] == "shipping"]
    # Acme → North (300, and the 20 of lot A in the split delivery), Acme → South, North → One,
    # North → Two, South → Two, South → the hospital (in transit): lot A's units only.
    assert sorted(e["quantityList"][0]["quantity"] for e in shipping) == [
        20,
        30,
        40,
        50,
        70,
        200,
        300,
    ]
    assert all(q["epcClass"] == lot_a for e in shipping for q in e["quantityList"])
    assert all(e["disposition"] == "in_transit" for e in shipping)
    recalled = {
        e["bizLocation"]["id"]: e["quantityList"][0]["quantity"]
        for e in events
        if e["disposition"] == "recalled"
    }
    site = {m.partner.pk: f"https://id.gs1.org/414/{m.site.gln}" for m in c.members.values()}
    # held now (storage, quarantine, returns): the 40 units in transit to the hospital are not
    assert recalled == {
        site[c.north.partner.pk]: 210,
        site[c.south.partner.pk]: 130,
        site[c.p1.partner.pk]: 40,
        site[c.p2.partner.pk]: 100,
    }
    event = next(e for e in events if e["disposition"] == "recalled")
    assert event["bizStep"] == "holding"
    assert event["persistentDisposition"] == {"set": ["recalled"]}
    assert event["bizTransactionList"] == [
        {"bizTransaction": f"urn:epcglobal:cbv:bt:{c.manufacturer.partner.gln}:{recall.number}"}
    ]


def test_the_document_costs_a_fixed_number_of_queries(traded):
    c = traded
    recall = open_recall(c)
    with CaptureQueriesContext(connection) as few:
        recall_epcis_document(recall)
    for name in ("Pharmacy Three", "Pharmacy Four", "Pharmacy Five"):
        c.ship(c.north, c.add(name), 5)
    with CaptureQueriesContext(connection) as more:
        recall_epcis_document(recall)
    assert len(more.captured_queries) == len(few.captured_queries)


def test_a_drill_exports_the_shipping_events_only(traded, validator):
    c = traded
    drill = services.recall_drill_run(lots=[c.lot_a], actor=c.manufacturer.qa, reason="drill")

    document = recall_epcis_document(drill)

    assert_valid(validator, document)
    events = document["epcisBody"]["eventList"]
    assert len(events) == 7
    assert {e["bizStep"] for e in events} == {"shipping"}


def test_the_api_serves_it_to_the_firm_and_the_regulator_only(traded, validator):
    c = traded
    recall = open_recall(c)
    url = f"/api/v1/recalls/{recall.pk}/epcis/"

    for reader in (c.manufacturer.qa, c.net.regulator):
        response = client_for(reader).get(url)
        assert response.status_code == 200, response.content
        assert_valid(validator, response.json())
    assert client_for(c.p1.buyer).get(url).status_code == 404  # a consignee: its rows only
    assert client_for(c.add("Never Supplied").buyer).get(url).status_code == 404
