"""The audit-trail viewer's API: who reads which entries, each filter, and a record's lineage."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditAction, AuditEntry, Signature, SignatureMeaning
from audit.services import signature_sign
from batches import services
from batches.models import Batch, StockMove
from partners import services as partner_services
from partners.models import Role
from tests.conftest import client_for
from tests.factories import TEST_PASSWORD, ProductFactory, UserFactory

ENTRIES = "/api/v1/audit/entries/"
LINEAGE = "/api/v1/audit/lineage/"


@dataclass
class Trail:
    """A lot created, corrected and signed by the manufacturer's QA, then corrected again; and
    a wholesaler that changes its own site and receives stock."""

    lot: Batch
    signature: Signature
    move: StockMove
    wholesaler_admin: object


def build_trail(net) -> Trail:
    product = ProductFactory(manufacturer=net.manufacturer, name="Insulin glargine")
    lot = services.batch_create(
        product=product,
        lot_number="INS-0042",
        manufactured_on=datetime.date(2026, 10, 1),
        expires_on=datetime.date(2027, 9, 30),
        actor=net.qa,
        reason="production order PO-118",
    )
    lot = services.batch_update_dates(
        batch=lot,
        actor=net.qa,
        reason="expiry misread from the batch record",
        expires_on=datetime.date(2027, 9, 15),
    )
    signature = signature_sign(
        signer=net.qa,
        password=TEST_PASSWORD,
        meaning=SignatureMeaning.REVIEWED,
        reason="batch record reviewed against the master formula",
        record=lot,
    )
    wholesaler_admin = UserFactory(username="wadmin", partner=net.wholesaler, role=Role.ADMIN)
    partner_services.site_update(
        site=net.wholesaler_site,
        actor=wholesaler_admin,
        reason="site renamed after the merger",
        name="North DC",
    )
    move = services.stock_receive(
        batch=lot,
        location=net.wholesaler_storage,
        quantity=5,
        actor=wholesaler_admin,
        reason="opening balance GR-7",
    )
    return Trail(lot=lot, signature=signature, move=move, wholesaler_admin=wholesaler_admin)


@pytest.fixture
def trail(network) -> Trail:
    return build_trail(network)


def all_results(client, query: str = "") -> list[dict]:
    """Every page of a filtered list (the API pages by 50)."""
    results, url = [], f"{ENTRIES}?limit=500&{query}"
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        results += body["results"]
        url = body["next"]
    return results


# --- who may read what -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["warehouse", "other_user"])
def test_users_without_an_auditor_role_are_refused(trail, network, role):
    response = client_for(getattr(network, role)).get(ENTRIES)

    assert response.status_code == 403
    assert response.json()["code"] == "role_not_permitted"


def test_anonymous_callers_are_refused(trail, api_client):
    assert api_client.get(ENTRIES).status_code == 401
    assert api_client.get(f"{LINEAGE}?model=batches.batch&id={trail.lot.pk}").status_code == 401


def test_regulator_reads_every_entry(trail, network):
    results = all_results(client_for(network.regulator))

    assert [r["sequence"] for r in results] == list(
        AuditEntry.objects.order_by("sequence").values_list("sequence", flat=True)
    )


def test_qa_officer_reads_own_partners_entries_and_entries_about_its_records(trail, network):
    results = all_results(client_for(network.qa))
    sequences = {r["sequence"] for r in results}

    written_by_us = set(
        AuditEntry.objects.filter(partner_id=network.manufacturer.pk).values_list(
            "sequence", flat=True
        )
    )
    assert written_by_us <= sequences
    # The product was written by a fixture with no actor; it is ours all the same.
    assert any(r["object_model"] == "batches.product" for r in results)
    assert {r["partner_id"] for r in results} <= {network.manufacturer.pk, None}
    assert not any(r["username"] == "wadmin" for r in results)


def test_another_partners_qa_officer_sees_nothing_written_by_us(trail, network):
    results = all_results(client_for(network.wholesaler_qa))

    assert results, "the wholesaler's own entries are there"
    assert not [r for r in results if r["partner_id"] == network.manufacturer.pk]
    assert not [r for r in results if r["object_model"] == "batches.batch"]
    models = {r["object_model"] for r in results}
    assert {"partners.site", "batches.stockmove"} <= models


def test_an_entry_of_another_partner_is_not_found(trail, network):
    ours = AuditEntry.objects.filter(partner_id=network.manufacturer.pk).first()

    assert client_for(network.qa).get(f"{ENTRIES}{ours.sequence}/").status_code == 200
    response = client_for(network.wholesaler_qa).get(f"{ENTRIES}{ours.sequence}/")
    assert response.status_code == 404


@pytest.mark.parametrize("auditor", ["qa", "regulator", "admin"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_trail_is_read_only(trail, network, auditor, method):
    client = client_for(getattr(network, auditor))
    sequence = AuditEntry.objects.filter(partner_id=network.manufacturer.pk).first().sequence
    url = ENTRIES if method == "post" else f"{ENTRIES}{sequence}/"

    response = getattr(client, method)(url, {"reason": "tidy up"})

    assert response.status_code == 405
    assert client.post(f"{LINEAGE}?model=batches.batch&id=1", {}).status_code == 405


def test_an_entry_shows_every_field_in_utc(trail, network):
    entry = AuditEntry.objects.get(action=AuditAction.SIGNED)

    body = client_for(network.qa).get(f"{ENTRIES}{entry.sequence}/").json()

    assert body == {
        "sequence": entry.sequence,
        "occurred_at": body["occurred_at"],
        "action": "signed",
        "object_model": "batches.batch",
        "object_id": str(trail.lot.pk),
        "source": "audit.signature",
        "record_id": trail.signature.pk,
        "user": network.qa.pk,
        "username": "qa",
        "partner_id": network.manufacturer.pk,
        "reason": "batch record reviewed against the master formula",
        "content_hash": entry.content_hash,
        "previous_hash": entry.previous_hash,
        "entry_hash": entry.entry_hash,
        "payload": None,
    }
    assert body["occurred_at"].endswith("Z")
    assert datetime.datetime.fromisoformat(body["occurred_at"]) == entry.occurred_at


def test_the_list_is_paginated(trail, network):
    body = client_for(network.regulator).get(f"{ENTRIES}?limit=3").json()

    assert body["count"] == AuditEntry.objects.count()
    assert len(body["results"]) == 3
    assert body["next"]
    newest_first = client_for(network.regulator).get(f"{ENTRIES}?limit=3&ordering=-sequence")
    assert newest_first.json()["results"][0]["sequence"] == AuditEntry.objects.last().sequence


# --- filters ---------------------------------------------------------------------------------


def test_model_filter(trail, network):
    client = client_for(network.regulator)
    everything = all_results(client)

    results = all_results(client, "model=batches.batch")

    assert 0 < len(results) < len(everything)
    assert {r["object_model"] for r in results} == {"batches.batch"}
    assert len(results) == AuditEntry.objects.filter(object_model="batches.batch").count()


def test_object_filter(trail, network):
    other = services.batch_create(
        product=trail.lot.product,
        lot_number="INS-0043",
        manufactured_on=datetime.date(2026, 10, 2),
        expires_on=datetime.date(2027, 9, 30),
        actor=network.qa,
        reason="production order PO-119",
    )
    client = client_for(network.qa)

    results = all_results(client, f"model=batches.batch&object_id={trail.lot.pk}")

    # created, corrected, signed: three entries about this lot, none about the other one
    assert [(r["action"], r["object_id"]) for r in results] == [
        ("created", str(trail.lot.pk)),
        ("changed", str(trail.lot.pk)),
        ("signed", str(trail.lot.pk)),
    ]
    assert all_results(client, f"model=batches.batch&object_id={other.pk}")[0]["action"] == (
        "created"
    )


@pytest.mark.parametrize("by", ["username", "id"])
def test_user_filter(trail, network, by):
    value = trail.wholesaler_admin.username if by == "username" else trail.wholesaler_admin.pk

    results = all_results(client_for(network.regulator), f"user={value}")

    assert len(results) == 2  # the site renamed, the stock received
    assert {r["username"] for r in results} == {"wadmin"}
    assert {r["object_model"] for r in results} == {"partners.site", "batches.stockmove"}


def test_action_filter(trail, network):
    results = all_results(client_for(network.qa), "action=signed")

    assert [(r["action"], r["record_id"]) for r in results] == [("signed", trail.signature.pk)]


def test_time_range_filter(trail, network):
    client = client_for(network.regulator)
    everything = all_results(client)
    moment = AuditEntry.objects.get(action=AuditAction.SIGNED).occurred_at
    iso = moment.isoformat()

    after = all_results(client, f"occurred_after={iso.replace('+', '%2B')}")
    before = all_results(client, f"occurred_before={iso.replace('+', '%2B')}")

    assert after
    assert before
    assert all(datetime.datetime.fromisoformat(r["occurred_at"]) >= moment for r in after)
    assert all(datetime.datetime.fromisoformat(r["occurred_at"]) < moment for r in before)
    # from/to split the trail in two without losing or repeating an entry
    assert sorted(r["sequence"] for r in after + before) == [r["sequence"] for r in everything]


def test_filters_combine(trail, network):
    results = all_results(
        client_for(network.qa),
        f"model=batches.batch&user=qa&action=changed&object_id={trail.lot.pk}",
    )

    assert [r["reason"] for r in results] == ["expiry misread from the batch record"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("action=shredded", "invalid_choice"),
        ("model=batches.nothing", "invalid_choice"),
        ("occurred_after=yesterday", "invalid"),
    ],
)
def test_bad_filters_are_refused_with_a_code(trail, network, query, code):
    response = client_for(network.qa).get(f"{ENTRIES}?{query}")

    assert response.status_code == 400
    assert response.json()["code"] == code


# --- lineage ---------------------------------------------------------------------------------


def lineage(client, model: str, object_id) -> dict:
    return client.get(f"{LINEAGE}?model={model}&id={object_id}")


def test_lineage_lists_versions_newest_first_with_diffs_and_seals(trail, network):
    response = lineage(client_for(network.qa), "batches.batch", trail.lot.pk)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model"] == "batches.batch"
    assert body["object_id"] == str(trail.lot.pk)
    assert "INS-0042" in body["object"]
    changed, created = body["versions"]
    assert changed["history_type"] == "~"
    assert changed["user"] == "qa"
    assert changed["reason"] == "expiry misread from the batch record"
    assert changed["changes"] == [{"field": "expires_on", "old": "2027-09-30", "new": "2027-09-15"}]
    assert created["history_type"] == "+"
    assert created["reason"] == "production order PO-118"
    assert {"field": "lot_number", "old": None, "new": "INS-0042"} in created["changes"]
    for version in body["versions"]:
        seal = AuditEntry.objects.get(
            source="batches.historicalbatch", record_id=version["history_id"]
        )
        assert version["sealed_sequence"] == seal.sequence


def test_lineage_shows_the_signature_valid_then_changed_after_signature(trail, network):
    client = client_for(network.qa)
    (signature,) = lineage(client, "batches.batch", trail.lot.pk).json()["signatures"]
    signed_version = lineage(client, "batches.batch", trail.lot.pk).json()["versions"][0]

    assert signature["printed_name"] == network.qa.get_full_name()
    assert signature["meaning"] == "reviewed"
    assert signature["reason"] == "batch record reviewed against the master formula"
    assert signature["record_version"] == signed_version["history_id"]
    assert signature["status"] == "valid"
    seal = AuditEntry.objects.get(source="audit.signature", record_id=trail.signature.pk)
    assert signature["sealed_sequence"] == seal.sequence

    # when the lot changes after it was signed
    services.batch_update_dates(
        batch=trail.lot,
        actor=network.qa,
        reason="expiry corrected again",
        manufactured_on=datetime.date(2026, 10, 2),
    )

    # then
    body = lineage(client, "batches.batch", trail.lot.pk).json()
    assert len(body["versions"]) == 3
    assert body["versions"][0]["changes"] == [
        {"field": "manufactured_on", "old": "2026-10-01", "new": "2026-10-02"}
    ]
    assert body["signatures"][0]["status"] == "changed after signature"


def test_lineage_queries_do_not_grow_with_versions(trail, network):
    client = client_for(network.regulator)
    with CaptureQueriesContext(connection) as before:
        lineage(client, "batches.batch", trail.lot.pk)
    for day in (2, 3, 4, 5):
        services.batch_update_dates(
            batch=trail.lot,
            actor=network.qa,
            reason=f"correction {day}",
            manufactured_on=datetime.date(2026, 10, day),
        )
    with CaptureQueriesContext(connection) as after:
        body = lineage(client, "batches.batch", trail.lot.pk).json()

    assert len(body["versions"]) == 6
    assert len(after.captured_queries) == len(before.captured_queries)


@pytest.mark.parametrize("model", ["batches.nothing", "batches.stockmove", "audit.auditentry", ""])
def test_lineage_refuses_a_model_without_history(trail, network, model):
    response = lineage(client_for(network.qa), model, 1)

    assert response.status_code == 400
    assert response.json()["code"] in {"unknown_model", "blank"}


def test_lineage_refuses_an_id_that_is_not_one(trail, network):
    response = lineage(client_for(network.qa), "batches.batch", "12abc")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_id"


def test_lineage_of_a_record_that_never_existed_is_not_found(trail, network):
    assert lineage(client_for(network.qa), "batches.batch", 999_999).status_code == 404


def test_lineage_of_another_partners_record_is_not_found(trail, network):
    response = lineage(client_for(network.wholesaler_qa), "batches.batch", trail.lot.pk)

    assert response.status_code == 404
    assert lineage(client_for(network.regulator), "batches.batch", trail.lot.pk).status_code == 200
    # the wholesaler's own site: its lineage names the wholesaler's admin and reason
    site = lineage(client_for(network.wholesaler_qa), "partners.site", network.wholesaler_site.pk)
    assert site.status_code == 200
    assert site.json()["versions"][0]["reason"] == "site renamed after the merger"
    assert lineage(
        client_for(network.qa), "partners.site", network.wholesaler_site.pk
    ).status_code == (404)


def test_lineage_is_for_auditors_only(trail, network):
    response = lineage(client_for(network.warehouse), "batches.batch", trail.lot.pk)

    assert response.status_code == 403
    assert response.json()["code"] == "role_not_permitted"


def test_signature_list_for_record_gives_each_signature_its_status(trail, network):
    from audit.selectors import signature_list_for_record

    (signature,) = signature_list_for_record(record=trail.lot)
    assert signature.pk == trail.signature.pk
    assert signature.status == "valid"

    services.batch_update_dates(
        batch=trail.lot, actor=network.qa, reason="re-dated", expires_on=datetime.date(2027, 9, 1)
    )

    assert [s.status for s in signature_list_for_record(record=trail.lot)] == [
        "changed after signature"
    ]
