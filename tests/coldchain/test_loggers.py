"""Loggers: registry, calibration, assignment to shipments, MQTT credentials; and their API."""

from __future__ import annotations

import base64
import datetime
import hashlib

import pytest

from coldchain import services
from coldchain.models import Logger, LoggerAssignment
from orders import services as order_services
from pharmadms.exceptions import NotPermitted, RuleViolation
from tests.coldchain.conftest import minutes
from tests.conftest import client_for
from tests.factories import LoggerFactory, UserFactory
from tests.orders.conftest import planned_shipment

API = "/api/v1"


def assign(trip, logger, **kwargs):
    return services.logger_assign(
        logger=logger,
        shipment=kwargs.pop("shipment", trip.shipment),
        actor=kwargs.pop("actor", trip.trade.seller_warehouse),
        reason="pack the logger",
        **kwargs,
    )


def test_an_uncalibrated_logger_cannot_be_assigned(trip):
    never = LoggerFactory(owner=trip.trade.seller, calibration_certificate="", device_id="LG-N")
    lapsed = LoggerFactory(
        owner=trip.trade.seller, device_id="LG-L", calibration_due_on=datetime.date(2020, 1, 1)
    )
    for logger in (never, lapsed):
        with pytest.raises(RuleViolation) as refused:
            assign(trip, logger)
        assert refused.value.code == "logger_not_calibrated"
    assert LoggerAssignment.objects.count() == 1  # the fixture's own


def test_calibration_must_last_the_whole_window(trip):
    due = trip.t0.date() + datetime.timedelta(days=2)
    logger = LoggerFactory(owner=trip.trade.seller, device_id="LG-D", calibration_due_on=due)
    with pytest.raises(RuleViolation) as refused:
        assign(trip, logger, starts_at=trip.t0, ends_at=trip.t0 + datetime.timedelta(days=5))
    assert refused.value.code == "logger_not_calibrated"
    assert assign(trip, logger, starts_at=trip.t0, ends_at=trip.t0 + datetime.timedelta(days=1))


def test_a_loggers_windows_never_overlap(trip):
    # The fixture's logger travels from t0 until the shipment is received (an open window).
    second = planned_shipment(trip.trade, (trip.trade.vaccine, 10))
    with pytest.raises(RuleViolation) as refused:
        assign(trip, trip.logger, shipment=second, starts_at=minutes(trip, 600))
    assert refused.value.code == "assignment_overlap"
    # Once taken off the first shipment, the logger may go with the next one.
    services.logger_assignment_end(
        assignment=trip.assignment,
        actor=trip.trade.seller_warehouse,
        reason="logger taken off at the hub",
        ends_at=minutes(trip, 500),
    )
    with pytest.raises(RuleViolation):
        assign(trip, trip.logger, shipment=second, starts_at=minutes(trip, 499))
    assert assign(trip, trip.logger, shipment=second, starts_at=minutes(trip, 500))


def test_a_received_shipment_takes_no_logger(trip):
    shipment = trip.shipment
    order_services.shipment_receive(
        shipment=shipment,
        lines=[
            {"line": line.pk, "received_quantity": line.quantity, "damaged_quantity": 0}
            for line in shipment.lines.all()
        ],
        actor=trip.trade.buyer_warehouse,
        reason="checked in",
    )
    with pytest.raises(RuleViolation) as refused:
        assign(trip, LoggerFactory(owner=trip.trade.seller, device_id="LG-R"))
    assert refused.value.code == "invalid_status_transition"


def test_only_the_sellers_staff_assign_their_own_loggers(trip):
    buyer_logger = LoggerFactory(owner=trip.trade.buyer, device_id="LG-B")
    with pytest.raises(NotPermitted):
        assign(trip, buyer_logger)
    with pytest.raises(NotPermitted):
        assign(trip, LoggerFactory(owner=trip.trade.seller), actor=trip.trade.buyer_warehouse)
    with pytest.raises(NotPermitted):
        assign(trip, LoggerFactory(owner=trip.trade.seller), actor=trip.net.qa)


def test_credentials_are_a_mosquitto_password_hash_shown_once(trip):
    issued = services.logger_credentials_issue(
        logger=trip.logger, actor=trip.net.qa, reason="first provisioning"
    )
    trip.logger.refresh_from_db()
    stored = trip.logger.mqtt_password_hash
    assert issued.username == "LG-0001"
    assert issued.password not in stored
    _, scheme, iterations, salt, digest = stored.split("$")
    assert (scheme, iterations) == ("7", "101")
    expected = hashlib.pbkdf2_hmac("sha512", issued.password.encode(), base64.b64decode(salt), 101)
    assert base64.b64decode(digest) == expected
    assert services.mosquitto_password_check(issued.password, stored)
    assert not services.mosquitto_password_check("guess", stored)
    assert services.mosquitto_password_file([trip.logger]) == f"LG-0001:{stored}\n"
    # The hash stays out of the history (and so out of the audit trail and its viewer).
    assert not hasattr(trip.logger.history.latest(), "mqtt_password_hash")


# --- API -----------------------------------------------------------------------------------


def test_qa_registers_a_logger_and_corrects_its_calibration(network):
    client = client_for(network.qa)
    created = client.post(
        f"{API}/loggers/",
        {
            "device_id": "LG-0100",
            "device_model": "ColdTrack T1",
            "calibration_certificate": "CAL-2026-17",
            "calibration_due_on": "2027-06-30",
            "reason": "new logger",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.data["owner"] == network.manufacturer.pk
    assert created.data["has_credentials"] is False
    pk = created.data["id"]

    changed = client.patch(
        f"{API}/loggers/{pk}/",
        {"calibration_due_on": "2028-06-30", "reason": "recalibrated"},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.data["calibration_due_on"] == "2028-06-30"
    assert client.get(f"{API}/loggers/{pk}/history/").status_code == 200

    renamed = client.patch(
        f"{API}/loggers/{pk}/", {"device_id": "LG-9", "reason": "x"}, format="json"
    )
    assert renamed.status_code == 400
    assert renamed.json()["code"] == "field_not_editable"


def test_a_device_id_must_be_a_topic_level(network):
    response = client_for(network.qa).post(
        f"{API}/loggers/",
        {"device_id": "LG/#", "device_model": "x", "reason": "new"},
        format="json",
    )
    assert response.status_code == 400


def test_credentials_over_the_api(trip):
    response = client_for(trip.net.qa).post(
        f"{API}/loggers/{trip.logger.pk}/credentials/", {"reason": "provision"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["username"] == "LG-0001"
    assert body["topic"] == "pharmadms/v1/loggers/LG-0001/readings"
    assert body["acl_pattern"] == "pattern write pharmadms/v1/loggers/%u/readings"
    assert body["password_file_line"].startswith("LG-0001:$7$101$")
    assert services.mosquitto_password_check(
        body["password"], Logger.objects.get(pk=trip.logger.pk).mqtt_password_hash
    )


def test_assigning_over_the_api(trip):
    spare = LoggerFactory(owner=trip.trade.seller, device_id="LG-0002")
    response = client_for(trip.trade.seller_warehouse).post(
        f"{API}/loggers/{spare.pk}/assign/",
        {"shipment": trip.shipment.pk, "reason": "second logger on the pallet"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.data["starts_at"] is not None
    assert response.data["device_id"] == "LG-0002"


def test_logger_scoping(trip):
    net = trip.net
    mine = trip.logger  # Acme's
    # South Wholesale sees none of Acme's loggers.
    other = client_for(net.other_user)
    assert other.get(f"{API}/loggers/").data["results"] == []
    assert other.get(f"{API}/loggers/{mine.pk}/").status_code == 404
    other_qa = UserFactory(username="oqa2", partner=net.other, role="qa_officer")
    assert (
        client_for(other_qa)
        .post(f"{API}/loggers/{mine.pk}/credentials/", {"reason": "x"}, format="json")
        .status_code
        == 404
    )
    # The regulator reads all and writes nothing; anonymous callers are challenged.
    regulator = client_for(net.regulator)
    assert regulator.get(f"{API}/loggers/{mine.pk}/").status_code == 200
    refused = regulator.post(
        f"{API}/loggers/", {"device_id": "LG-R", "device_model": "x", "reason": "x"}, format="json"
    )
    assert refused.status_code == 403
    from rest_framework.test import APIClient

    assert APIClient().get(f"{API}/loggers/").status_code == 401
    # A warehouse operator assigns but does not register.
    warehouse = client_for(net.warehouse)
    assert (
        warehouse.post(
            f"{API}/loggers/", {"device_id": "LG-W", "device_model": "x", "reason": "x"}
        ).status_code
        == 403
    )
