"""The consumer's batching and acknowledgement on a real broker.

Ingestion here is a small in-test stand-in that records what it is given (and can fail like an
unavailable database, or raise like a defect), so that these tests see exactly which batch
was committed and acknowledged when; the end-to-end tests (test_mqtt_end_to_end.py) use the
real ``coldchain.services.ingest_messages``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace

import pytest
from django.db import OperationalError

from coldchain.ingest import IngestResult
from integrations.mqtt import (
    MOSQUITTO_DEFAULT_INFLIGHT,
    MqttConfigurationError,
    MqttSettings,
    TelemetryConsumer,
    default_client_id,
)
from integrations.simulator import Publisher, payload

from . import test_mqtt_support as support
from .test_mqtt_support import new_device_id, requires_mosquitto, wait_for

_session_broker = support._session_broker  # fixtures of the broker under test
broker = support.broker


class RecordingIngest:
    """Stand-in for ingest_messages: records each committed batch; can fail first."""

    def __init__(self, *, unavailable: int = 0, poison: bytes | None = None, delay: float = 0):
        self.batches: list[list] = []
        self.attempts: list[list] = []
        self.unavailable = unavailable
        self.poison = poison
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, messages):
        messages = list(messages)
        with self.lock:
            self.attempts.append(messages)
            if self.unavailable:
                self.unavailable -= 1
                raise OperationalError("connection to server at 127.0.0.1 refused")
        if self.poison is not None and any(m.payload == self.poison for m in messages):
            raise ValueError("a defect triggered by this payload")
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.batches.append(messages)
        return IngestResult(stored=len(messages), reasons=Counter())

    def payloads(self, device_id: str) -> list[bytes]:
        with self.lock:
            return [
                m.payload for batch in self.batches for m in batch if f"/{device_id}/" in m.topic
            ]


def publish_readings(settings, device_id: str, count: int, *, start: int = 0) -> list[bytes]:
    """Publish ``count`` one-reading messages at QoS 1 and wait for every PUBACK."""
    sent = []
    with Publisher(settings, window=100) as publisher:
        for sequence in range(start, start + count):
            data = payload(device_id, [{"seq": sequence, "at": "2026-11-28T10:00:00Z", "c": 5.0}])
            publisher.publish(f"pharmadms/v1/loggers/{device_id}/readings", data)
            sent.append(data)
        assert publisher.flush(timeout=30)
    return sent


def running_consumer(settings, ingest) -> TelemetryConsumer:
    consumer = TelemetryConsumer(settings, ingest=ingest).start()
    assert consumer.subscribed.wait(15), "the consumer did not subscribe"
    return consumer


# --- settings ------------------------------------------------------------------------------


def test_settings_unset_url_means_the_embedded_broker_over_mqtt_3_1_1_and_a_plain_subscription():
    settings = MqttSettings.from_environment({})
    assert (settings.host, settings.port, settings.embedded) == ("127.0.0.1", 1884, True)
    assert settings.protocol == "3.1.1"
    assert settings.subscription == "pharmadms/v1/loggers/+/readings"
    assert settings.inflight_window == MOSQUITTO_DEFAULT_INFLIGHT
    assert settings.client_id == default_client_id()  # stable: the same on every start


def test_settings_from_an_mqtt_url_default_to_mqtt_5_and_a_shared_subscription():
    settings = MqttSettings.from_environment(
        {
            "MQTT_URL": "mqtt://ingest:s%40cret@mqtt.example.com:2883",
            "MQTT_SHARE_GROUP": "eu-ingest",
            "MQTT_CLIENT_ID": "ingest-7",
            "MQTT_BATCH_SIZE": "250",
            "MQTT_BATCH_WAIT_MS": "20",
            "MQTT_INFLIGHT_WINDOW": "400",
        }
    )
    assert (settings.host, settings.port) == ("mqtt.example.com", 2883)
    assert (settings.username, settings.password) == ("ingest", "s@cret")
    assert settings.protocol == "5"
    assert settings.subscription == "$share/eu-ingest/pharmadms/v1/loggers/+/readings"
    assert settings.client_id == "ingest-7"
    assert (settings.batch_size, settings.batch_wait, settings.batch_limit) == (250, 0.02, 250)
    assert settings.embedded is False


def test_settings_batches_never_outgrow_the_in_flight_window():
    settings = MqttSettings.from_environment(
        {"MQTT_URL": "mqtt://127.0.0.1", "MQTT_PROTOCOL": "3.1.1", "MQTT_BATCH_SIZE": "500"}
    )
    assert settings.inflight_window == 20
    assert settings.batch_limit == 20
    assert settings.session_expiry > 0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MQTT_URL": "http://127.0.0.1"}, "mqtt://"),
        ({"MQTT_URL": "mqtt://h", "MQTT_PROTOCOL": "4"}, "3.1.1 or 5"),
        ({"MQTT_PROTOCOL": "5"}, "3.1.1 only"),
        ({"MQTT_URL": "mqtt://h", "MQTT_SHARE_GROUP": "a/b"}, "MQTT_SHARE_GROUP"),
        ({"MQTT_URL": "mqtt://h", "MQTT_BATCH_SIZE": "0"}, "at least 1"),
        ({"MQTT_URL": "mqtt://h", "MQTT_BATCH_WAIT_MS": "soon"}, "a number"),
    ],
)
def test_settings_that_cannot_work_are_refused(environ, message):
    with pytest.raises(MqttConfigurationError, match=message):
        MqttSettings.from_environment(environ)


# --- batching and acknowledgement -----------------------------------------------------------


@pytest.fixture(params=["3.1.1", "5"])
def protocol(request, broker):
    if request.param not in broker.protocols:
        pytest.skip(f"{broker.kind} does not speak MQTT {request.param}")
    return request.param


def test_every_message_is_committed_in_batches_bounded_by_the_window_then_acked(broker, protocol):
    """300 messages arrive in batches no larger than min(batch size, window); each is acked."""
    device = new_device_id()
    settings = broker.settings(protocol, MQTT_INFLIGHT_WINDOW="20", MQTT_BATCH_SIZE="50")
    ingest = RecordingIngest()
    consumer = running_consumer(settings, ingest)
    try:
        sent = publish_readings(settings, device, 300)
        assert wait_for(lambda: len(ingest.payloads(device)) >= 300)
        assert wait_for(lambda: consumer.stats.acked >= 300)
    finally:
        consumer.stop()
    assert sorted(ingest.payloads(device)) == sorted(sent)
    assert max(len(batch) for batch in ingest.batches) <= 20
    assert consumer.stats.snapshot()["unacked_stale"] == 0
    if broker.kind == "mosquitto":  # with MQTT 3.1.1, Mosquitto's window is 20: batches fill it
        assert max(len(batch) for batch in ingest.batches) == 20


def test_database_unavailable_nothing_is_acked_and_the_same_batch_is_retried(broker, protocol):
    """The stand-in fails twice like a database that is down: the consumer backs off, retries
    the very same batch, and acks only after it is committed."""
    device = new_device_id()
    settings = broker.settings(protocol, MQTT_INFLIGHT_WINDOW="20", MQTT_BATCH_WAIT_MS="200")
    ingest = RecordingIngest(unavailable=2)
    consumer = TelemetryConsumer(replace(settings, retry_min_delay=0.05), ingest=ingest).start()
    try:
        assert consumer.subscribed.wait(15)
        sent = publish_readings(settings, device, 10)
        assert wait_for(lambda: len(ingest.payloads(device)) >= 10)
        assert wait_for(lambda: consumer.stats.acked >= 10)
    finally:
        consumer.stop()
    mine = [a for a in ingest.attempts if any(f"/{device}/" in m.topic for m in a)]
    assert len(mine) >= 3
    assert mine[0] == mine[1] == mine[2], "the retried batch is the same batch"
    assert consumer.stats.database_failures == 2
    assert sorted(ingest.payloads(device)) == sorted(sent)


def test_unacknowledged_messages_come_back_to_the_same_client_id(broker, protocol):
    """A consumer whose database never comes back stops without acking; the next consumer
    with the same client id gets every message again from the broker's session."""
    requires_mosquitto(broker)
    device = new_device_id()
    settings = broker.settings(protocol, MQTT_INFLIGHT_WINDOW="50")
    down = RecordingIngest(unavailable=10**6)
    consumer = running_consumer(settings, down)
    sent = publish_readings(settings, device, 30)
    assert wait_for(lambda: consumer.stats.database_failures >= 1)
    consumer.stop()
    assert consumer.stats.acked == 0

    # when a consumer with the same client id (a restart) comes back with a working database
    ingest = RecordingIngest()
    restarted = running_consumer(settings, ingest)
    try:
        assert wait_for(lambda: len(set(ingest.payloads(device))) >= 30)
    finally:
        restarted.stop()
    assert set(ingest.payloads(device)) == set(sent)


def test_a_message_that_makes_ingestion_raise_is_isolated_and_the_stream_goes_on(broker):
    """Ingestion raising for a reason other than the database is a defect: the batch is split,
    the others are committed and acked, the one message is logged and acked, and messages
    after it still flow."""
    device = new_device_id()
    settings = broker.settings("3.1.1", MQTT_INFLIGHT_WINDOW="20")
    ingest = RecordingIngest(poison=b"poison")
    consumer = running_consumer(settings, ingest)
    try:
        with Publisher(settings) as publisher:
            topic = f"pharmadms/v1/loggers/{device}/readings"
            publisher.publish(topic, payload(device, [{"seq": 1, "at": "x", "c": 1}]))
            publisher.publish(topic, b"poison")
            publisher.publish(topic, payload(device, [{"seq": 2, "at": "x", "c": 1}]))
        assert wait_for(lambda: len(ingest.payloads(device)) >= 2)
        assert wait_for(lambda: consumer.stats.rejected_by_defect >= 1)
        assert wait_for(lambda: consumer.stats.acked >= 3)
    finally:
        consumer.stop()
    assert b"poison" not in ingest.payloads(device)
    assert consumer.stats.rejected_by_defect == 1


def test_graceful_stop_finishes_and_acks_the_batch_in_hand(broker):
    """stop() while a slow batch commits: the batch is committed and acked before the
    consumer disconnects."""
    device = new_device_id()
    settings = broker.settings("3.1.1", MQTT_INFLIGHT_WINDOW="20", MQTT_BATCH_WAIT_MS="100")
    ingest = RecordingIngest(delay=1.0)
    consumer = running_consumer(settings, ingest)
    publish_readings(settings, device, 5)
    assert wait_for(lambda: len(ingest.attempts) >= 1)
    consumer.stop()
    committed = len(ingest.payloads(device))
    assert committed == 5
    assert consumer.stats.acked == 5
