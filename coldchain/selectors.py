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


def excursion_hold_gate(batch_id: int) -> QuerySet[Excursion]:
    """Rows whenever ``excursion_holds`` may find a hold (never fewer): read with the other
    hold gates in one statement, so lots that came on no shipment with an open excursion skip
    the check."""
    return Excursion.objects.filter(
        status__in=[ExcursionStatus.OPEN, ExcursionStatus.ACKNOWLEDGED],
        shipment__lines__batch_id=batch_id,
    )


def excursion_holds(batch, location=None) -> list[Hold]:
    """Holds on ``batch`` from excursions not yet closed on shipments that carried it, at the
    buyer's locations (``location`` None: anywhere)."""
    excursions = Excursion.objects.filter(
        status__in=[ExcursionStatus.OPEN, ExcursionStatus.ACKNOWLEDGED],
        shipment__lines__batch=batch,
        shipment__lines__quantity__gt=0,  # a line picked short to nothing carried no unit
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


def assignments_visible_to(user) -> QuerySet[LoggerAssignment]:
    """Logger assignments of the shipments the user can see (seller's and buyer's)."""
    return LoggerAssignment.objects.select_related("logger", "shipment").filter(
        shipment__in=shipments_visible_to(user)
    )


# --- MKT of a lot at each location of known temperature ------------------------------------


def batch_profile(batch: Batch) -> TemperatureProfile | None:
    """The active profile of the lot's storage class."""
    return (
        TemperatureProfile.objects.filter(
            storage_class_id=batch.product.storage_class_id, is_active=True
        )
        .order_by("pk")
        .first()
    )


def batch_temperature(batch: Batch, user) -> dict[str, Any]:
    """The mean kinetic temperature (USP <1079.2>) of a lot at each location where its
    temperature is known, per window of the lot's own profile (24 h for 2–8 °C products,
    30 days for room temperature) and over the whole stay.

    The temperature of a lot is measured where a logger travels with it: on each shipment that
    carried it (the lot at the shipment's in-transit location, from dispatch to receipt), one
    series per logger. Storage locations carry no logger here, so no MKT is claimed for them.
    Only the shipments the user can see count (another partner's trade stays hidden).
    """
    profile = batch_profile(batch)
    window = datetime.timedelta(hours=profile.mkt_window_hours if profile else 24)
    limit = profile.mkt_limit_celsius if profile else None
    shipments = list(
        shipments_visible_to(user)
        .filter(lines__batch=batch, dispatched_at__isnull=False)
        .distinct()
        .select_related("in_transit_location", "from_site", "to_site")
        .order_by("dispatched_at", "pk")
    )
    series: dict[int, dict[str, list]] = {}
    for shipment_id, device_id, at, celsius in (
        Reading.objects.filter(shipment__in=[s.pk for s in shipments])
        .order_by("shipment_id", "logger__device_id", "measured_at", "sequence")
        .values_list("shipment_id", "logger__device_id", "measured_at", "celsius")
        .iterator(chunk_size=5000)
    ):
        series.setdefault(shipment_id, {}).setdefault(device_id, []).append((at, celsius))
    stays = []
    worst = None
    for shipment in shipments:
        loggers = []
        for device_id, readings in series.get(shipment.pk, {}).items():
            windows = mkt_windows(readings, window=window)
            for w in windows:
                if w.mkt_celsius is not None and (worst is None or w.mkt_celsius > worst):
                    worst = w.mkt_celsius
            loggers.append(
                {
                    "device_id": device_id,
                    "readings": len(readings),
                    "first_at": readings[0][0],
                    "last_at": readings[-1][0],
                    "mkt_celsius": _rounded(
                        mean_kinetic_temperature(held_samples(readings, until=readings[-1][0]))
                    ),
                    "mkt_windows": [_window(w, limit) for w in windows],
                }
            )
        location = shipment.in_transit_location
        stays.append(
            {
                "shipment": shipment.pk,
                "shipment_number": shipment.number,
                "location": location.pk if location else None,
                "location_name": str(location) if location else "",
                "from_site": shipment.from_site.name,
                "to_site": shipment.to_site.name,
                "arrived_at": shipment.dispatched_at,
                "left_at": shipment.received_at,
                "loggers": loggers,
            }
        )
    return {
        "batch": batch.pk,
        "lot_number": batch.lot_number,
        "product": batch.product.name,
        "profile": None if profile is None else _profile(profile),
        "highest_window_mkt_celsius": _rounded(worst),
        "exceeds_limit": limit is not None and worst is not None and worst > float(limit),
        "stays": stays,
    }


def _window(window, limit) -> dict[str, Any]:
    return {
        "starts_at": window.starts_at,
        "ends_at": window.ends_at,
        "readings": window.readings,
        "mkt_celsius": _rounded(window.mkt_celsius),
        "exceeds_limit": limit is not None
        and window.mkt_celsius is not None
        and window.mkt_celsius > float(limit),
    }


def _profile(profile: TemperatureProfile) -> dict[str, Any]:
    return {
        "id": profile.pk,
        "name": profile.name,
        "min_celsius": profile.min_celsius,
        "max_celsius": profile.max_celsius,
        "mkt_window_hours": profile.mkt_window_hours,
        "mkt_limit_celsius": profile.mkt_limit_celsius,
    }
