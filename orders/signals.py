"""Business events the orders app announces, for the edges (webhooks, e-mail) to pick up.

The orders app sits below ``integrations`` and never imports it: a service calls
:func:`announce`, which sends :data:`business_event` once the transaction has committed (a
rolled-back order announces nothing). ``integrations`` connects its receiver in
``IntegrationsConfig.ready()``.

Receivers get ``event`` (e.g. ``"order.submitted"``), ``payload`` (a JSON-ready dict) and
``partner_ids`` (the partners entitled to hear of it: buyer and seller).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.dispatch import Signal

business_event = Signal()

EVENTS = (
    "order.submitted",
    "order.confirmed",
    "order.allocated",
    "order.cancelled",
    # The seller cancelled what a partly shipped order still waited for (its backorder).
    "order.backorder_cancelled",
    "shipment.dispatched",
    "shipment.delivered",
    "shipment.received",
    "return.requested",
    "return.authorised",
    "return.received",
    "return.disposed",
    # Daily stock alerts of a partner (orders.analytics.stock_alerts_raise, from celery beat).
    "stock.replenishment_alert",
    "stock.near_expiry_alert",
    # Temperature excursions on a shipment (coldchain), to the seller's and the buyer's QA.
    "excursion.opened",
    "excursion.closed",
    # Recalls (recalls): the opening notice and the reminders to consignees yet to answer.
    "recall.opened",
    "recall.reminder",
)
# Events whose people are written to by their own app with a letter of its own (the recall
# communication of 21 CFR 7.49): integrations sends no generic notice e-mail for them.
EVENTS_WITH_OWN_LETTER = frozenset({"recall.opened", "recall.reminder"})


def announce(event: str, *, payload: dict[str, Any], partner_ids: Iterable[int]) -> None:
    """Send ``event`` after the current transaction commits (at once outside a transaction)."""
    if event not in EVENTS:
        raise ValueError(f"unknown business event {event!r}")
    recipients = sorted(set(partner_ids))
    transaction.on_commit(
        lambda: business_event.send(
            sender=None, event=event, payload=payload, partner_ids=recipients
        )
    )
