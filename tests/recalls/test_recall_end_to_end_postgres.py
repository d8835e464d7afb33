"""A recall from end to end on PostgreSQL: opened over the API (signed) → picks of the lot
refused at every selling tier, by the service and by the scan API → consignees notified (a
local webhook receiver) → acknowledgements → recalled units returned into the suppliers'
returns holding, tied to the recall → the report's figures match the ledger and the answers."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from integrations.models import WebhookDelivery, WebhookEndpoint
from orders import services as orders
from pharmadms.exceptions import ApplicationError
from recalls.models import Recall, RecallConsignee
from tests.conftest import client_for
from tests.factories import TEST_PASSWORD, datamatrix
from tests.integrations.conftest import receiver  # noqa: F401 - a real local HTTP server

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: set DATABASE_URL=postgres://...",
    ),
]

API = "/api/v1"


def plan(c, seller, buyer, quantity):
    """An order confirmed, allocated and planned as a shipment, not picked yet."""
    c._agree(seller, buyer)
    order = orders.order_create(
        buyer=buyer.partner,
        seller=seller.partner,
        ship_to=buyer.site,
        lines=[{"product": c.product, "quantity": quantity}],
        actor=buyer.buyer,
        reason="order",
    )
    orders.order_submit(order=order, actor=buyer.buyer, reason="send")
    orders.order_confirm(order=order, actor=seller.desk, reason="ok")
    orders.order_allocate(order=order, actor=seller.desk, reason="allocate")
    return orders.shipment_create_from_order(order=order, actor=seller.desk, reason="plan")


def give_back(c, shipment, customer, seller, quantity, reason_code="recall"):
    line = shipment.lines.get()
    ret = orders.return_request_create(
        shipment=shipment,
        lines=[{"shipment_line": line.pk, "quantity": quantity, "reason_code": reason_code}],
        actor=customer.buyer,
        reason="recall: units sent back",
        temperature_evidence="LOG-REF-7",
    )
    orders.return_authorise(return_request=ret, actor=seller.desk, reason="recall return")
    orders.return_receive(return_request=ret, actor=seller.warehouse, reason="checked in")
    return ret


def test_a_recall_from_opening_to_its_report(
    chain,
    receiver,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    c = chain
    lot = c.lot("E2E1", 600)
    c.p1, c.p2 = c.add("Pharmacy One"), c.add("Pharmacy Two")
    to_north = c.ship(c.manufacturer, c.north, 300)
    c.ship(c.manufacturer, c.south, 200)
    to_p1 = c.ship(c.north, c.p1, 50)
    c.ship(c.south, c.p2, 40)
    # shipments planned before the recall, at every selling tier
    planned = {
        "manufacturer": (c.manufacturer, plan(c, c.manufacturer, c.north, 20)),
        "north": (c.north, plan(c, c.north, c.p1, 10)),
        "south": (c.south, plan(c, c.south, c.p2, 10)),
    }
    for member in (c.north, c.south, c.p1, c.p2):
        endpoint = WebhookEndpoint(
            partner=member.partner, url=receiver.url, events=["recall.opened"], secret="s3cret"
        )
        endpoint._change_reason = "test: subscribed to recall notices"
        endpoint.save()

    # open: signed by the manufacturer's QA officer; notified after the commit
    with django_capture_on_commit_callbacks(execute=True):
        opened = client_for(c.manufacturer.qa).post(
            f"{API}/recalls/",
            {
                "lots": [lot.pk],
                "classification": "I",
                "depth": "retail",
                "recall_reason": "particulate matter in vials",
                "health_hazard": "risk of embolism",
                "strategy": "retail level; return to supplier; level A",
                "instructions": "quarantine every unit and return it to your supplier",
                "effectiveness_level": "A",
                "reason": "QA decision",
                "password": TEST_PASSWORD,
            },
            format="json",
        )
    assert opened.status_code == 201, opened.content
    recall = Recall.objects.get(pk=opened.data["recall"]["id"])

    # picks of the lot are refused at every tier (the scan names the recall)
    for member, shipment in planned.values():
        with pytest.raises(ApplicationError):
            orders.shipment_pick(
                shipment=shipment,
                batch=lot,
                quantity=1,
                location=member.storage,
                actor=member.warehouse,
                reason="pick",
            )
        scanned = client_for(member.warehouse).post(
            f"{API}/scans/",
            {
                "code": datamatrix(lot.product.gtin, lot.lot_number, lot.expires_on),
                "action": "pick",
                "location": member.storage.pk,
                "reference": shipment.number,
                "quantity": 1,
            },
            format="json",
        )
        assert scanned.status_code == 200, scanned.content
        assert scanned.json()["verdict"] == "refused"
        reasons = scanned.json()["reasons"]
        assert "lot_recalled" in [reason["code"] for reason in reasons]
        assert any(recall.number in reason["detail"] for reason in reasons)
        assert shipment.lines.get().picked_quantity == 0

    # notified: every consignee's endpoint got the notice
    deliveries = WebhookDelivery.objects.filter(event="recall.opened")
    assert deliveries.count() == 4
    assert set(deliveries.values_list("status", flat=True)) == {"succeeded"}
    bodies = [json.loads(request.body) for request in receiver.requests]
    assert {body["data"]["consignee_gln"] for body in bodies} == {
        m.partner.gln for m in (c.north, c.south, c.p1, c.p2)
    }
    assert all(body["data"]["number"] == recall.number for body in bodies)

    # the recalled units come back: Pharmacy One returns its 50 to North, North 100 to Acme
    give_back(c, to_p1, c.p1, c.north, 50)
    give_back(c, to_north, c.north, c.manufacturer, 100)

    # acknowledgements over the API
    answers = [
        (c.north, {"quantity_on_hand": 150, "quantity_returned": 100}),
        (c.south, {"quantity_on_hand": 160, "quantity_returned": 0}),
        (c.p1, {"quantity_on_hand": 0, "quantity_returned": 50}),
    ]
    for member, answer in answers:
        response = client_for(member.buyer).post(
            f"{API}/recalls/{recall.pk}/acknowledge/", answer, format="json"
        )
        assert response.status_code == 200, response.content
    # Pharmacy Two has not answered

    report = json.loads(
        client_for(c.net.regulator).get(f"{API}/recalls/{recall.pk}/report/?as=json").content
    )
    assert report["quantities"] == {
        "distributed_by_firm": 500,
        "shipped_to_consignees": 300 + 200 + 50 + 40,
        "received_by_consignees": 590,
        "returned_under_recall": 150,
    }
    assert sorted((r["partner"], r["quantity"], r["held_in"]) for r in report["returns"]) == [
        (c.north.partner.name, 100, "returns"),
        ("Pharmacy One", 50, "returns"),
    ]
    rows = {row["partner"]: row for row in report["consignees"]}
    assert rows["Pharmacy One"]["returned_received"] == 50
    assert rows["Pharmacy Two"]["status"] == "notified"
    total = report["effectiveness"]["total"]
    assert (total["consignees"], total["notified"], total["acknowledged"]) == (4, 4, 3)
    assert total["units_distributed"] == 590
    assert total["units_returned_received"] == 150
    # North 250 of 300, South 160 of 200, Pharmacy One 50 of 50; Pharmacy Two silent
    assert total["units_accounted"] == 250 + 160 + 50
    by_tier = {tier["tier"]: tier for tier in report["effectiveness"]["tiers"]}
    assert by_tier[1]["units_accounted"] == 410
    assert by_tier[2]["units_accounted"] == 50
    # the ledger agrees with the answers: the trace puts North's 150 and the 100 it returned
    trace = client_for(c.manufacturer.qa).get(f"{API}/batches/{lot.pk}/trace/").json()
    held = {node["partner_id"]: node["on_hand"] for node in trace["nodes"]}
    assert held[c.north.partner.pk] == 150 + 50  # its shelf, and Pharmacy One's returns
    assert held[c.manufacturer.partner.pk] == 100 + 100  # never shipped, and North's returns
    assert RecallConsignee.objects.filter(recall=recall, acknowledged_at__isnull=True).count() == 1
