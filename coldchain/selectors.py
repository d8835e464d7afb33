"""Read-side questions of the cold chain: which logger is where, what holds a lot."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from batches.hooks import Hold
from batches.models import Batch
from orders.models import Shipment
from orders.selectors import shipments_visible_to

from .mkt import held_samples, mean_kinetic_temperature, mkt_windows
from .models import (
    Excursion,
    ExcursionStatus,
    Logger,
    LoggerAssignment,
    Reading,
    TemperatureProfile,
)


def active_assignments(
    at: datetime.datetime | None = None,
) -> list[tuple[str, int, datetime.datetime, datetime.datetime | None]]:
    """(device id, shipment id, window start, window end) of every logger travelling at ``at``
    (default: now). An open window ends at the shipment's receipt."""
    at = at or timezone.now()
    rows = (
        LoggerAssignment.objects.filter(starts_at__lte=at, logger__is_active=True)
        .filter(Q(ends_at__gt=at) | Q(ends_at__isnull=True))
        .select_related("logger", "shipment")
        .order_by("logger__device_id")
    )
    result = []
    for assignment in rows:
        end = assignment.ends_at or assignment.shipment.received_at
        if end is not None and end <= at:
            continue
        result.append(
            (assignment.logger.device_id, assignment.shipment_id, assignment.starts_at, end)
        )
    return result


def excursion_holds(batch, location=None) -> list[Hold]:
    """Holds on ``batch`` from excursions not yet closed on shipments that carried it, at the
    buyer's locations (``location`` None: anywhere)."""
    excursions = Excursion.objects.filter(
        status__in=[ExcursionStatus.OPEN, ExcursionStatus.ACKNOWLEDGED],
        shipment__lines__batch=batch,
        rule__profile__storage_class_id=batch.product.storage_class_id,
    )
    if location is not None:
        excursions = excursions.filter(shipment__order__buyer_id=location.site.partner_id)
    holds = []
    for number, shipment_number in (
        excursions.order_by("starts_at", "id").values_list("number", "shipment__number").distinct()
    ):
        holds.append(
            Hold(
                "excursion_hold",
                f"lot {batch.lot_number} is held: temperature excursion {number} on shipment "
                f"{shipment_number} awaits QA disposition",
                number,
            )
        )
    return holds


# --- what a user may see -------------------------------------------------------------------


def loggers_visible_to(user) -> QuerySet[Logger]:
    """A partner's own loggers; regulators and superusers read all."""
    queryset = Logger.objects.select_related("owner")
    if user.sees_everything:
        return queryset
    return queryset.filter(owner_id=user.partner_id)


def excursions_visible_to(user) -> QuerySet[Excursion]:
    """Excursions of the shipments the user can see (the buyer's and the seller's)."""
    return Excursion.objects.select_related("shipment__order", "logger", "rule__profile").filter(
        shipment__in=shipments_visible_to(user)
    )


def readings_of_shipments(shipments: QuerySet[Shipment]) -> QuerySet[Reading]:
    return (
        Reading.objects.filter(shipment__in=shipments)
        .select_related("logger", "shipment")
        .order_by("measured_at", "logger_id", "sequence")
    )


def readings_of_batch(batch: Batch, user) -> QuerySet[Reading]:
    """Readings of the shipments that carried units of ``batch`` and that the user can see."""
    shipments = shipments_visible_to(user).filter(lines__batch=batch)
    return readings_of_shipments(shipments.values("pk"))


# --- the temperature record of a shipment --------------------------------------------------


def shipment_profiles(shipment: Shipment) -> list[TemperatureProfile]:
    """The active profiles of the storage classes of the goods on the shipment."""
    classes = shipment.lines.values("batch__product__storage_class_id")
    return list(
        TemperatureProfile.objects.filter(is_active=True, storage_class_id__in=classes).order_by(
            "min_celsius", "pk"
        )
    )


def shipment_series(shipment: Shipment) -> dict[str, list[tuple[datetime.datetime, Decimal]]]:
    """Each logger's (measured at, °C) on the shipment, in measured order."""
    series: dict[str, list[tuple[datetime.datetime, Decimal]]] = {}
    rows = (
        Reading.objects.filter(shipment=shipment)
        .order_by("logger__device_id", "measured_at", "sequence")
        .values_list("logger__device_id", "measured_at", "celsius")
    )
    for device_id, at, celsius in rows.iterator(chunk_size=5000):
        series.setdefault(device_id, []).append((at, celsius))
    return series


def shipment_temperature_summary(shipment: Shipment) -> dict[str, Any]:
    """Per logger: count, min, max, time-weighted mean and MKT of the trip, and the MKT of
    each window of the strictest profile (24 h for 2–8 °C, 30 days for room temperature),
    with whether a window exceeds the profile's MKT limit."""
    profiles = shipment_profiles(shipment)
    profile = profiles[0] if profiles else None
    window = datetime.timedelta(hours=profile.mkt_window_hours if profile else 24)
    loggers = []
    for device_id, readings in shipment_series(shipment).items():
        samples = held_samples(readings, until=readings[-1][0])
        held = sum(weight for _, weight in samples)
        mean = sum(float(c) * w for c, w in samples) / held if held else float(readings[0][1])
        windows = mkt_windows(readings, window=window)
        limit = profile.mkt_limit_celsius if profile else None
        loggers.append(
            {
                "device_id": device_id,
                "readings": len(readings),
                "first_at": readings[0][0],
                "last_at": readings[-1][0],
                "min_celsius": min(c for _, c in readings),
                "max_celsius": max(c for _, c in readings),
                "mean_celsius": round(mean, 2),
                "mkt_celsius": _rounded(mean_kinetic_temperature(samples)),
                "mkt_windows": [
                    {
                        "starts_at": w.starts_at,
                        "ends_at": w.ends_at,
                        "readings": w.readings,
                        "mkt_celsius": _rounded(w.mkt_celsius),
                        "exceeds_limit": limit is not None
                        and w.mkt_celsius is not None
                        and w.mkt_celsius > float(limit),
                    }
                    for w in windows
                ],
            }
        )
    return {
        "shipment": shipment.number,
        "profile": None
        if profile is None
        else {
            "name": profile.name,
            "min_celsius": profile.min_celsius,
            "max_celsius": profile.max_celsius,
            "mkt_window_hours": profile.mkt_window_hours,
            "mkt_limit_celsius": profile.mkt_limit_celsius,
        },
        "loggers": loggers,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
