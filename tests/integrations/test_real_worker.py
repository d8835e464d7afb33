"""A webhook delivery through the real Celery broker and an in-process worker on its own queue.

Skipped unless CELERY_BROKER_URL names a broker (CI sets one); in CI nothing may skip.
"""

from __future__ import annotations

import os
import time

import pytest
from django.db import transaction

from integrations.models import DeliveryStatus, WebhookDelivery
from orders.signals import announce
from pharmadms import celery_app
from tests.pharmadms.test_real_services import worker_on_own_queue

from .conftest import verify_signature
from .test_webhook_delivery import PAYLOAD, register

TIMEOUT_SECONDS = 20
pytestmark = pytest.mark.real_broker  # tasks go through the broker, not in-process


@pytest.fixture
def real_worker():
    """A worker consuming a queue of its own, with the integrations tasks routed to it."""
    if not os.environ.get("CELERY_BROKER_URL"):
        pytest.skip("needs a Celery broker: set CELERY_BROKER_URL")
    assert celery_app.conf.task_always_eager is False
    routes = celery_app.conf.task_routes
    with worker_on_own_queue() as queue_name:
        # conf.update (not assignment) makes Celery rebuild its router from the new routes.
        celery_app.conf.update(task_routes={"integrations.*": {"queue": queue_name}})
        try:
            yield queue_name
        finally:
            celery_app.conf.update(task_routes=routes)


def wait_for(condition, timeout=TIMEOUT_SECONDS):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.django_db(transaction=True)
def test_a_delivery_is_retried_and_delivered_by_a_real_worker(real_worker, admins, receiver):
    """The committed event is queued on the broker; the worker's first attempt meets a 503,
    its retry (after the backoff, on the broker again) is delivered, signed."""
    created = register(admins.wholesaler_admin, receiver.url, ["shipment.dispatched"])
    receiver.statuses = [503]

    with transaction.atomic():
        announce("shipment.dispatched", payload=PAYLOAD, partner_ids=[admins.wholesaler.pk])

    def delivered():
        delivery = WebhookDelivery.objects.first()
        return delivery is not None and delivery.status != DeliveryStatus.PENDING

    assert wait_for(delivered), "the worker did not finish the delivery"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SUCCEEDED, 2)
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [503, 200]
    assert len(receiver.requests) == 2
    assert all(verify_signature(created["secret"], r) for r in receiver.requests)
