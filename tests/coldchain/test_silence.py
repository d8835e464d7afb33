"""A logger that goes silent in transit: the periodic sweep (``coldchain.evaluate_in_transit``,
every 10 minutes) opens a data-gap excursion once the silence outlasts the rule's interval, the
next reading ends it, and a backlog showing there was no gap withdraws it."""

from __future__ import annotations

import pytest

from batches.hooks import lot_holds
from coldchain.models import EvaluationState, Excursion, ExcursionStatus
from coldchain.services import ingest_messages
from coldchain.tasks import evaluate_in_transit
from orders import services as order_services
from pharmadms import clock
from tests.coldchain.conftest import message, minutes, series
from tests.factories import ExcursionRuleFactory


@pytest.fixture
def gap_rule(trip):
    return ExcursionRuleFactory(profile=trip.profile, kind="data_gap", max_interval_minutes=30)


@pytest.fixture
def ingest(django_capture_on_commit_callbacks):
    def run(*messages):
        with django_capture_on_commit_callbacks(execute=True):
            return ingest_messages(list(messages))

    return run


def sweep(moment):
    """The beat task, run at ``moment``."""
    with clock.at(moment):
        return evaluate_in_transit()


def gaps():
    return [
        (e.starts_at, e.ends_at, e.duration_seconds, e.is_ongoing, e.status)
        for e in Excursion.objects.filter(kind="data_gap").order_by("starts_at", "pk")
    ]


def test_a_logger_silent_longer_than_the_interval_opens_an_ongoing_data_gap(trip, gap_rule, ingest):
    ingest(message("LG-0001", series(trip, [5, 5, 5])))  # readings at 0, 5 and 10 minutes

    assert sweep(minutes(trip, 35)) == 1  # 25 minutes of silence: within the 30 allowed
    assert gaps() == []

    sweep(minutes(trip, 60))

    assert gaps() == [(minutes(trip, 10), minutes(trip, 60), 3000, True, "open")]
    excursion = Excursion.objects.get()
    assert excursion.rule == gap_rule
    assert excursion.history.latest().history_user.username == "system"
    # No evidence of the temperature: the lots are held at the buyer's like any excursion.
    (hold,) = lot_holds(trip.trade.lot_200)
    assert hold.reference == excursion.number


def test_the_silence_goes_on_in_the_same_excursion_and_a_second_sweep_changes_nothing(
    trip, gap_rule, ingest
):
    ingest(message("LG-0001", series(trip, [5, 5, 5])))
    sweep(minutes(trip, 60))
    sweep(minutes(trip, 90))
    versions = Excursion.objects.get().history.count()

    sweep(minutes(trip, 90))

    assert gaps() == [(minutes(trip, 10), minutes(trip, 90), 4800, True, "open")]
    assert Excursion.objects.get().history.count() == versions


def test_the_next_reading_ends_the_silence(trip, gap_rule, ingest):
    ingest(message("LG-0001", series(trip, [5, 5, 5])))
    sweep(minutes(trip, 60))

    ingest(message("LG-0001", [(4, minutes(trip, 100), 5), (5, minutes(trip, 105), 5)]))

    # The gap runs from the last reading before it to the first after it; QA still decides.
    assert gaps() == [(minutes(trip, 10), minutes(trip, 100), 5400, False, "open")]
    state = EvaluationState.objects.get(rule=gap_rule)
    assert state.open_excursion is None
    sweep(minutes(trip, 110))  # reporting again: nothing new
    assert len(gaps()) == 1


def test_a_backlog_that_shows_there_was_no_gap_withdraws_it(trip, gap_rule, ingest):
    """The logger kept measuring while out of reach, and sends its buffer when back."""
    readings = series(trip, [5] * 14)  # every 5 minutes from 0 to 65
    ingest(message("LG-0001", readings[:3]))
    sweep(minutes(trip, 60))
    (gap,) = Excursion.objects.all()

    ingest(message("LG-0001", readings[3:]))

    gap.refresh_from_db()
    assert (gap.status, gap.is_ongoing) == (ExcursionStatus.WITHDRAWN, False)
    assert lot_holds(trip.trade.lot_200) == []


def test_a_backlog_that_ends_too_early_leaves_the_rest_of_the_silence(trip, gap_rule, ingest):
    readings = series(trip, [5] * 6)  # 0 to 25 minutes
    ingest(message("LG-0001", readings[:3]))
    sweep(minutes(trip, 60))

    with clock.at(minutes(trip, 70)):
        ingest(message("LG-0001", readings[3:]))

    # The first silence (from 10) is withdrawn; the logger is silent from 25 on, 45 minutes now.
    assert gaps() == [
        (minutes(trip, 10), minutes(trip, 60), 3000, False, "withdrawn"),
        (minutes(trip, 25), minutes(trip, 70), 2700, True, "open"),
    ]


def test_a_logger_that_never_reports_is_a_gap_from_the_start_of_the_trip(trip, gap_rule):
    sweep(minutes(trip, 20))
    assert gaps() == []

    sweep(minutes(trip, 45))

    assert gaps() == [(trip.t0, minutes(trip, 45), 2700, True, "open")]


def test_the_first_reading_long_after_dispatch_is_a_gap_from_the_start(trip, gap_rule, ingest):
    ingest(message("LG-0001", [(1, minutes(trip, 50), 5)]))
    assert gaps() == [(trip.t0, minutes(trip, 50), 3000, False, "open")]


def test_the_receipt_ends_the_silence_at_the_end_of_the_trip(trip, gap_rule, ingest):
    ingest(message("LG-0001", series(trip, [5, 5, 5])))
    sweep(minutes(trip, 60))
    shipment = trip.shipment
    with clock.at(minutes(trip, 80)):
        order_services.shipment_receive(
            shipment=shipment,
            lines=[
                {"line": line.pk, "received_quantity": line.quantity, "damaged_quantity": 0}
                for line in shipment.lines.all()
            ],
            actor=trip.trade.buyer_warehouse,
            reason="checked in",
        )
    shipment.refresh_from_db()

    assert sweep(minutes(trip, 120)) == 1  # no longer in transit, but its silence is open

    assert gaps() == [(minutes(trip, 10), shipment.received_at, 4200, False, "open")]
    assert sweep(minutes(trip, 130)) == 0  # settled: the trip drops out of the sweep


def test_a_trip_without_a_data_gap_rule_is_never_silent(trip, ingest):
    ExcursionRuleFactory(profile=trip.profile, kind="instant")
    ingest(message("LG-0001", series(trip, [5])))
    sweep(minutes(trip, 600))
    assert not Excursion.objects.exists()


def test_the_sweep_is_scheduled_every_ten_minutes(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["coldchain-evaluate-in-transit"]
    assert (entry["task"], entry["schedule"]) == ("coldchain.evaluate_in_transit", 600.0)
