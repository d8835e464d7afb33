"""/api/v1/webhooks/: a partner's admin registers its endpoints; the secret is shown once.

The permission matrix of the project: anonymous 401, another partner's endpoint 404 for every
verb, a role without the right 403, a regulator reads everything and writes nothing (403).
"""

from __future__ import annotations

import json

import pytest

from integrations.models import WebhookDelivery, WebhookEndpoint
from orders.signals import announce
from tests.conftest import client_for

from .conftest import verify_signature

API = "/api/v1/webhooks/"


def create(user, url, events=("order.submitted",), **extra):
    return client_for(user).post(
        API, {"url": url, "events": list(events), "reason": "connect our ERP", **extra}
    )


@pytest.fixture
def endpoint(admins, receiver):
    """The wholesaler's endpoint, with the secret its admin was shown."""
    response = create(admins.wholesaler_admin, receiver.url)
    assert response.status_code == 201, response.content
    body = response.json()
    return WebhookEndpoint.objects.get(pk=body["id"]), body["secret"]


def test_creation_answers_the_secret_once_and_never_again(admins, endpoint):
    instance, secret = endpoint
    assert len(secret) >= 43
    assert instance.secret == secret
    client = client_for(admins.wholesaler_admin)
    listed = client.get(API)
    retrieved = client.get(f"{API}{instance.pk}/")
    patched = client.patch(f"{API}{instance.pk}/", {"is_active": False, "reason": "maintenance"})
    read_by_regulator = client_for(admins.regulator).get(f"{API}{instance.pk}/")
    history = client.get(f"{API}{instance.pk}/history/")

    for response in (listed, retrieved, patched, read_by_regulator, history):
        assert response.status_code == 200, response.content
        assert secret not in response.content.decode()
    for body in (listed.json()["results"][0], retrieved.json(), patched.json()):
        assert "secret" not in body
    read_by_regulator_body = read_by_regulator.json()
    assert "secret" not in read_by_regulator_body
    # the history rows leave the secret out (the generic diff names the field, never a value)
    changes = [c for entry in history.json()["results"] for c in entry["changes"]]
    assert all(c["new"] is None for c in changes if c["field"] == "secret")
    assert not hasattr(instance.history.model, "secret")


def test_the_creation_answer_is_not_cached(admins, receiver):
    response = create(admins.wholesaler_admin, receiver.url)
    assert response["Cache-Control"] == "no-store"
    assert response.json()["partner"] == admins.wholesaler.pk


def test_the_secret_cannot_be_set_or_changed(admins, endpoint):
    instance, _ = endpoint
    client = client_for(admins.wholesaler_admin)
    response = client.post(
        API,
        {"url": instance.url, "events": ["order.submitted"], "secret": "mine", "reason": "x"},
    )
    assert (response.status_code, response.json()["code"]) == (400, "unknown_field")
    response = client.patch(f"{API}{instance.pk}/", {"secret": "mine", "reason": "rotate"})
    assert (response.status_code, response.json()["code"]) == (400, "unknown_field")


def test_events_url_and_active_are_changed_with_a_reason_kept_in_history(
    admins, endpoint, receiver
):
    instance, _ = endpoint
    client = client_for(admins.wholesaler_admin)
    response = client.patch(f"{API}{instance.pk}/", {"events": ["order.cancelled"]})
    assert (response.status_code, response.json()["code"]) == (400, "reason_required")

    response = client.patch(
        f"{API}{instance.pk}/",
        {
            "events": ["shipment.received", "order.cancelled", "order.cancelled"],
            "url": receiver.url_for("/v2"),
            "is_active": False,
            "reason": "new receiver",
        },
    )

    assert response.status_code == 200, response.content
    assert response.json()["events"] == ["order.cancelled", "shipment.received"]
    instance.refresh_from_db()
    assert (instance.url, instance.is_active) == (receiver.url_for("/v2"), False)
    latest = instance.history.latest()
    assert (latest.history_change_reason, latest.history_user) == (
        "new receiver",
        admins.wholesaler_admin,
    )


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://erp.example.com/hooks", "https_required"),
        ("ftp://erp.example.com/hooks", "invalid_url"),
        ("https://user:pw@erp.example.com/hooks", "invalid_url"),
    ],
)
def test_a_url_that_is_not_https_is_refused(admins, url, code):
    response = create(admins.wholesaler_admin, url)
    assert (response.status_code, response.json()["code"]) == (400, code)


@pytest.mark.parametrize(
    "url",
    [
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://127.0.0.1/hooks",
        "https://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
        "https://[::1]/hooks",
        "https://[::ffff:10.0.0.1]/hooks",
        "https://localhost/hooks",
        "https://erp.internal/hooks",
        "https://printer.local/hooks",
    ],
)
def test_a_url_to_a_private_host_is_refused(admins, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False  # as in production
    response = create(admins.wholesaler_admin, url)
    assert (response.status_code, response.json()["code"]) == (400, "private_host")
    assert not WebhookEndpoint.objects.exists()


def test_a_public_host_is_accepted_where_private_ones_are_refused(admins, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    assert create(admins.wholesaler_admin, "https://erp.example.com/hooks").status_code == 201
    assert create(admins.wholesaler_admin, "https://93.184.216.34/hooks").status_code == 201
    response = create(admins.wholesaler_admin, "http://localhost:8080/hooks")
    assert (response.status_code, response.json()["code"]) == (400, "private_host")


def test_https_and_loopback_http_are_accepted(admins, receiver):
    assert create(admins.wholesaler_admin, "https://erp.example.com/hooks").status_code == 201
    assert create(admins.wholesaler_admin, "http://localhost:8080/hooks").status_code == 201


@pytest.mark.parametrize("events", [[], ["order.shipped"], ["ping"]])
def test_unknown_or_no_events_are_refused(admins, receiver, events):
    response = create(admins.wholesaler_admin, receiver.url, events=events)
    assert response.status_code == 400
    assert response.json()["code"] in {"empty", "invalid_choice"}


def test_another_partners_endpoint_is_not_found_for_every_verb(admins, endpoint):
    instance, _ = endpoint
    client = client_for(admins.other_admin)
    assert client.get(API).json()["results"] == []
    for response in (
        client.get(f"{API}{instance.pk}/"),
        client.get(f"{API}{instance.pk}/history/"),
        client.get(f"{API}{instance.pk}/deliveries/"),
        client.patch(f"{API}{instance.pk}/", {"is_active": False, "reason": "x"}),
        client.post(f"{API}{instance.pk}/test/"),
    ):
        assert response.status_code == 404, response.content
    instance.refresh_from_db()
    assert instance.is_active


def test_anonymous_callers_are_refused(endpoint, api_client):
    instance, _ = endpoint
    assert api_client.get(API).status_code == 401
    assert api_client.get(f"{API}{instance.pk}/").status_code == 401


def test_only_the_partners_admin_writes(admins, endpoint, receiver):
    instance, _ = endpoint
    qa = client_for(admins.wholesaler_qa)
    assert qa.get(f"{API}{instance.pk}/").status_code == 200  # the partner's staff read
    assert create(admins.wholesaler_qa, receiver.url).status_code == 403
    response = qa.patch(f"{API}{instance.pk}/", {"is_active": False, "reason": "x"})
    assert response.status_code == 403
    assert qa.post(f"{API}{instance.pk}/test/").status_code == 403


def test_a_regulator_reads_every_endpoint_and_writes_none(admins, endpoint, receiver):
    instance, _ = endpoint
    client = client_for(admins.regulator)
    assert [e["id"] for e in client.get(API).json()["results"]] == [instance.pk]
    assert client.get(f"{API}{instance.pk}/deliveries/").status_code == 200
    assert create(admins.regulator, receiver.url).status_code == 403
    response = client.patch(f"{API}{instance.pk}/", {"is_active": False, "reason": "x"})
    assert response.status_code == 403
    assert client.post(f"{API}{instance.pk}/test/").status_code == 403


def test_deliveries_list_the_recent_ones_with_their_attempts(
    admins, endpoint, receiver, django_capture_on_commit_callbacks
):
    instance, _ = endpoint
    receiver.statuses = [500]
    with django_capture_on_commit_callbacks(execute=True):
        announce("order.submitted", payload={"number": "A"}, partner_ids=[admins.wholesaler.pk])
    with django_capture_on_commit_callbacks(execute=True):
        announce("order.submitted", payload={"number": "B"}, partner_ids=[admins.wholesaler.pk])

    response = client_for(admins.wholesaler_qa).get(f"{API}{instance.pk}/deliveries/")

    assert response.status_code == 200
    first, second = response.json()["results"]  # newest first
    assert (first["payload"], first["status"], first["attempts"]) == (
        {"number": "B"},
        "succeeded",
        1,
    )
    assert (second["payload"], second["status"], second["attempts"]) == (
        {"number": "A"},
        "succeeded",
        2,
    )
    assert [a["status_code"] for a in second["attempt_log"]] == [500, 200]
    assert all(a["duration_ms"] >= 0 for a in second["attempt_log"])


@pytest.mark.django_db(transaction=True)
def test_the_test_action_sends_a_signed_ping(admins, endpoint, receiver):
    """Committed at once (no test transaction around it): in-process, the ping has been
    delivered by the time the answer is written."""
    instance, secret = endpoint

    response = client_for(admins.wholesaler_admin).post(f"{API}{instance.pk}/test/")

    assert response.status_code == 202, response.content
    assert (response.json()["event"], response.json()["status"]) == ("ping", "succeeded")
    [request] = receiver.requests
    assert request.headers["X-PharmaDMS-Event"] == "ping"
    assert verify_signature(secret, request)
    assert json.loads(request.body)["data"]["endpoint"] == instance.pk


def test_an_inactive_endpoint_is_not_pinged(admins, endpoint, receiver):
    instance, _ = endpoint
    client = client_for(admins.wholesaler_admin)
    client.patch(f"{API}{instance.pk}/", {"is_active": False, "reason": "paused"})

    response = client.post(f"{API}{instance.pk}/test/")

    assert (response.status_code, response.json()["code"]) == (409, "webhook_inactive")
    assert (receiver.requests, WebhookDelivery.objects.count()) == ([], 0)


def test_the_ping_takes_no_fields(admins, endpoint):
    instance, _ = endpoint
    response = client_for(admins.wholesaler_admin).post(
        f"{API}{instance.pk}/test/", {"event": "order.submitted"}
    )
    assert (response.status_code, response.json()["code"]) == (400, "unknown_field")


def test_the_schema_lists_the_webhook_endpoints(admins):
    paths = client_for(admins.qa).get("/api/schema/?format=json").json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/webhooks/"])
    assert "get" in paths["/api/v1/webhooks/{id}/deliveries/"]
    assert "post" in paths["/api/v1/webhooks/{id}/test/"]
