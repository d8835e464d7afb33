"""The cold chain of the demo: calibrated loggers on the dispatched shipments, a 2–8 °C
profile with its rules, and a little history of readings with one excursion.

``seed_coldchain()`` is called by ``manage.py seed_demo`` after the orders are seeded; it can
run again at any time and adds only what is missing (loggers by device id, assignments by
shipment, readings by sequence). Readings go through the ingestion, as a logger's would.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import timezone

from batches.models import StorageClass
from orders.models import Shipment, ShipmentStatus
from partners.models import User
from partners.services import system_account

from . import services
from .ingest import IncomingMessage, reading_topic
from .models import Logger, LoggerAssignment, TemperatureProfile

REASON = "demo: cold-chain setup"
INTERVAL = datetime.timedelta(minutes=10)
HISTORY = datetime.timedelta(hours=48)
RULES = [
    {"name": "Out of range", "kind": "instant", "direction": "both"},
    {"name": "Out of range 30 min", "kind": "consecutive", "delay_minutes": 30},
    {"name": "Budget 60 min", "kind": "cumulative", "budget_minutes": 60},
    {"name": "No data for 30 min", "kind": "data_gap", "max_interval_minutes": 30},
]


@dataclass
class Seeded:
    profiles: int = 0
    loggers: int = 0
    assignments: int = 0
    readings: int = 0
    excursions: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.profiles} profiles, {self.loggers} loggers, {self.assignments} assignments, "
            f"{self.readings} readings, excursions: {', '.join(self.excursions) or 'none'}"
        )


def _actor() -> User:
    return system_account()


def _temperature(index: int, *, spike: bool) -> float:
    """A fridge's gentle cycle around 5 °C; the first trip's door stays open for 40 minutes."""
    value = 5.0 + 0.8 * math.sin(index / 6)
    if spike and 60 <= index < 64:
        value = 10.5 + (index - 60) * 0.4
    return round(value, 1)


def seed_coldchain(*, now: datetime.datetime | None = None) -> Seeded:
    """Set up (or complete) the demo's cold chain; returns what it holds."""
    now = now or timezone.now()
    actor = _actor()
    seeded = Seeded()
    for storage_class in StorageClass.objects.filter(max_celsius__lte=Decimal("8")):
        if not TemperatureProfile.objects.filter(
            storage_class=storage_class, is_active=True
        ).exists():
            services.temperature_profile_create(
                storage_class=storage_class,
                actor=actor,
                reason=REASON,
                name=f"{storage_class.name} in transit",
                ignore_first_minutes=10,
                mkt_window_hours=24,
                mkt_limit_celsius=Decimal("8.00"),
                rules=RULES,
            )
        seeded.profiles += 1
    shipments = (
        Shipment.objects.filter(status=ShipmentStatus.DISPATCHED, dispatched_at__isnull=False)
        .select_related("order__seller")
        .order_by("dispatched_at", "pk")
    )
    pairs = []
    for index, shipment in enumerate(shipments, start=1):
        device_id = f"LG-{index:04d}"
        logger = Logger.objects.filter(device_id=device_id).first()
        if logger is None:
            logger = services.logger_register(
                owner=shipment.order.seller,
                actor=actor,
                reason=REASON,
                device_id=device_id,
                device_model="ColdTrack T1",
                calibration_certificate=f"CAL-DEMO-{index:04d}",
                calibration_due_on=now.date() + datetime.timedelta(days=365),
            )
        seeded.loggers += 1
        assignment = LoggerAssignment.objects.filter(logger=logger, shipment=shipment).first()
        if assignment is None:
            assignment = services.logger_assign(
                logger=logger, shipment=shipment, actor=actor, reason=REASON
            )
        seeded.assignments += 1
        start = assignment.starts_at
        end = min(now, start + HISTORY)
        readings = []
        sequence = 1
        at = start
        while at <= end:
            celsius = _temperature(sequence, spike=index == 1)
            readings.append({"seq": sequence, "at": at.isoformat(), "c": celsius})
            sequence += 1
            at += INTERVAL
        for first in range(0, len(readings), 100):
            payload = json.dumps(
                {"v": 1, "device_id": device_id, "readings": readings[first : first + 100]}
            ).encode()
            result = services.ingest_messages(
                [IncomingMessage(reading_topic(device_id), payload, now)]
            )
            seeded.readings += result.stored
        pairs.append((shipment.pk, logger.pk))
    for shipment_id, logger_id in pairs:
        services.shipment_evaluate(shipment_id=shipment_id, logger_id=logger_id)
    from .models import Excursion

    seeded.excursions = list(
        Excursion.objects.filter(shipment_id__in=[s for s, _ in pairs])
        .order_by("number")
        .values_list("number", flat=True)
    )
    return seeded
