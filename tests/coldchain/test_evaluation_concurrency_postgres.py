"""Evaluations of one shipment running at once on PostgreSQL (the Celery task of each batch,
the periodic sweep): they take turns on the shipment's lock, find each excursion once, and an
evaluation whose readings another one already took in does not start over.

Each thread has its own connection (Django's are per thread) and closes it at the end.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from audit import chain
from coldchain import services
from coldchain.models import EvaluationState, Excursion, Reading
from coldchain.services import ingest_messages
from tests.coldchain.conftest import message, minutes, series
from tests.factories import ExcursionRuleFactory, LoggerFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: set DATABASE_URL=postgres://...",
    ),
]

JOIN_TIMEOUT_SECONDS = 60


def race(calls) -> list[BaseException]:
    """Run ``calls`` at once, each in its own thread and connection.

    The calls run Celery tasks in-process (evaluation, notices), and eager Celery marks "inside
    a task" in a process-wide flag that concurrent threads can leave set (each restores what it
    saw on entry): it is put back as it was, or a later ``result.get()`` would refuse."""
    from celery import _state as celery_state

    flag = celery_state.task_join_will_block()
    try:
        return _race(calls)
    finally:
        celery_state._set_task_join_will_block(flag)


def _race(calls) -> list[BaseException]:
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def worker(call) -> None:
        try:
            barrier.wait(timeout=30)
            call()
        except BaseException as error:  # every outcome is recorded, and judged by the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (lock wait?)"
    return errors


def test_concurrent_evaluations_of_a_shipment_find_each_excursion_once(trip):
    second = LoggerFactory(owner=trip.trade.seller, device_id="LG-0002")
    services.logger_assign(
        logger=second,
        shipment=trip.shipment,
        actor=trip.trade.seller_warehouse,
        reason="second logger",
        starts_at=trip.t0,
    )
    # Readings first (no rule yet: nothing evaluated), then the rules.
    warm = series(trip, [5, 12, 12, 5, 5])
    ingest_messages([message("LG-0001", warm), message("LG-0002", warm)])
    ExcursionRuleFactory(profile=trip.profile, kind="instant")
    ExcursionRuleFactory(profile=trip.profile, kind="cumulative", budget_minutes=5)
    pairs = [(trip.shipment.pk, trip.logger.pk), (trip.shipment.pk, second.pk)]

    def batch_task(order):
        return lambda: services.readings_evaluate(
            [(shipment_id, logger_id, trip.t0) for shipment_id, logger_id in order]
        )

    errors = race(
        [
            batch_task(pairs),
            batch_task(list(reversed(pairs))),
            batch_task(pairs),
            lambda: services.evaluation_sweep(now=minutes(trip, 25)),
        ]
    )

    assert [repr(error) for error in errors] == []
    found = sorted(Excursion.objects.values_list("logger__device_id", "kind", "status"))
    assert found == [
        ("LG-0001", "cumulative", "open"),
        ("LG-0001", "high", "open"),
        ("LG-0002", "cumulative", "open"),
        ("LG-0002", "high", "open"),
    ]
    numbers = list(Excursion.objects.values_list("number", flat=True))
    assert len(set(numbers)) == 4
    for state in EvaluationState.objects.all():
        stored = Reading.objects.filter(shipment=state.shipment, logger=state.logger).count()
        assert state.readings_evaluated == stored == 5
        # Those that came second saw the readings already taken in: none started over.
        assert state.full_evaluations == 0
    assert chain.verify().ok


def test_batches_of_one_logger_ingested_and_evaluated_concurrently_miss_nothing(trip):
    """Ingest and evaluation of several batches at once (as several consumers and workers
    would): every reading is evaluated, once, whatever the interleaving."""
    ExcursionRuleFactory(profile=trip.profile, kind="instant")
    readings = series(trip, [5, 5, 12, 12, 5, 5, 5, 9, 5, 5, 5, 5], every=5)
    chunks = [readings[i : i + 3] for i in range(0, len(readings), 3)]

    errors = race(
        [lambda chunk=chunk: ingest_messages([message("LG-0001", chunk)]) for chunk in chunks]
    )
    services.evaluation_sweep(now=minutes(trip, 60))  # whatever a lost task left behind

    assert [repr(error) for error in errors] == []
    found = sorted(
        Excursion.objects.exclude(status="withdrawn").values_list("starts_at", "ends_at")
    )
    assert found == [(minutes(trip, 10), minutes(trip, 20)), (minutes(trip, 35), minutes(trip, 40))]
    state = EvaluationState.objects.get()
    assert state.readings_evaluated == Reading.objects.count() == 12
