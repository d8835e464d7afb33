"""Mean kinetic temperature per USP <1079.2> against worked values."""

from __future__ import annotations

import datetime

import pytest

from coldchain.mkt import held_samples, mean_kinetic_temperature, mkt_windows

T0 = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)


def hours(n: float) -> datetime.datetime:
    return T0 + datetime.timedelta(hours=n)


def test_equal_intervals_at_20_25_30_give_25_8582():
    assert round(mean_kinetic_temperature([(20, 1), (25, 1), (30, 1)]), 4) == 25.8582


def test_23_hours_at_5_and_1_hour_at_25_give_7_7564():
    assert round(mean_kinetic_temperature([(5, 23), (25, 1)]), 4) == 7.7564


def test_irregular_readings_are_weighted_by_the_time_they_held():
    """A reading at 0 h (5 °C) and one at 23 h (25 °C), held until 24 h: 23 h at 5 °C and 1 h
    at 25 °C, however few the readings."""
    samples = held_samples([(hours(0), 5), (hours(23), 25)], until=hours(24))
    assert samples == [(5, 23 * 3600), (25, 3600)]
    assert round(mean_kinetic_temperature(samples), 4) == 7.7564


def test_a_constant_temperature_is_its_own_mkt():
    assert mean_kinetic_temperature([(5.0, 10), (5.0, 3)]) == pytest.approx(5.0)


def test_no_time_no_mkt():
    assert mean_kinetic_temperature([]) is None
    assert mean_kinetic_temperature([(5, 0)]) is None


def test_24_hour_windows_split_the_record_and_carry_the_held_value_over():
    # 5 °C from 0 h, 25 °C from 23 h, 5 °C again from 25 h, last reading at 48 h.
    readings = [(hours(0), 5), (hours(23), 25), (hours(25), 5), (hours(48), 5)]
    first, second = mkt_windows(readings, window=datetime.timedelta(hours=24))
    assert (first.starts_at, first.ends_at, first.readings) == (hours(0), hours(24), 2)
    assert round(first.mkt_celsius, 4) == 7.7564
    # 1 h at 25 °C (held over from 23 h), then 23 h at 5 °C.
    assert (second.starts_at, second.ends_at, second.readings) == (hours(24), hours(48), 1)
    assert round(second.mkt_celsius, 4) == 7.7564
