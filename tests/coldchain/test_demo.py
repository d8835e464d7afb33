"""The demo's cold chain: loggers on the dispatched shipments, readings, one excursion;
running it again adds nothing."""

from __future__ import annotations

import datetime

from coldchain.demo import seed_coldchain
from coldchain.models import Excursion, Logger, LoggerAssignment, Reading, TemperatureProfile


def test_seed_coldchain_is_complete_and_idempotent(trip):
    # The fixture's profile has no rules: retire it, the demo brings its own.
    trip.profile.is_active = False
    trip.profile._change_reason = "test: retired"
    trip.profile.save()
    now = trip.t0 + datetime.timedelta(hours=12)

    first = seed_coldchain(now=now)
    counts = (Logger.objects.count(), LoggerAssignment.objects.count(), Reading.objects.count())
    again = seed_coldchain(now=now)

    assert (first.profiles, first.loggers, first.assignments) == (1, 1, 1)
    assert first.readings == 73  # every 10 minutes for 12 hours
    assert again.readings == 0
    assert (Logger.objects.count(), LoggerAssignment.objects.count(), Reading.objects.count()) == (
        counts
    )
    assert TemperatureProfile.objects.filter(
        storage_class=trip.trade.vaccine.storage_class
    ).exists()
    logger = Logger.objects.get(device_id="LG-0001")
    assert logger.is_calibrated_on(now.date())
    kinds = set(Excursion.objects.values_list("kind", flat=True))
    assert "high" in kinds
    assert first.excursions == again.excursions
