"""Celery tasks of the edges: webhook delivery with retries, event e-mail. Thin over services."""

from __future__ import annotations

import smtplib
from typing import Any

from celery import shared_task
from django.conf import settings

from . import services
from .models import WebhookDelivery


@shared_task(bind=True, max_retries=None, name="integrations.deliver_webhook")
def deliver_webhook(self, delivery_id: int) -> str:
    """POST one delivery; on failure retry with exponential backoff, then mark it failed.

    The attempt count lives on the delivery row, not in Celery's retry counter, so a task
    redelivered after a worker died (acks late) still stops at ``WEBHOOK_MAX_ATTEMPTS``.

    On a worker (a broker is set), a failed attempt is retried with ``self.retry`` after
    ``WEBHOOK_BACKOFF_SECONDS × 2^(n−1)``; no request ever waits for a webhook.

    In-process (no broker: ``CELERY_TASK_ALWAYS_EAGER``, the embedded default) the task runs
    inside the ``on_commit`` of the transaction that announced the event, where Celery's eager
    ``retry()`` would raise ``Retry`` into the caller (``CELERY_TASK_EAGER_PROPAGATES``). So the
    task retries in-line instead, at once, skipping the backoff: every attempt is still made
    and recorded, and the exhausted delivery is marked failed; the task returns normally and
    the committed order never sees an error. The price: a dead target holds that request for up
    to ``WEBHOOK_MAX_ATTEMPTS × WEBHOOK_TIMEOUT_SECONDS`` after its commit (a refused connection
    costs milliseconds) — one reason production runs with a broker.
    """
    while True:
        delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id)
        delivery = delivery.first()
        if delivery is None:
            return "missing"
        attempt = services.webhook_delivery_attempt(delivery=delivery)
        if attempt is None:
            delivery.refresh_from_db(fields=["status"])
            return delivery.status
        if attempt.succeeded:
            return "succeeded"
        if attempt.number >= settings.WEBHOOK_MAX_ATTEMPTS:
            services.webhook_delivery_fail(delivery=delivery)
            return "failed"
        if not self.request.is_eager:
            raise self.retry(countdown=services.webhook_retry_delay(attempt.number))
        # in-process: the next attempt at once (see the docstring)


@shared_task(name="integrations.requeue_webhook_deliveries")
def requeue_webhook_deliveries(older_than_seconds: float = 600) -> int:
    """For celery beat: hand stale pending deliveries back to the delivery task."""
    return services.webhook_deliveries_requeue(older_than_seconds=older_than_seconds)


@shared_task(
    bind=True,
    name="integrations.send_event_email",
    autoretry_for=(smtplib.SMTPException, OSError),
    max_retries=3,
    retry_backoff=60,
    retry_jitter=True,
)
def send_event_email(self, event: str, payload: dict[str, Any], partner_id: int) -> bool:
    """E-mail a partner's contact about a business event; the mail server may be retried."""
    return services.event_email_send(event=event, payload=payload, partner_id=partner_id)
