"""`GET /api/v1/<resource>/<id>/history/`: every version, oldest first, with who, when, why
and which fields changed."""

from __future__ import annotations

import pytest
from django.utils.dateparse import parse_datetime

from batches.models import BatchStatus
from tests.conftest import client_for
from tests.factories import BatchFactory, ProductFactory, gln

API = "/api/v1"


def history(client, url: str) -> list[dict]:
    response = client.get(f"{url}history/")
    assert response.status_code == 200, response.content
    assert response.data["count"] == len(response.data["results"])
    return response.json()["results"]


@pytest.fixture
def created_site(network):
    """A site created and then corrected through the API by the manufacturer's admin."""
    client = client_for(network.admin)
    created = client.post(
        f"{API}/sites/",
        {
            "name": "Plant 2",
            "gln": gln(800_001),
            "address_line": "Werkstraße 2",
            "postal_code": "80331",
            "city": "München",
            "country": "DE",
            "reason": "new plant opened",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    url = f"{API}/sites/{created.data['id']}/"
    patched = client.patch(url, {"city": "Augsburg", "reason": "address typo"}, format="json")
    assert patched.status_code == 200, patched.content
    return url


def test_create_then_correct_gives_two_versions_in_order(network, created_site):
    entries = history(client_for(network.admin), created_site)

    assert [entry["history_type"] for entry in entries] == ["+", "~"]
    assert [entry["history_user"] for entry in entries] == ["mfadmin", "mfadmin"]
    assert [entry["history_change_reason"] for entry in entries] == [
        "new plant opened",
        "address typo",
    ]
    first, second = (parse_datetime(entry["history_date"]) for entry in entries)
    assert first <= second
    assert entries[0]["history_id"] < entries[1]["history_id"]


def test_the_first_version_lists_every_field_and_the_next_only_what_changed(network, created_site):
    created, corrected = history(client_for(network.admin), created_site)

    created_fields = {change["field"]: change for change in created["changes"]}
    assert {"name", "gln", "city", "partner_id"} <= set(created_fields)
    assert created_fields["city"] == {"field": "city", "old": None, "new": "München"}
    assert corrected["changes"] == [{"field": "city", "old": "München", "new": "Augsburg"}]


def test_a_lot_date_correction_is_in_its_history(network):
    product = ProductFactory(manufacturer=network.manufacturer)
    client = client_for(network.qa)
    created = client.post(
        f"{API}/batches/",
        {
            "product": product.pk,
            "lot_number": "H001",
            "manufactured_on": "2026-02-01",
            "expires_on": "2027-12-31",
            "reason": "lot registered",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    url = f"{API}/batches/{created.data['id']}/"
    patched = client.patch(
        url, {"expires_on": "2027-11-30", "reason": "label proof"}, format="json"
    )
    assert patched.status_code == 200, patched.content

    entries = history(client, url)

    assert [(e["history_user"], e["history_change_reason"]) for e in entries] == [
        ("qa", "lot registered"),
        ("qa", "label proof"),
    ]
    assert entries[1]["changes"] == [
        {"field": "expires_on", "old": "2027-12-31", "new": "2027-11-30"}
    ]
    status_on_create = next(c for c in entries[0]["changes"] if c["field"] == "status")
    assert status_on_create["new"] == BatchStatus.QUARANTINE


def test_a_refused_correction_adds_no_version(network):
    """A released lot's dates are locked: the refusal leaves the history as it was."""
    lot = BatchFactory(product=ProductFactory(manufacturer=network.manufacturer))
    client = client_for(network.qa)
    url = f"{API}/batches/{lot.pk}/"
    before = history(client, url)

    refused = client.patch(url, {"expires_on": "2027-06-30", "reason": "late fix"}, format="json")

    assert refused.status_code == 409
    assert history(client, url) == before


def test_history_is_paginated(network, created_site):
    response = client_for(network.admin).get(f"{created_site}history/?limit=1")

    assert response.status_code == 200
    assert response.data["count"] == 2
    assert [entry["history_type"] for entry in response.json()["results"]] == ["+"]
    assert response.data["next"] is not None


def test_history_is_read_only(network, created_site):
    client = client_for(network.admin)
    before = history(client, created_site)

    response = client.post(f"{created_site}history/", {"reason": "rewrite"}, format="json")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert history(client, created_site) == before


def test_regulator_reads_any_partners_history(network, created_site):
    entries = history(client_for(network.regulator), created_site)
    assert [entry["history_change_reason"] for entry in entries] == [
        "new plant opened",
        "address typo",
    ]


def test_a_partner_directory_entry_shows_its_corrections(network):
    client = client_for(network.admin)
    url = f"{API}/partners/{network.manufacturer.pk}/"
    response = client.patch(
        url, {"contact_email": "qa@acme.example", "reason": "new QA mailbox"}, format="json"
    )
    assert response.status_code == 200, response.content

    entries = history(client_for(network.regulator), url)

    assert entries[-1]["history_user"] == "mfadmin"
    assert entries[-1]["history_change_reason"] == "new QA mailbox"
    assert entries[-1]["changes"] == [
        {
            "field": "contact_email",
            "old": network.manufacturer.contact_email,
            "new": "qa@acme.example",
        }
    ]


@pytest.mark.parametrize("resource", ["partners", "products"])
def test_directory_history_is_for_the_owner_and_regulators(network, resource):
    """Everyone reads the directory; only the owner and regulators read who changed it, why."""
    product = ProductFactory(manufacturer=network.manufacturer)
    pk = network.manufacturer.pk if resource == "partners" else product.pk
    url = f"/api/v1/{resource}/{pk}/history/"
    assert client_for(network.other_user).get(f"/api/v1/{resource}/{pk}/").status_code == 200
    assert client_for(network.other_user).get(url).status_code == 404
    assert client_for(network.qa).get(url).status_code == 200
    assert client_for(network.regulator).get(url).status_code == 200
