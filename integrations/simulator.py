"""A logger simulator: realistic temperature profiles published over MQTT like real loggers do.

Profiles (°C over a trip, one reading every ``interval`` seconds of measured time):

- ``normal``: 2–8 °C, a slow drift around 5 °C with sensor noise;
- ``door_open``: normal, with a spike to about 12 °C a third of the way (a door left open at a
  stop), back in range within half an hour;
- ``failed_cooling``: normal until a third of the way, then warming towards 22 °C ambient
  (time constant two hours) until the end;
- ``offline_backlog``: normal, but the logger loses its network for the middle third: those
  readings are held back and delivered late, after the live ones, as one message list.

Sequence numbers are consecutive per logger and derived from the measured time
(``epoch seconds // interval``), so running the same trip again republishes the same readings
(stored once) rather than new ones. Measured times never lie in the future: an accelerated run
(``speed`` measured seconds per wall-clock second, 0 = as fast as the window allows) places the
trip so that it ends now.

Publishing is bounded: at most ``window`` QoS 1 messages wait for their PUBACK at once (paho
otherwise queues without limit and fails with ERR_QUEUE_SIZE past about 65k); a publish beyond
that waits. While the broker is away, paho keeps the unacknowledged messages and sends them
again after reconnecting, so nothing published is lost when the broker restarts.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from paho.mqtt.client import MQTTMessageInfo
from paho.mqtt.enums import MQTTErrorCode

from coldchain.ingest import reading_topic

from .mqtt import MqttSettings, connect_args, make_client

logger = logging.getLogger(__name__)

PROFILES = ("normal", "door_open", "failed_cooling", "offline_backlog")
AMBIENT_CELSIUS = 22.0


# --- profiles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Trip:
    """One logger's trip: where and when it starts, how often it measures, what happens."""

    device_id: str
    profile: str
    starts_at: datetime.datetime
    interval: int = 300
    count: int = 96
    seed: int = 0
    origin: tuple[float, float] = (48.137, 11.575)  # Munich
    destination: tuple[float, float] = (52.520, 13.405)  # Berlin

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}: one of {', '.join(PROFILES)}")
        if self.interval < 1 or self.count < 1:
            raise ValueError("interval and count must be at least 1")


def aligned(moment: datetime.datetime, interval: int) -> datetime.datetime:
    """The first multiple of ``interval`` seconds (since the epoch) at or after ``moment``."""
    epoch = math.ceil(moment.timestamp() / interval) * interval
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)


def celsius_at(profile: str, minutes: float, trip_minutes: float, rng: random.Random) -> float:
    """Temperature ``minutes`` into a trip of ``trip_minutes``."""
    base = 5.0 + 1.2 * math.sin(minutes / 97.0) + rng.gauss(0, 0.15)
    base = min(max(base, 2.4), 7.6)
    since = minutes - trip_minutes / 3  # where the door opens, or the cooling fails
    if profile == "door_open" and 0 <= since < 60:
        peak = base + (12.5 - base) * (1 - math.exp(-10 / 3))
        if since < 10:  # the door stands open ten minutes: up towards 12.5 °C
            return base + (12.5 - base) * (1 - math.exp(-since / 3))
        return base + (peak - base) * math.exp(-(since - 10) / 6)  # closed: back into range
    if profile == "failed_cooling" and since >= 0:  # warming towards the ambient temperature
        return base + (AMBIENT_CELSIUS - base) * (1 - math.exp(-since / 120))
    return base


def trip_reading(trip: Trip, index: int) -> dict:
    """Reading number ``index`` of the trip (0 at its start; past ``count`` it goes on)."""
    rng = random.Random(f"{trip.device_id}:{trip.seed}:{index}")  # noqa: S311 - a simulation
    start = aligned(trip.starts_at, trip.interval)
    at = start + datetime.timedelta(seconds=index * trip.interval)
    fraction = min(index / max(trip.count - 1, 1), 1.0)
    trip_minutes = trip.interval * max(trip.count - 1, 1) / 60
    celsius = celsius_at(trip.profile, index * trip.interval / 60, trip_minutes, rng)
    lat = trip.origin[0] + (trip.destination[0] - trip.origin[0]) * fraction
    lon = trip.origin[1] + (trip.destination[1] - trip.origin[1]) * fraction
    return {
        "seq": int(start.timestamp()) // trip.interval + index,
        "at": at.isoformat().replace("+00:00", "Z"),
        "c": round(celsius, 2),
        "rh": round(min(max(50 + rng.gauss(0, 4), 0), 100), 1),
        "battery": max(100 - (index * 30) // trip.count, 1),
        "lat": round(lat, 5),
        "lon": round(lon, 5),
    }


def trip_readings(trip: Trip) -> list[dict]:
    """Every reading of the trip, in measured order, as the payload's reading objects."""
    return [trip_reading(trip, index) for index in range(trip.count)]


def payload(device_id: str, readings: Sequence[dict]) -> bytes:
    return json.dumps({"v": 1, "device_id": device_id, "readings": list(readings)}).encode()


@dataclass(frozen=True)
class Publication:
    """One message to publish, ``at`` seconds of measured time after the earliest trip start."""

    at: float
    topic: str
    payload: bytes
    readings: int


def trip_publications(trip: Trip, origin: datetime.datetime | None = None) -> list[Publication]:
    """The messages a logger on ``trip`` sends, in the order it sends them.

    One message per reading, published at its measured time; for ``offline_backlog`` the middle
    third is held back and sent as one message when the logger comes back online (with the
    first live reading after the gap), out of measured order with what came before it.
    """
    readings = trip_readings(trip)
    origin = origin or aligned(trip.starts_at, trip.interval)
    topic = reading_topic(trip.device_id)

    def offset(reading: dict) -> float:
        return (datetime.datetime.fromisoformat(reading["at"]) - origin).total_seconds()

    if trip.profile != "offline_backlog" or len(readings) < 3:
        return [Publication(offset(r), topic, payload(trip.device_id, [r]), 1) for r in readings]
    gap_start, gap_end = len(readings) // 3, 2 * len(readings) // 3
    held_back = readings[gap_start:gap_end]
    publications = []
    for index, reading in enumerate(readings):
        if gap_start <= index < gap_end:
            continue
        publications.append(
            Publication(offset(reading), topic, payload(trip.device_id, [reading]), 1)
        )
        if index == gap_end:  # back online: the live reading first, then the backlog
            publications.append(
                Publication(
                    offset(reading), topic, payload(trip.device_id, held_back), len(held_back)
                )
            )
    return publications


# --- publishing --------------------------------------------------------------------------


@dataclass
class PublisherStats:
    published: int = 0
    acknowledged: int = 0
    readings: int = 0
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Publisher:
    """A paho QoS 1 publisher with a bounded window of unacknowledged messages.

    ``publish`` waits while ``window`` messages await their PUBACK (also while the broker is
    away: paho resends them after reconnecting); ``flush`` waits for all of them.
    """

    def __init__(self, settings: MqttSettings, *, client_id: str = "", window: int = 200):
        self.settings = settings
        self.window = window
        self.stats = PublisherStats()
        self._slots = threading.BoundedSemaphore(window)
        self._outstanding: set[int] = set()
        self._early: set[int] = set()
        self._outstanding_lock = threading.Lock()
        self._idle = threading.Condition(self._outstanding_lock)
        self.connected = threading.Event()
        client_id = client_id or f"pdms-sim-{uuid.uuid4().hex[:12]}"
        self._client = make_client(settings, client_id, persistent=False)
        self._client.max_inflight_messages_set(window)
        self._client.max_queued_messages_set(0)  # our window bounds the queue, not paho
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *_args: self.connected.clear()
        self._client.on_publish = self._on_publish

    def start(self, timeout: float = 30) -> Publisher:
        self._client.connect_async(**connect_args(self.settings, persistent=False))
        self._client.loop_start()
        if not self.connected.wait(timeout):
            self._client.loop_stop()
            raise ConnectionError(f"no MQTT broker answered at {self.settings.url}")
        return self

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.error("the MQTT broker refused the simulator: %s", reason_code)
            return
        self.connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._outstanding_lock:
            if mid not in self._outstanding:  # acked before publish() recorded it: let it see
                self._early.add(mid)
                return
            self._acknowledged(mid, reason_code.is_failure)

    def _acknowledged(self, mid: int, failed: bool) -> None:
        """Under ``_outstanding_lock``: one message less in the window."""
        self._outstanding.discard(mid)
        if not self._outstanding:
            self._idle.notify_all()
        with self.stats.lock:
            self.stats.acknowledged += 1
            self.stats.failures += failed
        self._slots.release()

    def publish(self, topic: str, data: bytes, readings: int = 1) -> MQTTMessageInfo:
        # Never call paho holding our lock: paho calls on_publish holding its own.
        self._slots.acquire()
        info = self._client.publish(topic, data, qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._slots.release()
            raise RuntimeError(f"paho refused the message: {info.rc}")
        with self.stats.lock:
            self.stats.published += 1
            self.stats.readings += readings
        with self._outstanding_lock:
            self._outstanding.add(info.mid)
            if info.mid in self._early:
                self._early.discard(info.mid)
                self._acknowledged(info.mid, False)
        return info

    def flush(self, timeout: float | None = None) -> bool:
        with self._outstanding_lock:
            return self._idle.wait_for(lambda: not self._outstanding, timeout)

    def stop(self, timeout: float = 30) -> None:
        self.flush(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def simulate(
    settings: MqttSettings,
    trips: Iterable[Trip],
    *,
    speed: float = 0,
    window: int = 200,
    stop: threading.Event | None = None,
) -> PublisherStats:
    """Publish every trip's messages, interleaved by measured time.

    ``speed``: measured seconds per wall-clock second (300: a 5-minute interval every second);
    0 publishes as fast as the window allows.
    """
    trips = list(trips)
    if not trips:
        return PublisherStats()
    origin = min(aligned(t.starts_at, t.interval) for t in trips)
    publications = sorted(
        (p for trip in trips for p in trip_publications(trip, origin)), key=lambda p: p.at
    )
    stop = stop or threading.Event()
    with Publisher(settings, window=window) as publisher:
        began = time.monotonic()
        for publication in publications:
            if speed > 0:
                delay = began + publication.at / speed - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
            elif stop.is_set():
                break
            publisher.publish(publication.topic, publication.payload, publication.readings)
        publisher.flush(timeout=60)
    logger.info(
        "simulator published %d messages (%d readings), %d acknowledged",
        publisher.stats.published,
        publisher.stats.readings,
        publisher.stats.acknowledged,
    )
    return publisher.stats


def trips_for_assignments(
    assignments: Iterable[tuple[str, int, datetime.datetime, datetime.datetime | None]],
    *,
    profiles: Sequence[str] = ("normal",),
    interval: int = 300,
    count: int = 96,
    now: datetime.datetime | None = None,
) -> list[Trip]:
    """A trip per active assignment, inside its window and ending by ``now`` (never in the
    future); profiles are given out in turn."""
    now = now or datetime.datetime.now(tz=datetime.UTC)
    trips = []
    for index, (device_id, _shipment_id, window_start, window_end) in enumerate(assignments):
        end = min(now, window_end) if window_end else now
        start = max(window_start, end - datetime.timedelta(seconds=interval * count))
        available = int((end - aligned(start, interval)).total_seconds() // interval)
        if available < 1:
            continue
        trips.append(
            Trip(
                device_id=device_id,
                profile=profiles[index % len(profiles)],
                starts_at=start,
                interval=interval,
                count=min(count, available),
                seed=index,
            )
        )
    return trips


def follow(
    settings: MqttSettings,
    trips: Sequence[Trip],
    *,
    stop: threading.Event,
    window: int = 200,
    ends: dict[str, datetime.datetime | None] | None = None,
) -> PublisherStats:
    """Go on live after the trips: each logger measures every ``interval`` seconds of wall-clock
    time and publishes at once, continuing its profile, until ``stop`` (or its window ends)."""
    ends = ends or {}
    with Publisher(settings, window=window) as publisher:
        while not stop.is_set():
            now = datetime.datetime.now(tz=datetime.UTC)
            interval = min(trip.interval for trip in trips)
            boundary = aligned(now + datetime.timedelta(microseconds=1), interval)
            if stop.wait((boundary - now).total_seconds()):
                break
            for trip in trips:
                end = ends.get(trip.device_id)
                if end is not None and boundary >= end:
                    continue
                elapsed = boundary - aligned(trip.starts_at, trip.interval)
                if elapsed.total_seconds() % trip.interval:
                    continue
                reading = trip_reading(trip, int(elapsed.total_seconds()) // trip.interval)
                publisher.publish(reading_topic(trip.device_id), payload(trip.device_id, [reading]))
    return publisher.stats
