"""A shipment's temperature record as EPCIS 2.0: its document (orders.epcis) with one
``sensor_reporting`` ObjectEvent per logger and interval, carrying a ``sensorElementList``.

Each event's sensor report gives the interval's Temperature in CEL as ``minValue``,
``maxValue`` and ``meanValue`` (time-weighted), with ``exception: ALARM_CONDITION`` when an
excursion of the shipment overlaps the interval. The events name the same lots, parties and
transactions as the shipment's shipping event, taken from that event, not rebuilt.
"""

from __future__ import annotations

import copy
import datetime
from decimal import Decimal
from typing import Any

from orders.epcis import shipment_epcis_document
from orders.models import Shipment

from .mkt import held_samples
from .models import Excursion, ExcursionStatus
from .selectors import shipment_series

SHARED_FIELDS = (
    "quantityList",
    "readPoint",
    "bizTransactionList",
    "sourceList",
    "destinationList",
)


def _time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def device_uri(device_id: str) -> str:
    return f"urn:pharmadms:logger:{device_id}"


def _intervals(
    readings: list[tuple[datetime.datetime, Decimal]], interval: datetime.timedelta
) -> list[tuple[datetime.datetime, datetime.datetime, list]]:
    start = readings[0][0]
    groups: dict[int, list] = {}
    for at, celsius in readings:
        groups.setdefault(int((at - start) / interval), []).append((at, celsius))
    return [
        (start + interval * index, start + interval * (index + 1), rows)
        for index, rows in sorted(groups.items())
    ]


def _number(value: float | Decimal) -> float:
    return float(round(Decimal(str(value)), 2))


def shipment_sensor_document(
    shipment: Shipment, *, interval: datetime.timedelta = datetime.timedelta(hours=1)
) -> dict[str, Any]:
    """The shipment's EPCIS document with its sensor events appended (measured order)."""
    document = shipment_epcis_document(shipment)
    events = document["epcisBody"]["eventList"]
    shipping = next((e for e in events if e.get("bizStep") == "shipping"), None)
    if shipping is None:
        return document
    excursions = list(
        Excursion.objects.filter(shipment=shipment)
        .exclude(status=ExcursionStatus.WITHDRAWN)
        .select_related("logger")
        .values_list("logger__device_id", "starts_at", "ends_at")
    )
    sensor_events = []
    for device_id, readings in shipment_series(shipment).items():
        for start, end, rows in _intervals(readings, interval):
            last = min(end, readings[-1][0])
            samples = held_samples(rows, until=last)
            held = sum(weight for _, weight in samples)
            values = [celsius for _, celsius in rows]
            mean = (
                sum(float(c) * w for c, w in samples) / held
                if held
                else sum(map(float, values)) / len(values)
            )
            report: dict[str, Any] = {
                "type": "Temperature",
                "minValue": _number(min(values)),
                "maxValue": _number(max(values)),
                "meanValue": _number(mean),
                "uom": "CEL",
            }
            if any(
                device == device_id and begins <= last and ends >= start
                for device, begins, ends in excursions
            ):
                report["exception"] = "ALARM_CONDITION"
            event = {
                "type": "ObjectEvent",
                "eventTime": _time(last),
                "eventTimeZoneOffset": "+00:00",
                "action": "OBSERVE",
                "bizStep": "sensor_reporting",
                "disposition": "in_transit",
            }
            for name in SHARED_FIELDS:
                if name in shipping:
                    event[name] = copy.deepcopy(shipping[name])
            event["sensorElementList"] = [
                {
                    "sensorMetadata": {
                        "startTime": _time(start),
                        "endTime": _time(last),
                        "deviceID": device_uri(device_id),
                    },
                    "sensorReport": [report],
                }
            ]
            sensor_events.append(event)
    sensor_events.sort(key=lambda event: event["eventTime"])
    events.extend(sensor_events)
    return document
