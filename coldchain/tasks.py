"""Celery tasks of the cold chain: thin wrappers over coldchain.services."""

from __future__ import annotations

import dataclasses
import datetime
import smtplib

from celery import shared_task

from . import services


@shared_task(name="coldchain.evaluate_readings")
def evaluate_readings(work: list[list]) -> dict[str, int]:
    """Evaluate the excursion rules after an ingest batch committed.

    ``work`` lists ``[shipment id, logger id, earliest measured time (ISO 8601)]`` of the new
    readings; a reading measured before where a rule stands makes that rule start again.
    """
    outcome = services.readings_evaluate(
        (shipment_id, logger_id, datetime.datetime.fromisoformat(earliest))
        for shipment_id, logger_id, earliest in work
    )
    return dataclasses.asdict(outcome)


@shared_task(name="coldchain.evaluate_in_transit")
def evaluate_in_transit() -> int:
    """For celery beat (every 10 minutes): evaluate every trip still in transit from where it
    stands (catches up an evaluation whose task was lost while the broker was away) and open a
    data-gap excursion for each logger silent for longer than its rule allows."""
    return services.evaluation_sweep()


@shared_task(
    name="coldchain.notify_qa_officers",
    autoretry_for=(smtplib.SMTPException, OSError),
    max_retries=3,
    retry_backoff=60,
    retry_jitter=True,
)
def notify_qa_officers(excursion_id: int, event: str) -> int:
    """E-mail the seller's and the buyer's QA officers that an excursion opened or closed."""
    return services.excursion_notify_qa(excursion_id=excursion_id, event=event)
