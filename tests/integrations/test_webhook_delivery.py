"""Business events reach partners' webhook servers signed, retried, logged, and only after commit.

Events are announced through ``orders.signals.announce`` directly, as the order and shipment
services do; the receiving side is a real HTTP server on 127.0.0.1 (conftest.py).
"""

from __future__ import annotations

import json
import time

import pytest
from django.core import mail
from django.db import transaction

from audit.history import save_with_reason
from integrations import services
from integrations.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from orders.signals import announce
from tests.conftest import client_for

from .conftest import verify_signature

PAYLOAD = {"number": "SO-2026-000001", "status": "submitted", "total": "125.0000"}


def register(user, url, events, **extra):
    """Register an endpoint through the API, as a partner's admin does; return the answer."""
    response = client_for(user).post(
        "/api/v1/webhooks/",
        {"url": url, "events": events, "reason": "connect our ERP", **extra},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def announce_committed(django_capture_on_commit_callbacks, event, partner_ids, payload=PAYLOAD):
    """Announce inside a transaction that commits, running what runs after the commit."""
    with django_capture_on_commit_callbacks(execute=True):
        announce(event, payload=payload, partner_ids=partner_ids)


def test_a_delivery_is_signed_so_the_receiving_side_can_verify_it(
    admins, receiver, django_capture_on_commit_callbacks
):
    """The body is the event's JSON; the signature is HMAC-SHA256 of "<timestamp>.<body>" with
    the secret from the creation answer; event and delivery id travel in headers."""
    # given an endpoint of the wholesaler, subscribed to order.submitted
    created = register(admins.wholesaler_admin, receiver.url, ["order.submitted"])

    # when an order is submitted
    announce_committed(
        django_capture_on_commit_callbacks,
        "order.submitted",
        [admins.manufacturer.pk, admins.wholesaler.pk],
    )

    # then the server got one request it can verify with its secret
    [request] = receiver.requests
    assert request.path == "/hooks/pharmadms"
    assert verify_signature(created["secret"], request)
    assert not verify_signature("another-secret", request)
    delivery = WebhookDelivery.objects.get()
    assert request.headers["X-PharmaDMS-Event"] == "order.submitted"
    assert request.headers["X-PharmaDMS-Delivery"] == str(delivery.pk)
    assert request.headers["Content-Type"] == "application/json"
    assert abs(int(request.headers["X-PharmaDMS-Timestamp"]) - time.time()) < 60
    body = json.loads(request.body)
    assert body["id"] == delivery.pk
    assert body["event"] == "order.submitted"
    assert body["data"] == PAYLOAD
    # and the delivery is logged as succeeded, with its one attempt
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        DeliveryStatus.SUCCEEDED,
        1,
        200,
    )
    assert delivery.completed_at is not None
    [attempt] = delivery.attempt_log.all()
    assert (attempt.number, attempt.status_code, attempt.succeeded) == (1, 200, True)


def test_a_failing_target_is_retried_then_the_delivery_fails_with_every_attempt_recorded(
    admins, receiver, django_capture_on_commit_callbacks, settings
):
    """A server answering 500 gets WEBHOOK_MAX_ATTEMPTS identical signed requests (run in-line,
    backoff skipped, when tasks run in-process); the delivery then fails, and every attempt is
    in the log with its status code. Nothing reaches the announcing code."""
    created = register(admins.wholesaler_admin, receiver.url, ["order.confirmed"])
    receiver.default_status = 500

    announce_committed(
        django_capture_on_commit_callbacks, "order.confirmed", [admins.wholesaler.pk]
    )

    assert len(receiver.requests) == settings.WEBHOOK_MAX_ATTEMPTS == 3
    assert len({r.headers["X-PharmaDMS-Delivery"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1
    assert all(verify_signature(created["secret"], r) for r in receiver.requests)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert (delivery.attempts, delivery.last_status_code) == (3, 500)
    assert "500" in delivery.last_error
    attempts = list(delivery.attempt_log.values_list("number", "status_code", "succeeded"))
    assert attempts == [(1, 500, False), (2, 500, False), (3, 500, False)]


def test_a_target_that_recovers_is_delivered_on_a_retry(
    admins, receiver, django_capture_on_commit_callbacks
):
    register(admins.wholesaler_admin, receiver.url, ["order.allocated"])
    receiver.statuses = [503, 200]

    announce_committed(
        django_capture_on_commit_callbacks, "order.allocated", [admins.wholesaler.pk]
    )

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 2, 200)
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [503, 200]


@pytest.mark.django_db(transaction=True)
def test_a_refused_connection_fails_the_delivery_without_blocking_the_transaction(
    admins, closed_port_url, settings
):
    """A target that is down: the committing code carries on, its writes are kept, and the
    delivery fails after its attempts, each recording the network error."""
    net, admin = admins, admins.wholesaler_admin
    register(admin, closed_port_url, ["order.cancelled"])

    # when a transaction writes, announces and commits
    started = time.monotonic()
    with transaction.atomic():
        net.wholesaler.region = "DE-BW"
        save_with_reason(net.wholesaler, actor=admin, reason="moved", update_fields=["region"])
        announce("order.cancelled", payload=PAYLOAD, partner_ids=[net.wholesaler.pk])
    elapsed = time.monotonic() - started

    # then its write stands, it was not held up, and the delivery failed with the error logged
    net.wholesaler.refresh_from_db()
    assert net.wholesaler.region == "DE-BW"
    assert elapsed < settings.WEBHOOK_TIMEOUT_SECONDS
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == settings.WEBHOOK_MAX_ATTEMPTS
    assert delivery.last_status_code is None
    assert "ConnectionRefused" in delivery.last_error
    assert WebhookAttempt.objects.filter(delivery=delivery, status_code=None).count() == 3


@pytest.mark.django_db(transaction=True)
def test_nothing_is_sent_for_a_rolled_back_transaction(admins, receiver):
    """An event announced in a transaction that rolls back makes no delivery row, no request
    and no e-mail."""
    net = admins
    register(admins.wholesaler_admin, receiver.url, ["order.submitted"])
    mail.outbox.clear()

    def submit_then_fail():
        with transaction.atomic():
            announce("order.submitted", payload=PAYLOAD, partner_ids=[net.wholesaler.pk])
            raise RuntimeError("order refused")

    with pytest.raises(RuntimeError, match="order refused"):
        submit_then_fail()

    assert WebhookDelivery.objects.count() == 0
    assert receiver.requests == []
    assert mail.outbox == []


def test_only_subscribed_active_endpoints_of_the_named_partners_receive(
    admins, receiver, django_capture_on_commit_callbacks
):
    # given endpoints: subscribed, subscribed to something else, inactive, another partner's
    register(admins.wholesaler_admin, receiver.url_for("/subscribed"), ["order.submitted"])
    register(admins.wholesaler_admin, receiver.url_for("/other-event"), ["order.cancelled"])
    register(
        admins.wholesaler_admin,
        receiver.url_for("/inactive"),
        ["order.submitted"],
        is_active=False,
    )
    register(admins.other_admin, receiver.url_for("/not-a-party"), ["order.submitted"])
    register(admins.admin, receiver.url_for("/seller"), ["order.submitted", "order.confirmed"])

    # when the manufacturer and the wholesaler hear of a submitted order
    announce_committed(
        django_capture_on_commit_callbacks,
        "order.submitted",
        [admins.manufacturer.pk, admins.wholesaler.pk],
    )

    # then only the two subscribed, active endpoints of those partners got it
    assert sorted(r.path for r in receiver.requests) == ["/seller", "/subscribed"]
    assert sorted(WebhookDelivery.objects.values_list("endpoint__url", flat=True)) == sorted(
        [receiver.url_for("/seller"), receiver.url_for("/subscribed")]
    )


def test_each_partner_s_contact_gets_an_e_mail(admins, django_capture_on_commit_callbacks):
    """The people behind each partner hear of the event at the contact address it registered."""
    mail.outbox.clear()

    announce_committed(
        django_capture_on_commit_callbacks,
        "order.submitted",
        [admins.manufacturer.pk, admins.wholesaler.pk],
    )

    by_recipient = {tuple(message.to): message for message in mail.outbox}
    assert set(by_recipient) == {
        (admins.manufacturer.contact_email,),
        (admins.wholesaler.contact_email,),
    }
    message = by_recipient[(admins.wholesaler.contact_email,)]
    assert message.subject == "PharmaDMS: order.submitted SO-2026-000001"
    assert "North Wholesale" in message.body
    assert "status: submitted" in message.body


def test_an_inactive_partner_gets_no_e_mail_and_no_delivery(
    admins, receiver, django_capture_on_commit_callbacks
):
    register(admins.wholesaler_admin, receiver.url, ["order.submitted"])
    admins.wholesaler.is_active = False
    save_with_reason(
        admins.wholesaler, actor=admins.admin, reason="closed", update_fields=["is_active"]
    )
    mail.outbox.clear()

    announce_committed(
        django_capture_on_commit_callbacks, "order.submitted", [admins.wholesaler.pk]
    )

    assert (mail.outbox, receiver.requests, WebhookDelivery.objects.count()) == ([], [], 0)


def test_a_redirect_is_a_failed_attempt_not_followed(
    admins, receiver, django_capture_on_commit_callbacks
):
    """A signed event goes only to the registered URL: a 3xx is recorded, never followed."""
    register(admins.wholesaler_admin, receiver.url, ["order.submitted"])
    receiver.default_status = 307

    announce_committed(
        django_capture_on_commit_callbacks, "order.submitted", [admins.wholesaler.pk]
    )

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == ("failed", 307)
    assert len(receiver.requests) == 3


def test_the_backoff_doubles_from_its_base(settings):
    settings.WEBHOOK_BACKOFF_SECONDS = 30
    assert [services.webhook_retry_delay(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]


def test_a_stale_pending_delivery_is_handed_back_to_the_task(
    admins, receiver, django_capture_on_commit_callbacks
):
    """A delivery left pending (the broker was down at the time) is sent by the requeue."""
    endpoint = register(admins.wholesaler_admin, receiver.url, ["order.submitted"])
    delivery = WebhookDelivery.objects.create(
        endpoint_id=endpoint["id"], event="order.submitted", payload=PAYLOAD
    )

    assert services.webhook_deliveries_requeue(older_than_seconds=60) == 0  # too recent
    with django_capture_on_commit_callbacks(execute=True):
        assert services.webhook_deliveries_requeue(older_than_seconds=-1) == 1

    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert len(receiver.requests) == 1


def test_a_host_that_resolves_to_a_private_address_gets_nothing(
    admins, receiver, settings, django_capture_on_commit_callbacks
):
    """A name registered while it pointed outside, and resolving inward by the time of sending
    (or a deployment that stopped allowing private hosts): the attempt is refused before any
    connection, and recorded as failed with the reason."""
    register(
        admins.wholesaler_admin, receiver.url.replace("127.0.0.1", "localhost"), ["order.submitted"]
    )
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False

    announce_committed(
        django_capture_on_commit_callbacks, "order.submitted", [admins.wholesaler.pk]
    )

    assert receiver.requests == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.last_status_code is None
    assert delivery.last_error.startswith("refused: localhost resolves to ")
    assert "not a public address" in delivery.last_error


def test_an_event_goes_over_tls_to_the_address_checked(
    admins, tls_receiver, django_capture_on_commit_callbacks
):
    register(admins.wholesaler_admin, tls_receiver.https_url, ["order.submitted"])

    announce_committed(
        django_capture_on_commit_callbacks, "order.submitted", [admins.wholesaler.pk]
    )

    [request] = tls_receiver.requests
    assert request.path == "/hooks/pharmadms"
    assert WebhookDelivery.objects.get().status == DeliveryStatus.SUCCEEDED


def test_a_certificate_for_another_name_fails_the_attempt(
    admins, tls_receiver, django_capture_on_commit_callbacks
):
    tls_receiver.certify("someone-else.example")
    register(admins.wholesaler_admin, tls_receiver.https_url, ["order.submitted"])

    announce_committed(
        django_capture_on_commit_callbacks, "order.submitted", [admins.wholesaler.pk]
    )

    assert tls_receiver.requests == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.last_status_code is None
    assert "SSLCertVerificationError" in delivery.last_error
