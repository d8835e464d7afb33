"""Mean kinetic temperature of a lot at each location where a logger measured it (USP
<1079.2>): per window of the lot's own profile — 24 h for 2–8 °C products, 30 days for room
temperature — against the chapter's worked values."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from coldchain.services import ingest_messages
from tests.coldchain.conftest import message
from tests.conftest import client_for
from tests.factories import StorageClassFactory, TemperatureProfileFactory

API = "/api/v1"


def at_hours(trip, hours: float) -> datetime.datetime:
    return trip.t0 + datetime.timedelta(hours=hours)


def lot_mkt(trip, user=None):
    response = client_for(user or trip.net.qa).get(f"{API}/batches/{trip.trade.lot_200.pk}/mkt/")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_cold_chain_lot_gets_24_hour_windows(trip):
    # 23 h at 5 °C then 1 h at 25 °C; then 24 h at 5 °C (readings hold until the next one).
    readings = [(1, at_hours(trip, 0), 5), (2, at_hours(trip, 23), 25), (3, at_hours(trip, 24), 5)]
    readings.append((4, at_hours(trip, 48), 5))
    ingest_messages([message("LG-0001", readings)])

    body = lot_mkt(trip)

    assert body["lot_number"] == "V200"
    assert body["profile"]["mkt_window_hours"] == 24
    (stay,) = body["stays"]
    assert stay["shipment_number"] == trip.shipment.number
    assert stay["location"] == trip.shipment.in_transit_location_id
    (logger,) = stay["loggers"]
    first, second = logger["mkt_windows"]
    assert first["mkt_celsius"] == 7.7564  # USP <1079.2>'s worked value
    assert second["mkt_celsius"] == pytest.approx(5.0)
    assert first["exceeds_limit"] is False  # the factory profile's limit is 8 °C
    assert body["highest_window_mkt_celsius"] == 7.7564
    assert body["exceeds_limit"] is False


def test_a_window_above_the_profiles_mkt_limit_is_flagged(trip):
    trip.profile.mkt_limit_celsius = Decimal("7.50")
    trip.profile._change_reason = "test: a stricter limit"
    trip.profile.save()
    readings = [(1, at_hours(trip, 0), 5), (2, at_hours(trip, 23), 25), (3, at_hours(trip, 24), 5)]
    ingest_messages([message("LG-0001", readings)])

    body = lot_mkt(trip)

    assert body["stays"][0]["loggers"][0]["mkt_windows"][0]["exceeds_limit"] is True
    assert body["exceeds_limit"] is True


def test_a_room_temperature_lot_gets_30_day_windows(trip):
    room = StorageClassFactory(code="15-25c", name="Room", min_celsius=15, max_celsius=25)
    TemperatureProfileFactory(
        storage_class=room,
        name="Room temperature",
        min_celsius=Decimal("15"),
        max_celsius=Decimal("25"),
        mkt_window_hours=720,
        mkt_limit_celsius=Decimal("25"),
    )
    product = trip.trade.lot_200.product
    product.storage_class = room
    product._change_reason = "test: a room-temperature product"
    product.save()
    # 20, 25 and 30 °C for an hour each (the last reading closes the third hour).
    readings = [(n + 1, at_hours(trip, n), c) for n, c in enumerate([20, 25, 30, 30])]
    ingest_messages([message("LG-0001", readings)])

    body = lot_mkt(trip)

    assert body["profile"]["mkt_window_hours"] == 720
    (logger,) = body["stays"][0]["loggers"]
    (window,) = logger["mkt_windows"]  # three hours fit in one 30-day window
    assert window["mkt_celsius"] == 25.8582  # USP <1079.2>'s worked value
    assert logger["mkt_celsius"] == 25.8582
    assert body["exceeds_limit"] is True  # 25.86 °C over the 25 °C limit


def test_a_lot_nobody_measured_has_no_stay_with_readings(trip):
    body = lot_mkt(trip)
    (stay,) = body["stays"]
    assert stay["loggers"] == []
    assert body["highest_window_mkt_celsius"] is None


def test_another_partner_sees_no_mkt_of_the_lot(trip):
    response = client_for(trip.net.other_user).get(f"{API}/batches/{trip.trade.lot_200.pk}/mkt/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    # The regulator reads it.
    assert lot_mkt(trip, trip.net.regulator)["lot_number"] == "V200"
