"""Telemetry end to end: published over a real broker, consumed, committed by the real
``coldchain.services.ingest_messages``, evaluated (Celery in-process, as the embedded default
runs it), and acknowledged.

The consumer runs in a thread of the test process, or as ``manage.py coldchain_consume`` in a
subprocess when the test kills it; either way it commits on its own database connection, so
these tests are transactional (``transaction=True``): what the consumer commits, the test sees.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from celery import _state as celery_state
from django.db import OperationalError, connection
from django.utils import timezone

from coldchain import services as coldchain_services
from coldchain.ingest import reading_topic
from coldchain.models import DeadLetter, Excursion, Reading
from integrations.mqtt import MqttSettings, TelemetryConsumer
from integrations.simulator import Publisher, payload
from orders import services as order_services
from tests.factories import ExcursionRuleFactory, LoggerFactory, TemperatureProfileFactory
from tests.orders import conftest as orders_fixtures

from . import test_mqtt_support as support
from .test_mqtt_support import new_device_id, requires_mosquitto, wait_for

ROOT = Path(__file__).resolve().parents[2]
_session_broker = support._session_broker  # fixtures
broker = support.broker
private_mosquitto = support.private_mosquitto
trade = orders_fixtures.trade
shipping = orders_fixtures.shipping

pytestmark = pytest.mark.django_db(transaction=True)


class Trip:
    """A dispatched vaccine shipment with a logger of its own since two days ago."""


@pytest.fixture
def trip(shipping):
    t = Trip()
    t.shipment = orders_fixtures.planned_shipment(shipping, (shipping.vaccine, 50))
    t.shipment = order_services.shipment_dispatch(
        shipment=t.shipment, actor=shipping.seller_warehouse, reason="truck 7"
    )
    t.device_id = new_device_id("LG")
    t.logger = LoggerFactory(owner=shipping.seller, device_id=t.device_id)
    t.profile = TemperatureProfileFactory(storage_class=shipping.vaccine.storage_class)
    t.rule = ExcursionRuleFactory(profile=t.profile, kind="instant")
    t.t0 = (timezone.now() - datetime.timedelta(days=2)).replace(microsecond=0)
    coldchain_services.logger_assign(
        logger=t.logger,
        shipment=t.shipment,
        actor=shipping.seller_warehouse,
        reason="logger packed with the vaccine",
        starts_at=t.t0,
    )
    return t


def reading(t: Trip, sequence: int, celsius: float = 5.0, every: int = 60) -> dict:
    at = t.t0 + datetime.timedelta(seconds=sequence * every)
    return {"seq": sequence, "at": at.isoformat().replace("+00:00", "Z"), "c": celsius}


def read(query):
    """Run a read while the consumer writes: SQLite's in-memory test database is shared between
    threads in shared-cache mode, where a table being written is locked at once, not waited
    for; the read is simply tried again."""
    for _ in range(200):
        try:
            return query()
        except OperationalError as error:
            if "locked" not in str(error):
                raise
            time.sleep(0.025)
    return query()


def stored_sequences(t: Trip) -> list[int]:
    return read(
        lambda: list(Reading.objects.filter(logger=t.logger).values_list("sequence", flat=True))
    )


def stored_count(t: Trip) -> int:
    return read(lambda: Reading.objects.filter(logger=t.logger).count())


def publish(settings: MqttSettings, t: Trip, readings_per_message: list[list[dict]]) -> None:
    with Publisher(settings, window=100) as publisher:
        for readings in readings_per_message:
            publisher.publish(reading_topic(t.device_id), payload(t.device_id, readings))
        assert publisher.flush(timeout=30)


@pytest.fixture
def consumers():
    """Start consumers with the real ingestion; all are stopped after the test."""
    started: list[TelemetryConsumer] = []

    def start(settings: MqttSettings) -> TelemetryConsumer:
        consumer = TelemetryConsumer(replace(settings, retry_min_delay=0.05)).start()
        started.append(consumer)
        assert consumer.subscribed.wait(15), "the consumer did not subscribe"
        return consumer

    join_will_block = celery_state.task_join_will_block()
    yield start
    for consumer in started:
        consumer.stop()
    # Celery's eager apply() marks "a task is running" in a process-wide flag, saved and
    # restored around each task: two consumers evaluating eagerly in two threads at once can
    # leave it set, and every later EagerResult.get() in this process would refuse to run.
    celery_state._set_task_join_will_block(join_will_block)


def test_the_same_reading_published_three_times_is_stored_once(broker, trip, consumers):
    settings = broker.settings("3.1.1")
    consumer = consumers(settings)
    first = [reading(trip, 1, 4.5)]

    publish(settings, trip, [first, first, first])

    assert wait_for(lambda: consumer.stats.acked >= 3)
    assert stored_sequences(trip) == [1]
    stats = consumer.stats.snapshot()
    assert (stats["stored"], stats["duplicates"]) == (1, 2)
    assert stats["reasons"]["duplicate"] == 2


def test_a_backlog_out_of_order_is_stored_and_evaluated_by_measured_time(broker, trip, consumers):
    """Live readings first, then the readings buffered while offline, measured earlier, as one
    list: all stored, and the excursion is found where it happened in measured time."""
    settings = broker.settings(broker.protocols[-1])
    consumer = consumers(settings)
    warm = [4, 4, 9.5, 10.5, 11, 5, 5, 4]
    readings = [reading(trip, seq, c, every=300) for seq, c in enumerate(warm, start=1)]
    live, backlog = readings[:2] + readings[6:], readings[2:6]

    publish(settings, trip, [[r] for r in live])
    assert wait_for(lambda: len(stored_sequences(trip)) == 4)
    publish(settings, trip, [list(reversed(backlog))])

    assert wait_for(lambda: len(stored_sequences(trip)) == 8)
    assert wait_for(lambda: consumer.stats.acked >= 5)
    assert sorted(stored_sequences(trip)) == list(range(1, 9))
    high = read(lambda: Excursion.objects.get(shipment=trip.shipment, kind="high", status="open"))
    assert high.starts_at == trip.t0 + datetime.timedelta(seconds=3 * 300)
    assert high.peak_celsius == 11


def test_bad_input_is_dead_lettered_and_the_consumer_keeps_going(broker, trip, consumers):
    settings = broker.settings("3.1.1")
    consumer = consumers(settings)
    topic = reading_topic(trip.device_id)
    future = (timezone.now() + datetime.timedelta(days=1)).isoformat()
    unknown = new_device_id("LG")
    bad = [
        (topic, b"{not json"),
        (topic, json.dumps({"v": 1, "device_id": trip.device_id, "readings": "5"}).encode()),
        (reading_topic(unknown), payload(unknown, [reading(trip, 1)])),
        (topic, payload(trip.device_id, [{"seq": 2, "at": future, "c": 5}])),
        (topic, payload(trip.device_id, [reading(trip, 3, 140.0)])),
    ]
    with Publisher(settings) as publisher:
        for bad_topic, data in bad:
            publisher.publish(bad_topic, data)
        publisher.publish(topic, payload(trip.device_id, [reading(trip, 4, 5.5)]))

    assert wait_for(lambda: stored_sequences(trip) == [4])
    assert wait_for(lambda: consumer.stats.acked >= 6)
    reasons = read(
        lambda: set(
            DeadLetter.objects.filter(topic__in=[topic, reading_topic(unknown)]).values_list(
                "reason", flat=True
            )
        )
    )
    assert reasons == {
        "malformed_json",
        "invalid_payload",
        "unknown_logger",
        "future_reading",
        "impossible_temperature",
    }
    letter = read(lambda: DeadLetter.objects.get(reason="malformed_json", topic=topic))
    assert letter.payload == b"{not json"
    assert consumer.stats.dead_lettered >= 5
    assert consumer.stats.rejected_by_defect == 0


@pytest.mark.slow
def test_two_consumers_in_one_shared_group_store_every_reading_exactly_once(
    broker, trip, consumers
):
    requires_mosquitto(broker)
    group = f"g{uuid.uuid4().hex[:10]}"
    first = consumers(broker.settings("5", MQTT_SHARE_GROUP=group))
    second = consumers(broker.settings("3.1.1", MQTT_SHARE_GROUP=group))
    settings = broker.settings("5")

    publish(settings, trip, [[reading(trip, seq)] for seq in range(400)])

    assert wait_for(lambda: stored_count(trip) == 400)
    assert wait_for(lambda: first.stats.acked + second.stats.acked >= 400)
    assert sorted(stored_sequences(trip)) == list(range(400))
    stored = [first.stats.stored, second.stats.stored]
    assert sum(stored) == 400, "each reading stored by exactly one member"
    assert min(stored) > 0, f"the group shared the load: {stored}"
    assert first.stats.duplicates + second.stats.duplicates == 0


# --- killing the consumer, restarting the broker ------------------------------------------------


def database_url() -> str:
    """The test database, as a subprocess reaches it."""
    db = connection.settings_dict
    auth = db["USER"] or ""
    if db["PASSWORD"]:
        auth += f":{db['PASSWORD']}"
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class ConsumerProcess:
    """``manage.py coldchain_consume`` against the test database, its output in a file."""

    def __init__(self, settings_env: dict[str, str], log: Path):
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}  # evaluate in-process
        }
        self.env.update(settings_env, DATABASE_URL=database_url(), LOG_LEVEL="INFO")
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> ConsumerProcess:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(  # noqa: S603 - our own manage.py
                [sys.executable, "manage.py", "coldchain_consume"],
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=30)


def publish_in_background(settings, t: Trip, count: int, pace: float) -> threading.Thread:
    def run():
        with Publisher(settings, window=50) as publisher:
            for seq in range(count):
                publisher.publish(
                    reading_topic(t.device_id), payload(t.device_id, [reading(t, seq)])
                )
                time.sleep(pace)
            assert publisher.flush(timeout=120)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.postgres
def test_consumer_killed_mid_stream_and_restarted_stores_every_reading_exactly_once(
    broker, trip, tmp_path
):
    """SIGKILL while readings stream in: whatever it had received but not acknowledged, the
    broker redelivers to the restarted consumer (same client id, persistent session)."""
    requires_mosquitto(broker)
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): the consumer runs in a subprocess")
    settings = broker.settings("5", MQTT_INFLIGHT_WINDOW="50", MQTT_BATCH_SIZE="20")
    env = {
        "MQTT_URL": broker.url,
        "MQTT_PROTOCOL": "5",
        "MQTT_CLIENT_ID": settings.client_id,
        "MQTT_SHARE_GROUP": settings.share_group,
        "MQTT_INFLIGHT_WINDOW": "50",
        "MQTT_BATCH_SIZE": "20",
        "MQTT_STATS_INTERVAL": "1",
    }
    log = tmp_path / "consumer.log"
    consumer = ConsumerProcess(env, log).start()
    count = 600
    try:
        # the consumer subscribes before the first reading: its session queues everything after
        assert wait_for(lambda: "subscribing to" in log.read_text(), timeout=60), log.read_text()
        time.sleep(0.5)
        publisher = publish_in_background(settings, trip, count, pace=0.005)
        assert wait_for(lambda: stored_count(trip) > 100)

        consumer.kill()  # mid-stream: no chance to ack, disconnect or say goodbye
        killed_at = stored_count(trip)
        time.sleep(1)  # the stream goes on while the consumer is gone
        consumer.start()

        publisher.join(timeout=120)
        assert wait_for(lambda: stored_count(trip) >= count, 60)
        time.sleep(1)  # let any redelivered duplicate arrive: it must not add a row
    finally:
        exit_code = consumer.terminate()
    assert killed_at < count, "the kill came mid-stream"
    assert sorted(stored_sequences(trip)) == list(range(count)), log.read_text()[-3000:]
    assert exit_code == 0, log.read_text()[-3000:]
    assert "stopped" in log.read_text()


@pytest.mark.slow
def test_the_broker_restarted_while_loggers_publish_loses_nothing(
    trip, private_mosquitto, consumers
):
    """A private Mosquitto (persistence on) is stopped and started again mid-stream: the
    publisher resends what was not acknowledged, the consumer's session comes back from the
    broker's persistence, and every reading is stored exactly once.

    With a plain subscription. Mosquitto 2.0.11 (measured here) restores a shared subscription
    from its persistence but gives it no message until a member reconnects: what loggers publish
    in between is acknowledged to them and lost (docs/deployment.md, "MQTT broker")."""
    env = {
        "MQTT_URL": private_mosquitto.url,
        "MQTT_CLIENT_ID": f"t-{uuid.uuid4().hex[:12]}",
        "MQTT_SHARE_GROUP": "",
        "MQTT_STATS_INTERVAL": "0",
    }
    settings = replace(MqttSettings.from_environment(env), reconnect_max_delay=2)
    consumer = consumers(settings)
    publisher_settings = replace(settings, reconnect_max_delay=2)
    count = 400
    publisher = publish_in_background(publisher_settings, trip, count, pace=0.005)
    assert wait_for(lambda: stored_count(trip) > 50)

    private_mosquitto.stop()
    time.sleep(1)
    private_mosquitto.start()

    publisher.join(timeout=120)
    assert not publisher.is_alive()
    assert wait_for(lambda: stored_count(trip) >= count, 60)
    time.sleep(0.5)
    assert sorted(stored_sequences(trip)) == list(range(count))
    assert consumer.stats.disconnects >= 1
    assert consumer.stats.connects >= 2
