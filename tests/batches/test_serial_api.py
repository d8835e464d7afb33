"""The serial API: packs the partner holds or made, and their decommissioning by the holder's
QA (a pack lost or stolen in transit, destroyed, damaged, …), after which its identifier is
dead: a scan of it is refused."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from batches import services as stock
from batches.models import SerialState
from tests.conftest import client_for
from tests.factories import BatchFactory, ProductFactory, datamatrix

API = "/api/v1/serials/"


@pytest.fixture
def lot(network):
    product = ProductFactory(manufacturer=network.manufacturer, name="Vaccine", strength="1 ml")
    return BatchFactory(
        product=product,
        lot_number="S1",
        expires_on=timezone.localdate() + datetime.timedelta(days=300),
    )


@pytest.fixture
def shipped_pack(network, lot):
    """A pack that left the manufacturer on a shipment and never arrived: still in its custody."""
    (pack,) = stock.serial_commission(
        batch=lot, serial_numbers=["P1"], actor=network.qa, reason="labelled"
    )
    return stock.serial_transition(
        serial=pack,
        to_state=SerialState.SHIPPED,
        actor=network.warehouse,
        reason="shipped",
        shipment_reference="SH-2026-000001",
    )


def decommission(user, pack, **body):
    payload = {"cause": "lost", "reason": "not in the delivery; carrier claim 42", **body}
    return client_for(user).post(f"{API}{pack.pk}/decommission/", payload, format="json")


def test_the_holders_qa_decommissions_a_pack_lost_in_transit(network, shipped_pack):
    response = decommission(network.qa, shipped_pack)

    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["state"], data["decommission_reason"]) == ("decommissioned", "lost")
    shipped_pack.refresh_from_db()
    assert shipped_pack.state == SerialState.DECOMMISSIONED
    latest = shipped_pack.history.latest()
    assert (latest.history_user, latest.history_change_reason) == (
        network.qa,
        "not in the delivery; carrier claim 42",
    )


def test_a_decommissioned_pack_is_refused_when_scanned(network, lot, shipped_pack):
    decommission(network.qa, shipped_pack, cause="stolen")
    code = datamatrix(lot.product.gtin, lot.lot_number, lot.expires_on, "P1")

    answer = (
        client_for(network.warehouse)
        .post(
            "/api/v1/scans/",
            {"code": code, "action": "verify", "location": network.manufacturer_storage.pk},
            format="json",
        )
        .json()
    )

    assert answer["verdict"] == "refused"
    assert [reason["code"] for reason in answer["reasons"]] == ["serial_decommissioned"]
    assert "stolen" in answer["reasons"][0]["detail"]


def test_another_partner_does_not_find_the_pack(network, shipped_pack):
    assert decommission(network.wholesaler_qa, shipped_pack).status_code == 404
    assert client_for(network.wholesaler_qa).get(f"{API}{shipped_pack.pk}/").status_code == 404
    shipped_pack.refresh_from_db()
    assert shipped_pack.state == SerialState.SHIPPED


def test_only_qa_decommissions(network, shipped_pack):
    response = decommission(network.warehouse, shipped_pack)
    assert response.status_code == 403
    shipped_pack.refresh_from_db()
    assert shipped_pack.state == SerialState.SHIPPED


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"cause": "misplaced"}, "invalid_choice"),
        ({"cause": ""}, "invalid_choice"),
        ({"reason": ""}, "reason_required"),
        ({"state": "received"}, "unknown_field"),
    ],
)
def test_a_bad_request_is_refused_and_changes_nothing(network, shipped_pack, body, code):
    response = decommission(network.qa, shipped_pack, **body)

    assert response.status_code == 400
    assert code in str(response.json())
    shipped_pack.refresh_from_db()
    assert shipped_pack.state == SerialState.SHIPPED


def test_a_dead_identifier_is_not_decommissioned_again(network, shipped_pack):
    assert decommission(network.qa, shipped_pack).status_code == 200
    response = decommission(network.qa, shipped_pack, cause="destroyed")
    assert (response.status_code, response.json()["code"]) == (409, "serial_decommissioned")


def test_the_list_shows_the_partners_packs_and_regulators_see_all(network, shipped_pack):
    mine = client_for(network.qa).get(API, {"state": "shipped"}).json()
    assert [pack["serial_number"] for pack in mine["results"]] == ["P1"]
    assert mine["results"][0]["shipment_reference"] == "SH-2026-000001"
    assert client_for(network.other_user).get(API).json()["results"] == []
    assert client_for(network.regulator).get(API).json()["count"] == 1
