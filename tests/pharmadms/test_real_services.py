"""The real services the platform talks to: the Celery broker and result backend, the MQTT broker.

No mocks: each test talks to the service named in the environment (CI sets them all) or skips
with the variable to set. Unset, Celery runs tasks in-process, and that is checked too.
"""

from __future__ import annotations

import os
import queue
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import pytest
from celery.contrib.testing.worker import start_worker
from celery.result import EagerResult
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from pharmadms import celery_app
from pharmadms.celery import ping

TIMEOUT_SECONDS = 10
pytestmark = pytest.mark.real_broker  # tasks go through the broker, not in-process


# --- Celery ----------------------------------------------------------------------------------


@contextmanager
def worker_on_own_queue():
    """An in-process worker consuming only a queue of its own.

    Other tests publish real tasks when a broker is set, and nobody consumes them during the
    run: a worker on the default queue would execute those leftovers here. A queue of its own
    also keeps any other worker on the same broker from answering for this one. The app's
    queue selection, which the worker changes, is put back, and the queue deleted.
    """
    queue_name = f"pharmadms-test-{uuid.uuid4().hex}"
    queues = celery_app.amqp.queues
    consume_from = queues._consume_from  # Celery offers no public way to undo select()
    hijack = celery_app.conf.worker_hijack_root_logger
    celery_app.conf.worker_hijack_root_logger = False  # leave pytest's log capture alone
    try:
        # The ping check would send celery.ping to the default queue, which this worker does
        # not read; start_worker already waits until the consumer is ready.
        with start_worker(celery_app, perform_ping_check=False, queues=[queue_name]):
            yield queue_name
    finally:
        celery_app.conf.worker_hijack_root_logger = hijack
        queues._consume_from = consume_from
        queue = queues.pop(queue_name, None)
        if queue is not None:
            with celery_app.connection_for_write() as connection:
                bound = queue(connection.default_channel)
                bound.declare()  # a fresh channel knows no bindings; delete() needs them
                bound.delete()


def test_tasks_run_in_process_exactly_when_no_broker_is_set():
    """With no broker a task runs at once, in-process (the embedded default); with a broker it
    is never silently run in-process."""
    if os.environ.get("CELERY_BROKER_URL"):
        assert celery_app.conf.task_always_eager is False
        assert celery_app.conf.broker_url == os.environ["CELERY_BROKER_URL"]
    else:
        assert celery_app.conf.task_always_eager is True
        result = ping.delay()
        assert isinstance(result, EagerResult)
        assert result.get(timeout=TIMEOUT_SECONDS) == "pong"


def test_ping_round_trips_through_the_real_broker_and_result_backend():
    """pharmadms.ping goes to the broker, a worker runs it, the answer comes back through the
    result backend."""
    if not os.environ.get("CELERY_BROKER_URL"):
        pytest.skip("needs a Celery broker: set CELERY_BROKER_URL")
    if not os.environ.get("CELERY_RESULT_BACKEND"):
        pytest.skip("needs a Celery result backend: set CELERY_RESULT_BACKEND")

    with worker_on_own_queue() as queue_name:
        result = ping.apply_async(queue=queue_name)
        assert not isinstance(result, EagerResult)
        answer = result.get(timeout=TIMEOUT_SECONDS)

    assert answer == "pong"
    assert result.successful()
    result.forget()


# --- MQTT ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MqttBroker:
    host: str
    port: int
    username: str | None = None
    password: str | None = None


def parse_mqtt_url(url: str) -> MqttBroker:
    """``mqtt://[user[:password]@]host[:port]`` → where and how to connect (port 1883 default)."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt":
        raise ValueError(f"an MQTT URL starts with mqtt://, not {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in MQTT URL {url!r}")
    return MqttBroker(
        host=parts.hostname,
        port=parts.port or 1883,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", MqttBroker("127.0.0.1", 1883)),
        ("mqtt://broker.example.com", MqttBroker("broker.example.com", 1883)),
        (
            "mqtt://ingest:s%40cret@mqtt.local:2883",
            MqttBroker("mqtt.local", 2883, "ingest", "s@cret"),
        ),
        ("mqtt://logger-7@mqtt.local", MqttBroker("mqtt.local", 1883, "logger-7", None)),
    ],
)
def test_mqtt_url_is_parsed(url, expected):
    assert parse_mqtt_url(url) == expected


@pytest.mark.parametrize("url", ["http://127.0.0.1:1883", "mqtt://", "127.0.0.1:1883"])
def test_mqtt_url_that_is_not_one_is_refused(url):
    with pytest.raises(ValueError, match="MQTT URL"):
        parse_mqtt_url(url)


@pytest.fixture
def mqtt_client():
    """A paho 2 client connected to the broker named by MQTT_URL, its network loop running.

    "Set" is read from the environment, not from settings: settings fall back to the in-process
    demo broker, which is not running under the tests.
    """
    url = os.environ.get("MQTT_URL")
    if not url:
        pytest.skip("needs an MQTT broker: set MQTT_URL")
    broker = parse_mqtt_url(url)
    connected: queue.Queue = queue.Queue()
    client = Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"pharmadms-test-{uuid.uuid4().hex[:12]}",
    )
    client.on_connect = lambda _c, _u, _flags, reason_code, _props: connected.put(reason_code)
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    try:
        client.connect(broker.host, broker.port, keepalive=30)
    except OSError as error:
        pytest.skip(f"needs an MQTT broker: set MQTT_URL ({url} is unreachable: {error})")
    client.loop_start()
    try:
        reason_code = connected.get(timeout=TIMEOUT_SECONDS)
        assert not reason_code.is_failure, f"the broker at {url} refused us: {reason_code}"
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def test_mqtt_message_round_trips_at_qos_1(mqtt_client):
    """A message published at QoS 1 on a fresh topic reaches its subscriber at QoS 1."""
    topic = f"pharmadms/test/{uuid.uuid4().hex}"
    payload = b'{"seq": 1, "celsius": 5.2}'
    subscribed: queue.Queue = queue.Queue()
    received: queue.Queue[MQTTMessage] = queue.Queue()
    mqtt_client.on_subscribe = lambda _c, _u, _mid, reason_codes, _props: subscribed.put(
        reason_codes
    )
    mqtt_client.on_message = lambda _c, _u, message: received.put(message)

    # given a subscription granted at QoS 1
    result, _ = mqtt_client.subscribe(topic, qos=1)
    assert result == MQTTErrorCode.MQTT_ERR_SUCCESS
    [granted] = subscribed.get(timeout=TIMEOUT_SECONDS)
    assert granted.value == 1, f"subscription granted at {granted}"

    # when a message is published at QoS 1
    publication = mqtt_client.publish(topic, payload, qos=1)
    publication.wait_for_publish(timeout=TIMEOUT_SECONDS)
    assert publication.is_published()

    # then it arrives, once, as sent
    message = received.get(timeout=TIMEOUT_SECONDS)
    assert (message.topic, message.payload, message.qos) == (topic, payload, 1)
