"""Telemetry ingestion (contracts.md): readings stored once, attached to their shipment, bad
input dead-lettered with its reason and raw payload, never an exception."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from audit.history import HistoryBypassRefused
from coldchain.ingest import IncomingMessage, reading_topic
from coldchain.models import DeadLetter, EvaluationState, Reading
from coldchain.selectors import active_assignments
from coldchain.services import ingest_messages
from tests.coldchain.conftest import message, minutes, series
from tests.factories import LoggerFactory


def test_a_reading_is_stored_on_the_shipment_its_logger_travels_with(trip):
    received = minutes(trip, 11)
    reading = {
        "seq": 17,
        "at": "2000-01-01T00:00:00Z",
        "c": 5.2,
        "rh": 45.0,
        "battery": 87,
        "lat": 48.1,
        "lon": 11.5,
    }
    reading["at"] = minutes(trip, 10).isoformat()

    result = ingest_messages([message("LG-0001", [reading], received_at=received)])

    assert (result.stored, result.duplicates, result.dead_lettered) == (1, 0, 0)
    stored = Reading.objects.get()
    assert stored.shipment == trip.shipment
    assert stored.logger == trip.logger
    assert (stored.sequence, stored.celsius) == (17, Decimal("5.20"))
    assert (stored.humidity, stored.battery) == (Decimal("45.00"), 87)
    assert (stored.latitude, stored.longitude) == (Decimal("48.100000"), Decimal("11.500000"))
    assert stored.measured_at == minutes(trip, 10)
    assert stored.received_at == received  # kept apart from the measured time


def test_the_same_reading_published_three_times_is_stored_once(trip):
    same = message("LG-0001", [(1, minutes(trip, 5), 4.0)])

    first = ingest_messages([same])
    again = ingest_messages([same, same])

    assert (first.stored, first.duplicates) == (1, 0)
    assert (again.stored, again.duplicates) == (0, 2)
    assert again.reasons["duplicate"] == 2
    assert again.dead_lettered == 0
    assert Reading.objects.count() == 1


def test_a_backlog_in_one_message_is_stored_in_one_go_with_its_duplicates_counted(trip):
    backlog = series(trip, [4.0 + (i % 10) / 10 for i in range(300)], every=1)
    ingest_messages([message("LG-0001", backlog[:50])])

    result = ingest_messages([message("LG-0001", backlog + backlog[-5:])])

    assert result.stored == 250
    assert result.duplicates == 55
    assert Reading.objects.filter(shipment=trip.shipment).count() == 300


def dead_letter(reason: str) -> DeadLetter:
    letters = list(DeadLetter.objects.filter(reason=reason))
    assert len(letters) == 1, [(d.reason, d.detail) for d in DeadLetter.objects.all()]
    return letters[0]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"v": 1, "device_id": "LG-0001", "readings": [', "malformed_json"),
        (b"\xff\xfe not utf-8", "malformed_json"),
        (b'{"v": 1, "device_id": "LG-0001", "readings": [{"seq": 1, "c": NaN}]}', "malformed_json"),
        (b"[1, 2, 3]", "invalid_payload"),
        (b'{"v": 2, "device_id": "LG-0001", "readings": []}', "unsupported_version"),
        (b'{"v": true, "device_id": "LG-0001", "readings": []}', "unsupported_version"),
        (b'{"v": 1, "device_id": 7, "readings": []}', "invalid_payload"),
        (b'{"v": 1, "device_id": "LG-0002", "readings": [{}]}', "device_mismatch"),
        (b'{"v": 1, "device_id": "LG-0001", "readings": []}', "invalid_payload"),
        (b'{"v": 1, "device_id": "LG-0001", "readings": {"seq": 1}}', "invalid_payload"),
    ],
)
def test_a_message_that_cannot_be_read_is_dead_lettered_with_its_raw_payload(trip, raw, reason):
    received = minutes(trip, 1)

    result = ingest_messages([IncomingMessage(reading_topic("LG-0001"), raw, received)])

    assert (result.stored, result.dead_lettered) == (0, 1)
    assert result.reasons == {reason: 1}
    letter = dead_letter(reason)
    assert bytes(letter.payload) == raw
    assert letter.topic == reading_topic("LG-0001")
    assert letter.received_at == received
    assert letter.detail


def test_a_topic_outside_the_readings_tree_is_dead_lettered(trip):
    raw = json.dumps({"v": 1, "device_id": "LG-0001", "readings": []}).encode()
    result = ingest_messages(
        [IncomingMessage("pharmadms/v1/loggers/LG-0001/status", raw, minutes(trip, 1))]
    )
    assert result.reasons == {"invalid_topic": 1}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"seq": "3", "c": 5.0}, "invalid_reading"),
        ({"seq": True, "c": 5.0}, "invalid_reading"),
        ({"seq": -1, "c": 5.0}, "invalid_reading"),
        ({"seq": 3, "c": "5.0"}, "invalid_reading"),
        ({"seq": 3, "c": None}, "invalid_reading"),
        ({"seq": 3}, "invalid_reading"),
        ({"seq": 3, "c": 5.0, "at": "yesterday"}, "invalid_reading"),
        ({"seq": 3, "c": 5.0, "at": "2026-11-28T10:00:00"}, "invalid_reading"),  # no offset
        ({"seq": 3, "c": 5.0, "battery": 101}, "invalid_reading"),
        ({"seq": 3, "c": 5.0, "rh": 120}, "invalid_reading"),
        ({"seq": 3, "c": 5.0, "lat": 91}, "invalid_reading"),
        ({"seq": 3, "c": -100.5}, "impossible_temperature"),
        ({"seq": 3, "c": 100.01}, "impossible_temperature"),
    ],
)
def test_a_bad_reading_is_dead_lettered_and_the_rest_of_its_message_kept(trip, bad, reason):
    bad = {"at": minutes(trip, 15).isoformat(), **bad}
    good = [(1, minutes(trip, 5), 4.0), (2, minutes(trip, 10), 4.5)]

    result = ingest_messages([message("LG-0001", [*good, bad], received_at=minutes(trip, 16))])

    assert result.stored == 2
    assert (result.dead_lettered, result.reasons) == (1, {reason: 1})
    letter = dead_letter(reason)
    assert "reading 2" in letter.detail
    assert json.loads(bytes(letter.payload))["readings"][2] == bad
    assert sorted(Reading.objects.values_list("sequence", flat=True)) == [1, 2]


def test_the_temperature_limits_themselves_are_possible(trip):
    result = ingest_messages(
        [message("LG-0001", [(1, minutes(trip, 1), -100), (2, minutes(trip, 2), 100)])]
    )
    assert result.stored == 2


def test_a_reading_far_in_the_future_is_dead_lettered(trip):
    received = minutes(trip, 60)
    result = ingest_messages(
        [
            message(
                "LG-0001",
                [
                    (1, minutes(trip, 59), 5.0),
                    (2, minutes(trip, 65), 5.0),
                    (3, minutes(trip, 90), 5),
                ],
                received_at=received,
            )
        ]
    )
    # A logger's clock a few minutes fast is tolerated; half an hour is not.
    assert result.stored == 2
    assert result.reasons == {"future_reading": 1}
    assert dead_letter("future_reading").sequences == [3]


def test_an_unknown_logger_is_dead_lettered(trip):
    result = ingest_messages([message("LG-9999", [(1, minutes(trip, 5), 5.0)])])
    assert (result.stored, result.reasons) == (0, {"unknown_logger": 1})
    assert dead_letter("unknown_logger").device_id == "LG-9999"


def test_a_deactivated_logger_is_dead_lettered(trip):
    idle = LoggerFactory(owner=trip.trade.seller, is_active=False)
    result = ingest_messages([message(idle.device_id, [(1, minutes(trip, 5), 5.0)])])
    assert result.reasons == {"inactive_logger": 1}


def test_readings_outside_the_loggers_trips_are_dead_lettered_as_unassigned(trip):
    spare = LoggerFactory(owner=trip.trade.seller)
    before_dispatch = (1, minutes(trip, -30), 5.0)

    result = ingest_messages(
        [
            message(spare.device_id, [(1, minutes(trip, 5), 5.0)]),
            message("LG-0001", [before_dispatch, (2, minutes(trip, 5), 5.0)]),
        ]
    )

    assert result.stored == 1
    assert result.reasons == {"unassigned_logger": 2}
    assert sorted(DeadLetter.objects.values_list("device_id", "sequences")) == [
        ("LG-0001", [1]),
        (spare.device_id, [1]),
    ]


def test_a_received_shipment_ends_its_loggers_trip(trip):
    ingest_messages([message("LG-0001", [(1, minutes(trip, 5), 5.0)])])
    shipment = trip.shipment
    shipment.received_at = minutes(trip, 60)
    shipment._change_reason = "test: received"
    shipment.save()

    result = ingest_messages(
        [message("LG-0001", [(2, minutes(trip, 59), 5.0), (3, minutes(trip, 61), 5.0)])]
    )

    assert result.stored == 1
    assert result.reasons == {"unassigned_logger": 1}


def test_a_redelivered_bad_message_is_dead_lettered_once(trip):
    raw = IncomingMessage(reading_topic("LG-0001"), b"not json", minutes(trip, 1))
    first = ingest_messages([raw])
    again = ingest_messages([raw])
    assert first.dead_lettered == again.dead_lettered == 1
    assert DeadLetter.objects.count() == 1


def test_one_batch_mixes_good_bad_and_duplicate_messages(trip):
    messages = [
        message("LG-0001", series(trip, [4, 5, 6])),
        message("LG-0001", series(trip, [4, 5, 6])),
        IncomingMessage(reading_topic("LG-0001"), b"{", minutes(trip, 20)),
        message("LG-0404", [(1, minutes(trip, 5), 5.0)]),
    ]
    result = ingest_messages(messages)
    assert (result.stored, result.duplicates, result.dead_lettered) == (3, 3, 2)
    assert result.reasons == {"duplicate": 3, "malformed_json": 1, "unknown_logger": 1}


def test_an_empty_batch_does_nothing(trip):
    result = ingest_messages([])
    assert (result.stored, result.duplicates, result.dead_lettered) == (0, 0, 0)


def test_the_evaluation_is_scheduled_once_the_batch_has_committed(
    trip, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ingest_messages([message("LG-0001", series(trip, [4, 5]))])
    assert len(callbacks) == 1
    # No profile rule yet on this trip's class? The fixture's profile has none: nothing to do.
    assert not EvaluationState.objects.exists()


def test_a_failing_batch_stores_nothing(trip, monkeypatch):
    """One call is one transaction: a database failure midway leaves nothing behind."""
    from coldchain import ingest

    def broken(*args, **kwargs):
        raise DatabaseError("the database went away")

    monkeypatch.setattr(ingest, "store_dead_letters", broken)
    with pytest.raises(DatabaseError):
        ingest_messages([message("LG-0001", series(trip, [4, 5])), message("LG-9", [])])
    assert not Reading.objects.exists()


def test_readings_and_dead_letters_are_append_only(trip):
    ingest_messages([message("LG-0001", series(trip, [4])), message("LG-9", [(1, trip.t0, 1)])])
    reading, letter = Reading.objects.get(), DeadLetter.objects.get()
    for row in (reading, letter):
        with pytest.raises(HistoryBypassRefused):
            row.save()
        with pytest.raises(HistoryBypassRefused):
            row.delete()
        with pytest.raises(HistoryBypassRefused):
            type(row).objects.update(received_at=trip.t0)
        with pytest.raises(HistoryBypassRefused):
            type(row).objects.all().delete()
    for table in (Reading._meta.db_table, DeadLetter._meta.db_table):
        for sql in (f"UPDATE {table} SET received_at = received_at", f"DELETE FROM {table}"):  # noqa: S608
            with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql)
    assert Reading.objects.count() == DeadLetter.objects.count() == 1


def test_active_assignments_list_the_loggers_on_their_way(trip):
    during = minutes(trip, 30)
    assert active_assignments(during) == [("LG-0001", trip.shipment.pk, trip.t0, None)]
    assert active_assignments(trip.t0 - datetime.timedelta(minutes=1)) == []
