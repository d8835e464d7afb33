"""Excursion rules evaluated on measured time after each committed batch, from stored state,
correct whatever the order in which readings arrive."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from audit.history import update_with_reason
from coldchain import services
from coldchain.models import EvaluationState, Excursion, ExcursionStatus
from coldchain.services import ingest_messages
from tests.coldchain.conftest import message, minutes, series
from tests.factories import ExcursionRuleFactory


@pytest.fixture
def ingest(django_capture_on_commit_callbacks):
    """Ingest messages as the consumer does: the evaluation runs once the batch committed."""

    def run(*messages):
        with django_capture_on_commit_callbacks(execute=True):
            return ingest_messages(list(messages))

    return run


def excursions(**filters) -> list[tuple]:
    return [
        (e.kind, e.starts_at, e.ends_at, e.peak_celsius, e.duration_seconds, e.is_ongoing)
        for e in Excursion.objects.filter(**filters)
        .exclude(status=ExcursionStatus.WITHDRAWN)
        .order_by("starts_at", "kind", "pk")
    ]


def rule(trip, kind, **fields):
    return ExcursionRuleFactory(profile=trip.profile, kind=kind, **fields)


# A trip: 4 °C, then 9.5 and 10.5 °C for 10 minutes, back to 5 °C; a reading every 5 minutes.
WARM = [4, 4, 9.5, 10.5, 5, 5, 4]


def test_instant_rule_opens_an_excursion_at_the_first_reading_out_of_range(trip, ingest):
    rule(trip, "instant")
    ingest(message("LG-0001", series(trip, WARM)))
    (found,) = excursions()
    assert found == (
        "high",
        minutes(trip, 10),
        minutes(trip, 20),
        Decimal("10.50"),
        600,
        False,
    )
    excursion = Excursion.objects.get()
    assert excursion.number.startswith("EX-")
    assert excursion.status == ExcursionStatus.OPEN
    assert excursion.shipment == trip.shipment
    assert excursion.history.latest().history_change_reason.startswith("evaluation")


def test_the_limit_itself_is_in_range(trip, ingest):
    rule(trip, "instant")
    ingest(message("LG-0001", series(trip, [2, 8, 8.0, 2.0])))
    assert excursions() == []


def test_an_ongoing_excursion_is_extended_by_later_batches(trip, ingest):
    rule(trip, "instant")
    readings = series(trip, [4, 9, 11, 12, 9, 4])
    ingest(message("LG-0001", readings[:3]))
    assert excursions() == [
        ("high", minutes(trip, 5), minutes(trip, 10), Decimal("11.00"), 300, True)
    ]
    ingest(message("LG-0001", readings[3:]))
    assert excursions() == [
        ("high", minutes(trip, 5), minutes(trip, 25), Decimal("12.00"), 1200, False)
    ]
    assert Excursion.objects.count() == 1


def test_consecutive_rule_waits_for_its_delay(trip, ingest):
    rule(trip, "consecutive", delay_minutes=15)
    # 10 minutes above 8 °C: under the delay. Then 20 minutes below 2 °C: over it.
    ingest(message("LG-0001", series(trip, [5, 9, 9, 5, 1, 1, 1, 1, 5])))
    assert excursions() == [
        ("low", minutes(trip, 20), minutes(trip, 40), Decimal("1.00"), 1200, False)
    ]


def test_cumulative_rule_adds_up_time_out_of_range_and_never_resets(trip, ingest):
    rule(trip, "cumulative", budget_minutes=12)
    # Three 5-minute spells above 8 °C with cool time between: 15 minutes in all.
    ingest(message("LG-0001", series(trip, [5, 9, 5, 5, 9.5, 5, 5, 10, 5, 5])))
    (found,) = excursions()
    kind, starts_at, ends_at, peak, duration, ongoing = found
    assert kind == "cumulative"
    # The budget ran out 2 minutes into the third spell (5 + 5 + 2 = 12).
    assert starts_at == minutes(trip, 37)
    assert ends_at == minutes(trip, 40)
    assert (peak, duration, ongoing) == (Decimal("10.00"), 900, False)


def test_the_start_of_the_trip_is_ignored(trip, ingest):
    trip.profile.ignore_first_minutes = 15
    trip.profile._change_reason = "test: settle time"
    trip.profile.save()
    rule(trip, "instant")
    ingest(message("LG-0001", series(trip, [12, 11, 10, 5, 5, 9])))
    # The readings at 0, 5 and 10 minutes are in the ignore period; the one at 25 is not.
    assert excursions() == [
        ("high", minutes(trip, 25), minutes(trip, 25), Decimal("9.00"), 0, True)
    ]


def test_data_gap_rule_finds_a_long_interval_and_a_sequence_gap(trip, ingest):
    rule(trip, "data_gap", max_interval_minutes=15)
    readings = [
        (1, minutes(trip, 0), 5),
        (2, minutes(trip, 5), 5),
        (3, minutes(trip, 30), 5),  # 25 minutes without a reading
        (4, minutes(trip, 35), 5),
        (7, minutes(trip, 40), 5),  # readings 5 and 6 are missing
    ]
    ingest(message("LG-0001", readings))
    assert excursions() == [
        ("data_gap", minutes(trip, 5), minutes(trip, 30), None, 1500, False),
        ("data_gap", minutes(trip, 35), minutes(trip, 40), None, 300, False),
    ]


def test_evaluating_again_changes_nothing(trip, ingest):
    rule(trip, "instant")
    rule(trip, "cumulative", budget_minutes=5)
    ingest(message("LG-0001", series(trip, WARM)))
    before = excursions()
    versions = sum(e.history.count() for e in Excursion.objects.all())

    services.shipment_evaluate(shipment_id=trip.shipment.pk, logger_id=trip.logger.pk)
    services.shipment_evaluate(
        shipment_id=trip.shipment.pk, logger_id=trip.logger.pk, earliest=trip.t0
    )

    assert excursions() == before
    assert sum(e.history.count() for e in Excursion.objects.all()) == versions


def test_a_late_backlog_is_evaluated_by_measured_time(trip, ingest):
    """The logger went offline during a warm spell; its live readings came first, the buffered
    ones later: the excursion is found where it happened, the gap it seemed to be withdrawn."""
    rule(trip, "instant")
    rule(trip, "data_gap", max_interval_minutes=10)
    readings = series(trip, [4, 4, 9.5, 10.5, 11, 5, 5, 4])
    live, backlog = readings[:2] + readings[6:], readings[2:6]

    ingest(message("LG-0001", live))
    assert [e[0] for e in excursions()] == ["data_gap"]
    gap = Excursion.objects.get()

    ingest(message("LG-0001", backlog))

    assert excursions(status__in=["open"]) == [
        ("high", minutes(trip, 10), minutes(trip, 25), Decimal("11.00"), 900, False)
    ]
    gap.refresh_from_db()
    assert gap.status == ExcursionStatus.WITHDRAWN
    state = EvaluationState.objects.get(rule__kind="instant")
    assert state.full_evaluations == 1
    assert state.position_at == minutes(trip, 35)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_result_does_not_depend_on_the_order_of_arrival(trip, ingest, seed):
    rule(trip, "instant")
    rule(trip, "consecutive", delay_minutes=10)
    rule(trip, "cumulative", budget_minutes=20)
    values = [5, 9, 9, 9, 5, 1, 5, 12, 12, 5, 5, 9, 9, 9, 9, 5]
    readings = series(trip, values)
    expected = _evaluate_in_order(trip, ingest, readings)

    shuffled = readings[:]
    random.Random(seed).shuffle(shuffled)
    Excursion.objects.all()  # a fresh trip: the same readings, another logger
    from tests.factories import LoggerFactory

    other = LoggerFactory(owner=trip.trade.seller, device_id="LG-0002")
    services.logger_assign(
        logger=other,
        shipment=trip.shipment,
        actor=trip.trade.seller_warehouse,
        reason="second logger",
        starts_at=trip.t0,
    )
    for start in range(0, len(shuffled), 3):
        ingest(message("LG-0002", shuffled[start : start + 3]))

    assert excursions(logger=other) == expected


def _evaluate_in_order(trip, ingest, readings):
    ingest(message("LG-0001", readings))
    return excursions(logger=trip.logger)


def test_a_closed_excursion_is_not_changed_by_later_readings(trip, ingest):
    rule(trip, "instant")
    ingest(message("LG-0001", series(trip, [5, 9, 9])))
    excursion = Excursion.objects.get()
    excursion.status, excursion.disposition = ExcursionStatus.CLOSED, "accept"
    excursion._change_reason = "test: QA accepted"
    excursion.save()

    ingest(message("LG-0001", series(trip, [10, 5], start_seq=4, offset=15)))

    excursion.refresh_from_db()
    assert (excursion.ends_at, excursion.peak_celsius) == (minutes(trip, 10), Decimal("9.00"))
    later = Excursion.objects.exclude(pk=excursion.pk).get()
    assert (later.starts_at, later.ends_at, later.peak_celsius) == (
        minutes(trip, 10),
        minutes(trip, 20),
        Decimal("10.00"),
    )


def test_the_periodic_sweep_evaluates_trips_in_transit(trip):
    from coldchain.tasks import evaluate_in_transit

    rule(trip, "instant")
    ingest_messages([message("LG-0001", series(trip, [5, 12]))])  # no commit callback: task lost
    assert excursions() == []
    assert evaluate_in_transit() == 1
    assert len(excursions()) == 1
    assert evaluate_in_transit.delay().get() == 1  # and it runs again, changing nothing
    assert len(excursions()) == 1


def test_a_shipment_without_a_profile_for_its_goods_is_not_evaluated(trip, ingest):
    # The fixture's profile has no rule: nothing to evaluate, nothing stored.
    ingest(message("LG-0001", series(trip, [20, 25])))
    assert excursions() == []
    assert not EvaluationState.objects.exists()


def test_one_reading_an_evaluation(trip, ingest):
    """A long trip evaluated batch by batch reads each reading about once (incremental)."""
    rule(trip, "instant")
    readings = series(trip, [5] * 200, every=1)
    for start in range(0, 200, 20):
        ingest(message("LG-0001", readings[start : start + 20]))
    state = EvaluationState.objects.get()
    assert state.readings_evaluated == 200
    assert state.full_evaluations == 0
    assert state.position_at == minutes(trip, 199)


def test_a_line_that_carried_nothing_brings_no_rules_on_either_database(trip):
    """The rules of a trip come from the storage classes of the lines that carried units:
    PostgreSQL's query and SQLite's agree (a line picked short to nothing carried none)."""
    t = trip
    ExcursionRuleFactory(profile=t.profile)
    pair = (t.shipment.pk, t.logger.pk)
    assert services._trips_of([pair])[pair][2]  # the vaccine's line brings its rules
    for line in t.shipment.lines.all():
        update_with_reason(
            line,
            actor=t.trade.seller_warehouse,
            reason="test: carried nothing",
            changes={"quantity": 0},
            editable={"quantity"},
        )
    assert services._trips_of([pair]) == {}
