"""The temperature record: readings of shipments, orders and lots over the API, the MKT
summary, the chart (SVG, PNG) and the EPCIS 2.0 document with sensor data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings

from coldchain.services import ingest_messages
from tests.coldchain.conftest import message, series
from tests.conftest import client_for
from tests.factories import ExcursionRuleFactory

API = "/api/v1"
SCHEMA = (
    Path(settings.BASE_DIR).parent / "shared" / "standards" / "epcis" / "EPCIS-JSON-Schema.json"
)


@pytest.fixture
def record(trip, django_capture_on_commit_callbacks):
    """Two hours of readings every 5 minutes with a 15-minute warm spell, and its excursion."""
    ExcursionRuleFactory(profile=trip.profile, kind="instant")
    values = [5.0] * 10 + [9.0, 11.0, 10.0] + [5.5] * 11
    with django_capture_on_commit_callbacks(execute=True):
        ingest_messages([message("LG-0001", series(trip, values))])
    return trip


def test_readings_of_a_shipment_its_order_and_its_lots(record):
    t = record
    client = client_for(t.net.wholesaler_qa)  # the buyer's QA
    shipment = client.get(f"{API}/shipments/{t.shipment.pk}/readings/?limit=100").json()
    order = client.get(f"{API}/orders/{t.shipment.order_id}/readings/?limit=100").json()
    assert shipment["count"] == order["count"] == 24
    first = shipment["results"][0]
    assert (first["device_id"], first["sequence"], first["celsius"]) == ("LG-0001", 1, "5.00")
    assert first["shipment_number"] == t.shipment.number
    # The lot: visible to its manufacturer (the seller here), with the trips it made.
    lot = client_for(t.net.qa).get(f"{API}/batches/{t.trade.lot_200.pk}/readings/?limit=5")
    assert lot.status_code == 200, lot.content
    assert lot.json()["count"] == 24


def test_readings_can_be_narrowed_to_a_time_window(record):
    t = record
    after = (t.t0.replace(tzinfo=None).isoformat() + "+00:00").replace("+", "%2B")
    response = client_for(t.net.qa).get(
        f"{API}/shipments/{t.shipment.pk}/readings/?measured_after={after}&limit=1"
    )
    assert response.json()["count"] == 24
    bad = client_for(t.net.qa).get(f"{API}/shipments/{t.shipment.pk}/readings/?measured_after=x")
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_time")


def test_another_partner_sees_no_readings(record):
    t = record
    client = client_for(t.net.other_user)
    for url in (
        f"{API}/shipments/{t.shipment.pk}/readings/",
        f"{API}/orders/{t.shipment.order_id}/readings/",
        f"{API}/batches/{t.trade.lot_200.pk}/readings/",
        f"{API}/shipments/{t.shipment.pk}/temperature/",
        f"{API}/shipments/{t.shipment.pk}/temperature/chart/",
        f"{API}/shipments/{t.shipment.pk}/temperature/epcis/",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["code"] == "not_found"
    assert (
        client_for(t.net.regulator)
        .get(f"{API}/shipments/{t.shipment.pk}/readings/")
        .json()["count"]
        == 24
    )
    from rest_framework.test import APIClient

    assert APIClient().get(f"{API}/shipments/{t.shipment.pk}/readings/").status_code == 401


def test_the_temperature_summary_gives_min_max_mean_and_mkt(record):
    t = record
    body = client_for(t.net.qa).get(f"{API}/shipments/{t.shipment.pk}/temperature/").json()
    (logger,) = body["loggers"]
    assert logger["readings"] == 24
    assert (logger["min_celsius"], logger["max_celsius"]) == (5.0, 11.0)
    assert 5.0 < logger["mean_celsius"] < logger["mkt_celsius"] < 11.0
    (window,) = logger["mkt_windows"]
    assert window["exceeds_limit"] is False
    assert body["profile"]["mkt_window_hours"] == 24
    assert [e["kind"] for e in body["excursions"]] == ["high"]


def test_the_chart_shows_band_readings_and_excursions(record):
    t = record
    response = client_for(t.net.qa).get(f"{API}/shipments/{t.shipment.pk}/temperature/chart/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg+xml")
    svg = response.content.decode()
    assert svg.startswith("<svg")
    assert 'class="band"' in svg
    assert 'class="readings"' in svg
    excursion_number = t.shipment.excursions.get().number
    assert f"<title>{excursion_number}</title>" in svg
    png = client_for(t.net.qa).get(f"{API}/shipments/{t.shipment.pk}/temperature/chart/?format=png")
    assert png.status_code == 200
    assert png["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def validator():
    if not SCHEMA.exists():
        pytest.skip("needs GS1's EPCIS schema at ../shared/standards/epcis/")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def test_the_epcis_sensor_document_validates_and_flags_the_alarm(record, validator):
    t = record
    response = client_for(t.net.qa).get(
        f"{API}/shipments/{t.shipment.pk}/temperature/epcis/?interval_minutes=30"
    )
    assert response.status_code == 200, response.content
    document = response.json()
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    events = document["epcisBody"]["eventList"]
    shipping, *sensor = events
    assert shipping["bizStep"] == "shipping"
    assert [e["bizStep"] for e in sensor] == ["sensor_reporting"] * 4
    assert all(e["quantityList"] == shipping["quantityList"] for e in sensor)
    reports = [e["sensorElementList"][0]["sensorReport"][0] for e in sensor]
    assert all(r["type"] == "Temperature" and r["uom"] == "CEL" for r in reports)
    alarm = "ALARM_CONDITION"  # the warm spell (50–65 min) falls in the 2nd and 3rd half hour
    assert [r.get("exception") for r in reports] == [None, alarm, alarm, None]
    assert (reports[1]["minValue"], reports[1]["maxValue"]) == (5.0, 11.0)
    metadata = sensor[0]["sensorElementList"][0]["sensorMetadata"]
    assert metadata["deviceID"] == "urn:pharmadms:logger:LG-0001"
    bad = client_for(t.net.qa).get(
        f"{API}/shipments/{t.shipment.pk}/temperature/epcis/?interval_minutes=0"
    )
    assert bad.json()["code"] == "invalid_interval"
