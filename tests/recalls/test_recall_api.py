"""The recall API and pages: open (signed), answer, close; trace; reports; who sees what."""

from __future__ import annotations

import json

import pytest

from integrations.models import WebhookDelivery, WebhookEndpoint
from recalls.models import Recall, StatusReport
from tests.conftest import client_for
from tests.factories import TEST_PASSWORD
from tests.integrations.conftest import receiver  # noqa: F401 - a real local HTTP server

API = "/api/v1"
BODY = {
    "classification": "II",
    "depth": "retail",
    "recall_reason": "label shows the wrong strength",
    "health_hazard": "possible under-dosing",
    "strategy": "retail level, return to supplier",
    "instructions": "quarantine and return all units",
    "effectiveness_level": "C",
    "reason": "QA decision",
}


def open_over_api(c, **extra):
    return client_for(c.manufacturer.qa).post(
        f"{API}/recalls/",
        BODY | {"lots": [c.lot_a.pk], "password": TEST_PASSWORD} | extra,
        format="json",
    )


def test_open_answer_and_read_the_report(traded, django_capture_on_commit_callbacks):
    c = traded
    with django_capture_on_commit_callbacks(execute=True):
        response = open_over_api(c)
    assert response.status_code == 201, response.content
    recall_id = response.data["recall"]["id"]
    assert response.data["signature"]["meaning"] == "recall_opened"
    assert response.data["recall"]["status"] == "open"  # in progress once the notices are out

    # Pharmacy One sees the recall, its own row and its notice, and answers.
    pharmacy = client_for(c.p1.buyer)
    assert pharmacy.get(f"{API}/recalls/{recall_id}/").status_code == 200
    rows = pharmacy.get(f"{API}/recalls/{recall_id}/consignees/").data
    assert [row["partner"] for row in rows] == [c.p1.partner.pk]
    assert len(pharmacy.get(f"{API}/recalls/{recall_id}/notices/").data) == 1
    answer = pharmacy.post(
        f"{API}/recalls/{recall_id}/acknowledge/",
        {"quantity_on_hand": 40, "quantity_returned": 10},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert answer.data["status"] == "acknowledged"
    too_many = pharmacy.post(
        f"{API}/recalls/{recall_id}/acknowledge/",
        {"quantity_on_hand": 0, "quantity_returned": 60},
        format="json",
    )
    assert too_many.status_code == 409
    assert too_many.json()["code"] == "returned_exceeds_shipped"
    # the firm's report belongs to the firm and the regulator, not to a consignee
    assert pharmacy.get(f"{API}/recalls/{recall_id}/report/").status_code == 404

    firm = client_for(c.manufacturer.qa)
    effectiveness = firm.get(f"{API}/recalls/{recall_id}/effectiveness/").data
    assert effectiveness["total"]["consignees"] == 5
    assert effectiveness["total"]["acknowledged"] == 1
    assert effectiveness["total"]["notified"] == 5


def test_bad_requests_write_nothing(traded):
    c = traded
    unknown = open_over_api(c, lots=[999_999])
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "unknown_lot"
    no_password = client_for(c.manufacturer.qa).post(
        f"{API}/recalls/", BODY | {"lots": [c.lot_a.pk]}, format="json"
    )
    assert no_password.status_code == 400
    assert no_password.json()["code"] == "password_required"
    assert open_over_api(c).status_code == 201
    second = open_over_api(c)
    assert second.status_code == 409
    assert second.json()["code"] == "lot_already_under_recall"
    assert Recall.objects.count() == 1


def test_closing_with_silent_consignees_needs_a_justification(traded):
    c = traded
    recall_id = open_over_api(c).data["recall"]["id"]
    firm = client_for(c.manufacturer.qa)
    url = f"{API}/recalls/{recall_id}/close/"

    refused = firm.post(url, {"password": TEST_PASSWORD, "reason": "done"}, format="json")
    assert refused.status_code == 409
    assert refused.json()["code"] == "consignees_unaccounted"
    closed = firm.post(
        url,
        {"password": TEST_PASSWORD, "reason": "done", "justification": "all reached by phone"},
        format="json",
    )
    assert closed.status_code == 200, closed.content
    assert closed.data["recall"]["status"] == "completed"
    assert closed.data["signature"]["meaning"] == "recall_closed"


def test_the_regulator_reads_and_downloads_and_writes_nothing(traded):
    c = traded
    recall_id = open_over_api(c).data["recall"]["id"]
    regulator = client_for(c.net.regulator)

    assert regulator.get(f"{API}/recalls/").data["count"] == 1
    pdf = regulator.get(f"{API}/recalls/{recall_id}/report/?as=pdf")
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    csv = regulator.get(f"{API}/recalls/{recall_id}/report/?as=csv")
    assert b"consignees" not in csv.content.split(b"\r\n")[0]
    assert b"Pharmacy One" in csv.content
    data = json.loads(regulator.get(f"{API}/recalls/{recall_id}/report/?as=json").content)
    assert data["number"].startswith("RC-")
    assert data["audit_chain_head"]["sequence"] > 0
    assert [s["meaning"] for s in data["signatures"]] == ["recall_opened"]
    assert data["quantities"]["distributed_by_firm"] == 520
    assert {row["partner"] for row in data["consignees"]} >= {"Pharmacy One", "City Hospital"}
    assert regulator.get(f"{API}/batches/{c.lot_a.pk}/trace/").status_code == 200
    for path, body in [
        ("", BODY | {"lots": [c.lot_b.pk], "password": TEST_PASSWORD}),
        (f"{recall_id}/acknowledge/", {"quantity_on_hand": 0, "quantity_returned": 0}),
        (f"{recall_id}/close/", {"password": TEST_PASSWORD, "reason": "x"}),
        (f"{recall_id}/status-reports/", {}),
    ]:
        response = regulator.post(f"{API}/recalls/{path}", body, format="json")
        assert response.status_code == 403, path
    assert StatusReport.objects.count() == 0


def test_status_reports_on_demand_carry_the_chain_head(traded):
    c = traded
    recall_id = open_over_api(c).data["recall"]["id"]
    firm = client_for(c.manufacturer.qa)

    made = firm.post(f"{API}/recalls/{recall_id}/status-reports/")
    assert made.status_code == 201, made.content
    listed = firm.get(f"{API}/recalls/{recall_id}/status-reports/").data
    assert [report["id"] for report in listed] == [made.data["id"]]
    download = client_for(c.net.regulator).get(
        f"{API}/recalls/{recall_id}/status-reports/{made.data['id']}/?as=json"
    )
    content = json.loads(download.content)
    assert content["report"] == "status"
    assert content["audit_chain_head"]["sequence"] == made.data["chain_sequence"]


def test_another_partner_sees_neither_the_recall_nor_the_whole_trace(traded):
    c = traded
    recall_id = open_over_api(c).data["recall"]["id"]
    outsider = c.add("Never Supplied")
    client = client_for(outsider.buyer)
    assert client.get(f"{API}/recalls/{recall_id}/").status_code == 404
    assert client.get(f"{API}/recalls/").data["count"] == 0
    assert client.get(f"{API}/batches/{c.lot_a.pk}/trace/").status_code == 404
    # a wholesaler traces from itself only: its own customers, never its competitor's
    north = client_for(c.north.buyer)
    trace = north.get(f"{API}/batches/{c.lot_a.pk}/trace/?direction=forward").data
    assert trace["origin"] == c.north.partner.pk
    assert {node["partner_id"] for node in trace["nodes"]} == {
        c.north.partner.pk,
        c.p1.partner.pk,
        c.p2.partner.pk,
    }
    south_origin = north.get(f"{API}/batches/{c.lot_a.pk}/trace/?partner={c.south.partner.pk}")
    assert south_origin.status_code == 404
    backward = north.get(f"{API}/batches/{c.lot_a.pk}/trace/?direction=backward").data
    assert {node["partner_id"] for node in backward["nodes"]} == {
        c.north.partner.pk,
        c.manufacturer.partner.pk,
    }
    bad = north.get(f"{API}/batches/{c.lot_a.pk}/trace/?direction=sideways")
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_direction"
    assert client_for(c.north.buyer).get(f"{API}/recalls/").data["count"] == 1


def test_anonymous_callers_are_challenged(api_client, traded):
    assert api_client.get(f"{API}/recalls/").status_code == 401
    assert api_client.get(f"{API}/batches/{traded.lot_a.pk}/trace/").status_code == 401


def test_a_drill_blocks_nothing_and_says_drill(traded, mailoutbox):
    c = traded
    response = client_for(c.manufacturer.qa).post(
        f"{API}/recalls/drill/", BODY | {"lots": [c.lot_a.pk]}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.data["number"].startswith("DR-")
    assert response.data["is_drill"] is True
    assert response.data["status"] == "completed"
    assert response.data["drill_duration_ms"] >= 1
    c.lot_a.refresh_from_db()
    assert c.lot_a.status == "released"
    assert mailoutbox == []
    from batches import hooks

    assert hooks.lot_holds(c.lot_a) == []
    report = client_for(c.net.regulator).get(f"{API}/recalls/{response.data['id']}/report/?as=json")
    data = json.loads(report.content)
    assert data["drill"] is True
    assert data["marking"].startswith("DRILL")
    assert len(data["consignees"]) == 5
    assert StatusReport.objects.filter(recall_id=response.data["id"]).count() == 1
    # a real recall of the same lot is still possible
    assert open_over_api(c).status_code == 201


def test_the_webhook_event_recall_opened_reaches_the_consignees_endpoint(
    traded,
    receiver,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    c = traded
    endpoint = WebhookEndpoint(
        partner=c.p1.partner, url=receiver.url, events=["recall.opened"], secret="s3cret"
    )
    endpoint._change_reason = "test: subscribed to recall.opened"
    endpoint.save()

    with django_capture_on_commit_callbacks(execute=True):
        assert open_over_api(c).status_code == 201

    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert (delivery.event, delivery.status) == ("recall.opened", "succeeded")
    (request,) = receiver.requests
    body = json.loads(request.body)
    assert body["event"] == "recall.opened"
    assert body["data"]["lots"] == ["LOTA"]
    assert body["data"]["instructions"] == BODY["instructions"]


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_the_trace_page_draws_tiers_and_quantities(traded, client, direction):
    c = traded
    client.force_login(c.manufacturer.qa)
    partner = "" if direction == "forward" else f"&partner={c.p2.partner.pk}"

    page = client.get(f"/recalls/trace/{c.lot_a.pk}/?direction={direction}{partner}")

    assert page.status_code == 200
    html = page.content.decode()
    assert "<svg" in html
    assert "Pharmacy Two" in html
    assert 'data-testid="edge-quantity">320' in html
    assert "cdn" not in html.lower()


def test_a_consignee_answers_on_the_recall_page(traded, client):
    c = traded
    recall_id = open_over_api(c).data["recall"]["id"]
    client.force_login(c.p2.buyer)
    page = client.get(f"/recalls/{recall_id}/")
    assert page.status_code == 200
    assert 'data-testid="response-form"' in page.content.decode()

    answer = client.post(
        f"/recalls/{recall_id}/", {"quantity_on_hand": "100", "quantity_returned": "0"}
    )
    assert answer.status_code == 302
    row = Recall.objects.get().consignees.get(partner=c.p2.partner)
    assert row.quantity_on_hand_reported == 100
    refused = client.post(
        f"/recalls/{recall_id}/", {"quantity_on_hand": "0", "quantity_returned": "500"}
    )
    assert refused.status_code == 409
    assert "returned_exceeds_shipped" in refused.content.decode()


@pytest.mark.parametrize("batch", ["abc", "999999999"])
def test_a_lot_not_in_the_recall_is_refused_on_the_page(traded, client, batch):
    c = traded
    recall_id = open_over_api(c).data["recall"]["id"]
    client.force_login(c.p2.buyer)
    answer = client.post(f"/recalls/{recall_id}/", {"batch": batch, "quantity_on_hand": "1"})
    assert answer.status_code == 400
    assert "lot_not_recalled" in answer.content.decode()
    assert Recall.objects.get().consignees.get(partner=c.p2.partner).acknowledged_at is None
