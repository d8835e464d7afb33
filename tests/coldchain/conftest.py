"""A cold-chain trip on top of the orders' test trade: Acme ships vaccine (2–8 °C) to North
Wholesale with a calibrated logger, and telemetry messages to feed the ingestion."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal

import pytest

from coldchain import services
from coldchain.ingest import IncomingMessage, reading_topic
from orders import services as order_services
from tests.factories import LoggerFactory, TemperatureProfileFactory
from tests.orders.conftest import planned_shipment, shipping, trade  # noqa: F401 - fixtures


class Trip:
    """The trade, a dispatched shipment of vaccine, its logger and the 2–8 °C profile."""


def payload(device_id: str, readings, **extra) -> bytes:
    """``readings``: dicts, or (sequence, measured at, °C) tuples."""
    rows = []
    for reading in readings:
        if isinstance(reading, dict):
            rows.append(reading)
        else:
            sequence, at, celsius = reading
            rows.append({"seq": sequence, "at": iso(at), "c": celsius})
    return json.dumps({"v": 1, "device_id": device_id, "readings": rows, **extra}).encode()


def iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def message(device_id: str, readings, *, received_at=None, **extra) -> IncomingMessage:
    readings = list(readings)
    if received_at is None:
        times = [r[1] for r in readings if not isinstance(r, dict)]
        received_at = (max(times) if times else datetime.datetime.now(datetime.UTC)) + (
            datetime.timedelta(seconds=30)
        )
    return IncomingMessage(
        reading_topic(device_id), payload(device_id, readings, **extra), received_at
    )


@pytest.fixture
def trip(shipping):  # noqa: F811 - the fixture imported above
    t = Trip()
    t.trade = shipping
    t.net = shipping.net
    t.shipment = planned_shipment(shipping, (shipping.vaccine, 50))
    t.shipment = order_services.shipment_dispatch(
        shipment=t.shipment, actor=shipping.seller_warehouse, reason="truck 7"
    )
    t.logger = LoggerFactory(owner=shipping.seller, device_id="LG-0001")
    t.profile = TemperatureProfileFactory(storage_class=shipping.vaccine.storage_class)
    t.t0 = t.shipment.dispatched_at.replace(microsecond=0)
    t.assignment = services.logger_assign(
        logger=t.logger,
        shipment=t.shipment,
        actor=shipping.seller_warehouse,
        reason="logger packed with the vaccine",
        starts_at=t.t0,
    )
    return t


def minutes(t: Trip, n: float) -> datetime.datetime:
    return t.t0 + datetime.timedelta(minutes=n)


def series(t: Trip, values, *, start_seq: int = 1, every: float = 5, offset: float = 0):
    """Readings every ``every`` minutes: (sequence, measured at, °C)."""
    return [
        (start_seq + i, minutes(t, offset + i * every), value) for i, value in enumerate(values)
    ]


def celsius(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))
