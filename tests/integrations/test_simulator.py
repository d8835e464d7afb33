"""The logger simulator: realistic profiles, and a publisher that never floods paho's queue."""

from __future__ import annotations

import datetime
import json

from integrations.simulator import (
    Publisher,
    Trip,
    trip_publications,
    trip_readings,
    trips_for_assignments,
)

from . import test_mqtt_support as support
from .test_mqtt_support import new_device_id

_session_broker = support._session_broker  # fixtures
broker = support.broker

START = datetime.datetime(2026, 11, 28, 8, 0, tzinfo=datetime.UTC)


def temperatures(profile: str, count: int = 96) -> list[float]:
    return [r["c"] for r in trip_readings(Trip("LG-1", profile, START, interval=300, count=count))]


def test_a_normal_trip_stays_between_2_and_8_degrees():
    assert all(2 < c < 8 for c in temperatures("normal"))


def test_a_door_open_spike_leaves_the_range_briefly_and_comes_back():
    values = temperatures("door_open")
    out = [i for i, c in enumerate(values) if c > 8]
    assert out, "the spike goes above 8 °C"
    assert max(values) < 14
    assert len(out) <= 4, "back in range within about twenty minutes"
    assert all(2 < c < 8 for c in values[out[-1] + 1 :])


def test_failed_cooling_warms_towards_ambient_until_the_end():
    values = temperatures("failed_cooling")
    assert all(2 < c < 8 for c in values[: len(values) // 3])
    assert values[-1] > 15
    assert values[-1] > values[len(values) // 2] > values[len(values) // 3]


def test_sequences_are_consecutive_and_stable_across_runs():
    trip = Trip("LG-1", "normal", START, interval=300, count=10)
    readings = trip_readings(trip)
    sequences = [r["seq"] for r in readings]
    assert sequences == list(range(sequences[0], sequences[0] + 10))
    assert trip_readings(trip) == readings, "the same trip republishes the same readings"


def test_offline_backlog_arrives_late_as_one_list_out_of_measured_order():
    trip = Trip("LG-1", "offline_backlog", START, interval=300, count=30)
    publications = trip_publications(trip)
    backlog = [p for p in publications if p.readings > 1]
    assert len(backlog) == 1
    (late,) = backlog
    held = json.loads(late.payload)["readings"]
    assert [r["seq"] for r in held] == [r["seq"] for r in trip_readings(trip)[10:20]]
    position = publications.index(late)
    before = [json.loads(p.payload)["readings"][0]["at"] for p in publications[:position]]
    assert max(before) > held[0]["at"], "sent after readings measured later"
    assert sum(p.readings for p in publications) == 30


def test_trips_for_assignments_end_now_and_stay_in_their_window():
    now = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)
    assignments = [
        ("LG-1", 1, now - datetime.timedelta(hours=2), None),
        ("LG-2", 2, now - datetime.timedelta(days=3), now - datetime.timedelta(days=1)),
        ("LG-3", 3, now - datetime.timedelta(seconds=30), None),  # no whole interval yet
    ]
    trips = trips_for_assignments(
        assignments, profiles=("normal", "door_open"), interval=300, count=96, now=now
    )
    assert [(t.device_id, t.profile) for t in trips] == [("LG-1", "normal"), ("LG-2", "door_open")]
    for trip, (_, _, start, end) in zip(trips, assignments, strict=False):
        readings = trip_readings(trip)
        first = datetime.datetime.fromisoformat(readings[0]["at"])
        last = datetime.datetime.fromisoformat(readings[-1]["at"])
        assert first >= start
        assert last <= (end or now)
    assert trips[0].count == 24  # 10:00 … 11:55: two hours at five minutes


def test_the_publisher_keeps_a_bounded_window_and_every_message_is_acknowledged(broker):
    """5,000 QoS 1 messages through a window of 50: paho never holds more than 50 unacknowledged
    (no ERR_QUEUE_SIZE however many are sent), and each is acknowledged by the broker."""
    settings = broker.settings("3.1.1")
    topic = f"pharmadms/v1/loggers/{new_device_id()}/readings"
    peak = 0
    with Publisher(settings, window=50) as publisher:
        for n in range(5000):
            publisher.publish(topic, b'{"n": %d}' % n)
            peak = max(peak, len(publisher._client._out_messages))
        assert publisher.flush(timeout=60)
    assert peak <= 50
    assert (publisher.stats.published, publisher.stats.acknowledged) == (5000, 5000)
    assert publisher.stats.failures == 0
