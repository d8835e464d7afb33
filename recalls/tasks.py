"""Celery tasks of recalls: thin wrappers over the services."""

from __future__ import annotations

from celery import shared_task

from . import services
from .models import Recall


@shared_task(name="recalls.notify_consignees")
def notify_consignees(recall_id: int) -> int:
    """Notify the consignees of a recall just opened (handed over after its commit)."""
    recall = Recall.objects.filter(pk=recall_id).first()
    if recall is None:
        return 0
    return len(services.recall_notify(recall=recall))


@shared_task(name="recalls.send_reminders")
def send_reminders() -> int:
    """For celery beat: remind the consignees that have not answered."""
    return services.recall_reminders_send()


@shared_task(name="recalls.generate_status_reports")
def generate_status_reports() -> int:
    """For celery beat: the periodic status report of every running recall (21 CFR 7.53)."""
    return services.status_reports_due()
