"""Celery tasks of the orders app. Thin: each calls one function and returns what it says."""

from __future__ import annotations

from celery import shared_task

from . import analytics


@shared_task(name="orders.raise_stock_alerts")
def raise_stock_alerts() -> dict[str, int]:
    """Daily (celery beat, ``CELERY_BEAT_SCHEDULE``): per partner, one replenishment alert for
    its locations below their reorder point and one near-expiry alert for its expiring lots."""
    return analytics.stock_alerts_raise()
