"""Mean kinetic temperature (USP <1079.2>), time-weighted for irregular intervals.

    MKT = (ΔH/R) / −ln( Σ wᵢ·exp(−ΔH/(R·Tᵢ)) / Σ wᵢ )      (T in kelvin)

with ΔH/R = 10,000 K (ΔH = 83.144 kJ/mol, R = 8.3144 J/(mol·K)) and wᵢ the time each
temperature was held. Readings are taken as held until the next one (sample and hold); equal
intervals make the weights equal and give the chapter's arithmetic form.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

ACTIVATION_OVER_R = 10_000.0  # ΔH/R in kelvin
KELVIN = 273.15


def mean_kinetic_temperature(samples: Iterable[tuple[float | Decimal, float]]) -> float | None:
    """MKT in °C of ``(°C, weight)`` pairs (weights: seconds held, or 1 each for equal
    intervals); ``None`` when the weights add up to nothing."""
    total_weight = 0.0
    weighted = 0.0
    for celsius, weight in samples:
        if weight <= 0:
            continue
        total_weight += weight
        weighted += weight * math.exp(-ACTIVATION_OVER_R / (float(celsius) + KELVIN))
    if total_weight == 0:
        return None
    return ACTIVATION_OVER_R / -math.log(weighted / total_weight) - KELVIN


def held_samples(
    readings: Sequence[tuple[datetime.datetime, float | Decimal]],
    *,
    until: datetime.datetime | None = None,
) -> list[tuple[float | Decimal, float]]:
    """(°C, seconds held) of readings in measured order, each held until the next one; the
    last one is held until ``until`` (or not counted without it)."""
    samples = []
    for (at, celsius), following in zip(readings, [*readings[1:], None], strict=True):
        end = following[0] if following is not None else until
        if end is not None and end > at:
            samples.append((celsius, (end - at).total_seconds()))
    return samples


@dataclass(frozen=True)
class MktWindow:
    starts_at: datetime.datetime
    ends_at: datetime.datetime
    mkt_celsius: float | None
    readings: int


def mkt_windows(
    readings: Sequence[tuple[datetime.datetime, float | Decimal]],
    *,
    window: datetime.timedelta,
    start: datetime.datetime | None = None,
) -> list[MktWindow]:
    """The MKT of consecutive windows (24 h for 2–8 °C products, 30 days for room
    temperature) from ``start`` (default: the first reading); a reading's hold is cut at the
    window's end, and the last window ends at the last reading."""
    if not readings:
        return []
    start = start or readings[0][0]
    last = readings[-1][0]
    windows = []
    index = 0
    window_start = start
    while window_start < last or not windows:
        window_end = window_start + window
        inside: list[tuple[datetime.datetime, float | Decimal]] = []
        # The value held at the window's start is the last reading before it.
        while index < len(readings) and readings[index][0] < window_start:
            index += 1
        if index > 0 and readings[index - 1][0] < window_start:
            inside.append((window_start, readings[index - 1][1]))
        position = index
        while position < len(readings) and readings[position][0] < window_end:
            inside.append(readings[position])
            position += 1
        end = min(window_end, last)
        samples = held_samples(inside, until=end)
        windows.append(
            MktWindow(window_start, end, mean_kinetic_temperature(samples), position - index)
        )
        window_start = window_end
    return windows
