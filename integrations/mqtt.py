"""The MQTT telemetry consumer: loggers' readings from the broker into coldchain, each message
acknowledged only after the batch holding it is committed.

Three threads share the work. paho's network loop (``loop_start``) receives PUBLISH packets and
puts each into a bounded local buffer; a worker thread takes them from the buffer in batches,
hands each batch to ``coldchain.services.ingest_messages`` (one transaction) and then acks every
message of the batch, in the order received (MQTT requires PUBACKs in receipt order); the
calling thread supervises: it logs health figures and stops the others on request.

What holds the guarantees:

- a persistent session (MQTT 3.1.1 ``clean_session=False``; MQTT 5 ``clean_start=False`` with a
  session expiry) and paho's manual ack: the broker keeps every unacknowledged message and sends
  it again when the consumer comes back, so a consumer killed at any point loses nothing, and
  ingestion is idempotent on (logger, sequence), so nothing is stored twice;
- acks go out only on the connection the message came in on (a *generation* counter bumped on
  every connect and disconnect): after a reconnect the broker redelivers the message anyway, and
  an ack on the new connection could complete a different message that reuses the packet id;
- the broker sends at most its in-flight window of unacknowledged messages (Mosquitto's
  ``max_inflight_messages`` for MQTT 3.1.1, the consumer's Receive Maximum for MQTT 5), so a
  batch never waits for more than the window can bring: it is cut at ``min(batch size,
  window)`` or after the batch wait, whichever comes first;
- the database down: ``ingest_messages`` raises, nothing is acked, the same batch is retried with
  backoff; the window is exhausted meanwhile and the broker holds the rest. The broker down:
  paho reconnects with backoff (``reconnect_delay_set``). Bad input never raises: ingestion
  dead-letters it. Should ingestion still raise on a message for another reason (a defect), the
  batch is split to find that message, which is logged with its payload and acknowledged, so
  one bad message cannot stop the stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone
from paho.mqtt.client import Client, MQTTMessage, MQTTv5, MQTTv311
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from coldchain.ingest import TOPIC_FILTER, IncomingMessage, IngestResult

logger = logging.getLogger(__name__)

EMBEDDED_HOST = "127.0.0.1"
EMBEDDED_PORT = 1884
DEFAULT_SHARE_GROUP = "pharmadms-ingest"
# Mosquitto's max_inflight_messages default: what an MQTT 3.1.1 consumer gets unless the broker
# is configured otherwise. An MQTT 5 consumer asks for its own window (Receive Maximum), which
# Mosquitto 2 honours (measured: 100 asked, 100 in flight, above max_inflight_messages 20).
MOSQUITTO_DEFAULT_INFLIGHT = 20
MQTT5_DEFAULT_RECEIVE_MAXIMUM = 1000
SESSION_EXPIRY_DEFAULT = 7 * 24 * 3600  # a consumer may be away a week without losing messages

# The database cannot be reached (connection refused or lost, server restarting, SQLite locked).
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


# --- settings --------------------------------------------------------------------------------


class MqttConfigurationError(ValueError):
    """An MQTT_* environment variable has a value that cannot work."""


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise MqttConfigurationError(f"{name} must be a whole number, not {raw!r}") from error
    if value < minimum:
        raise MqttConfigurationError(f"{name} must be at least {minimum}, not {value}")
    return value


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as error:
        raise MqttConfigurationError(f"{name} must be a number, not {raw!r}") from error
    if value < 0:
        raise MqttConfigurationError(f"{name} must not be negative, not {value}")
    return value


def default_client_id(prefix: str = "pdms-ingest") -> str:
    """Stable across restarts of this host (the persistent session is keyed on it), at most 23
    characters (the length MQTT 3.1.1 obliges every broker to accept)."""
    digest = hashlib.sha256(socket.gethostname().encode()).hexdigest()
    return f"{prefix}-{digest[: 22 - len(prefix)]}"


@dataclass(frozen=True)
class MqttSettings:
    """Where the broker is and how the consumer talks to it; see :meth:`from_environment`."""

    host: str = EMBEDDED_HOST
    port: int = EMBEDDED_PORT
    username: str | None = None
    password: str | None = None
    embedded: bool = True
    protocol: str = "3.1.1"
    share_group: str = ""
    client_id: str = field(default_factory=default_client_id)
    keepalive: int = 30
    session_expiry: int = SESSION_EXPIRY_DEFAULT
    inflight_window: int = MOSQUITTO_DEFAULT_INFLIGHT
    batch_size: int = 500
    batch_wait: float = 0.05
    buffer_limit: int = 2000
    reconnect_min_delay: int = 1
    reconnect_max_delay: int = 60
    retry_min_delay: float = 0.5
    retry_max_delay: float = 30.0
    stats_interval: float = 60.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> MqttSettings:
        """Read the ``MQTT_*`` variables (docs/deployment.md lists them).

        ``MQTT_URL`` unset means the embedded broker (amqtt, MQTT 3.1.1, no shared
        subscriptions) on 127.0.0.1:1884, which ``dev.py demo`` starts.
        """
        environ = os.environ if environ is None else environ
        url = environ.get("MQTT_URL", "")
        embedded = not url
        if embedded:
            host, port, username, password = EMBEDDED_HOST, EMBEDDED_PORT, None, None
            port = _int(environ, "MQTT_EMBEDDED_PORT", EMBEDDED_PORT, minimum=1)
        else:
            host, port, username, password = parse_mqtt_url(url)
        protocol = environ.get("MQTT_PROTOCOL", "") or ("3.1.1" if embedded else "5")
        if protocol not in {"3.1.1", "5"}:
            raise MqttConfigurationError(f"MQTT_PROTOCOL must be 3.1.1 or 5, not {protocol!r}")
        if embedded and protocol != "3.1.1":
            raise MqttConfigurationError("the embedded broker (amqtt) speaks MQTT 3.1.1 only")
        share_group = "" if embedded else environ.get("MQTT_SHARE_GROUP", DEFAULT_SHARE_GROUP)
        if any(char in share_group for char in "/+#"):
            raise MqttConfigurationError("MQTT_SHARE_GROUP may not contain '/', '+' or '#'")
        window_default = (
            MQTT5_DEFAULT_RECEIVE_MAXIMUM if protocol == "5" else MOSQUITTO_DEFAULT_INFLIGHT
        )
        window = _int(environ, "MQTT_INFLIGHT_WINDOW", window_default, minimum=1)
        if protocol == "5" and window > 65535:
            raise MqttConfigurationError("MQTT_INFLIGHT_WINDOW is at most 65535 with MQTT 5")
        batch_size = _int(environ, "MQTT_BATCH_SIZE", 500, minimum=1)
        return cls(
            host=host,
            port=port,
            username=username,
            password=password,
            embedded=embedded,
            protocol=protocol,
            share_group=share_group,
            client_id=environ.get("MQTT_CLIENT_ID", "") or default_client_id(),
            keepalive=_int(environ, "MQTT_KEEPALIVE", 30, minimum=5),
            session_expiry=_int(environ, "MQTT_SESSION_EXPIRY", SESSION_EXPIRY_DEFAULT, 1),
            inflight_window=window,
            batch_size=batch_size,
            batch_wait=_float(environ, "MQTT_BATCH_WAIT_MS", 50) / 1000,
            buffer_limit=max(2 * min(batch_size, window), 2 * batch_size, 100),
            stats_interval=_float(environ, "MQTT_STATS_INTERVAL", 60),
        )

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def subscription(self) -> str:
        """The topic filter: shared among the group's members when the broker can share."""
        return f"$share/{self.share_group}/{TOPIC_FILTER}" if self.share_group else TOPIC_FILTER

    @property
    def batch_limit(self) -> int:
        """No batch can grow past the window: the broker sends nothing more until an ack."""
        return max(1, min(self.batch_size, self.inflight_window))


def parse_mqtt_url(url: str) -> tuple[str, int, str | None, str | None]:
    """``mqtt://[user[:password]@]host[:port]`` → host, port (1883 default), user, password."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt":
        raise MqttConfigurationError(f"an MQTT URL starts with mqtt://, not {url!r}")
    if not parts.hostname:
        raise MqttConfigurationError(f"no host in MQTT URL {url!r}")
    return (
        parts.hostname,
        parts.port or 1883,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


def make_client(
    settings: MqttSettings,
    client_id: str,
    *,
    persistent: bool,
    manual_ack: bool = False,
) -> Client:
    """A paho 2 client for ``settings``' broker and protocol, with reconnect backoff set.

    ``persistent`` asks for a session that outlives the connection (MQTT 3.1.1
    ``clean_session=False``; MQTT 5: ``clean_start=False`` is given to :func:`connect_args`).
    """
    if settings.protocol == "5":
        client = Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTv5,
            manual_ack=manual_ack,
        )
    else:
        client = Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTv311,
            clean_session=not persistent,
            manual_ack=manual_ack,
        )
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    client.reconnect_delay_set(settings.reconnect_min_delay, settings.reconnect_max_delay)
    return client


def connect_args(settings: MqttSettings, *, persistent: bool, receive_maximum: int = 0) -> dict:
    """Keyword arguments of ``Client.connect``/``connect_async`` for ``settings``."""
    args: dict = {"host": settings.host, "port": settings.port, "keepalive": settings.keepalive}
    if settings.protocol == "5":
        properties = Properties(PacketTypes.CONNECT)
        if persistent:
            properties.SessionExpiryInterval = settings.session_expiry
        if receive_maximum:
            properties.ReceiveMaximum = receive_maximum
        args["clean_start"] = not persistent
        args["properties"] = properties
    return args


def forget_session(settings: MqttSettings, client_id: str, timeout: float = 10) -> bool:
    """Remove the broker's session of ``client_id`` (its subscription and queued messages):
    connect with a clean session that expires at once, and disconnect. For tests and for
    retiring a consumer for good."""
    client = make_client(settings, client_id, persistent=False)
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    args = connect_args(settings, persistent=False)
    if settings.protocol == "5":
        args["properties"].SessionExpiryInterval = 0
    try:
        client.connect(**args)
    except OSError:
        return False
    client.loop_start()
    try:
        return connected.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()


# --- health figures --------------------------------------------------------------------------


@dataclass
class ConsumerStats:
    """Running totals of one consumer (thread-safe through ``lock``)."""

    received: int = 0
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    reasons: Counter = field(default_factory=Counter)
    acked: int = 0
    unacked_stale: int = 0
    database_failures: int = 0
    rejected_by_defect: int = 0
    connects: int = 0
    disconnects: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> dict:
        with self.lock:
            figures = {
                name: getattr(self, name)
                for name in self.__dataclass_fields__
                if name not in {"lock", "reasons"}
            }
            figures["reasons"] = dict(self.reasons)
        return figures

    def record_batch(self, size: int, result: IngestResult) -> None:
        with self.lock:
            self.batches += 1
            self.stored += result.stored
            self.duplicates += result.duplicates
            self.dead_lettered += result.dead_lettered
            self.reasons.update(result.reasons)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)


def health_line(previous: dict, current: dict, seconds: float) -> str:
    """One log line: rates since the previous snapshot, totals since the start."""
    seconds = max(seconds, 1e-9)
    stored_rate = (current["stored"] - previous["stored"]) / seconds
    message_rate = (current["received"] - previous["received"]) / seconds
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(current["reasons"].items())) or "none"
    return (
        f"stored {stored_rate:.1f}/s ({message_rate:.1f} messages/s); totals: "
        f"stored {current['stored']}, duplicates {current['duplicates']}, "
        f"dead letters {current['dead_lettered']} ({reasons}), messages {current['received']}, "
        f"acked {current['acked']}, batches {current['batches']}, "
        f"database failures {current['database_failures']}, "
        f"rejected by a defect {current['rejected_by_defect']}, "
        f"connects {current['connects']}, disconnects {current['disconnects']}"
    )


# --- the consumer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One received message, and what its ack needs: packet id, QoS, and the connection."""

    message: IncomingMessage
    mid: int
    qos: int
    generation: int


Ingest = Callable[[Sequence[IncomingMessage]], IngestResult]


def _default_ingest() -> Ingest:
    from coldchain.services import ingest_messages

    return ingest_messages


class TelemetryConsumer:
    """Consume ``pharmadms/v1/loggers/+/readings`` into ``ingest`` until :meth:`stop`.

    ``start()`` returns at once (paho connects, and reconnects, in its own thread); ``stop()``
    finishes the batch in hand and what is already buffered, acks it, and disconnects.
    ``ingest`` defaults to ``coldchain.services.ingest_messages``.
    """

    def __init__(self, settings: MqttSettings, ingest: Ingest | None = None):
        self.settings = settings
        self.ingest = ingest or _default_ingest()
        self.stats = ConsumerStats()
        self.subscribed = threading.Event()
        self._buffer: queue.Queue[Delivery] = queue.Queue(maxsize=settings.buffer_limit)
        self._generation = 0
        self._connected = False
        self._ack_lock = threading.Lock()
        self._stopping = threading.Event()
        self._closing = threading.Event()  # the network loop is going away: drop, don't wait
        self._worker: threading.Thread | None = None
        self._client = make_client(settings, settings.client_id, persistent=True, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # -- lifecycle --

    def start(self) -> TelemetryConsumer:
        s = self.settings
        logger.info(
            "MQTT consumer %s connecting to %s (MQTT %s, %s, window %d, batches of up to %d)",
            s.client_id,
            s.url,
            s.protocol,
            f"shared group {s.share_group!r}" if s.share_group else "plain subscription",
            s.inflight_window,
            s.batch_limit,
        )
        receive_maximum = s.inflight_window if s.protocol == "5" else 0
        self._client.connect_async(
            **connect_args(s, persistent=True, receive_maximum=receive_maximum)
        )
        self._client.loop_start()  # retries the first connection too, with the backoff
        self._worker = threading.Thread(target=self._work, name="mqtt-ingest", daemon=True)
        self._worker.start()
        return self

    def stop(self, timeout: float = 60) -> None:
        """Graceful stop: finish and ack the batch in hand and the buffered messages, then
        disconnect. Messages still unacknowledged stay with the broker for the next start."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(timeout)
        self._closing.set()
        self._client.disconnect()
        self._client.loop_stop()
        logger.info("MQTT consumer %s stopped: %s", self.settings.client_id, self.stats.snapshot())

    def serve(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set, logging the health figures every ``stats_interval``."""
        self.start()
        previous, since = self.stats.snapshot(), time.monotonic()
        try:
            while not stop.wait(self.settings.stats_interval or None):
                current, now = self.stats.snapshot(), time.monotonic()
                logger.info("MQTT consumer health: %s", health_line(previous, current, now - since))
                previous, since = current, now
        finally:
            self.stop()

    @property
    def generation(self) -> int:
        return self._generation

    # -- paho callbacks (network thread): never raise, never wait long --

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.error(
                "MQTT broker %s refused the connection: %s", self.settings.url, reason_code
            )
            return
        with self._ack_lock:
            self._generation += 1
            self._connected = True
        self.stats.add(connects=1)
        logger.info(
            "MQTT consumer connected to %s (session present: %s); subscribing to %s",
            self.settings.url,
            flags.session_present,
            self.settings.subscription,
        )
        # Also when the session is present: a broker that lost it (or never kept it) needs it.
        client.subscribe(self.settings.subscription, qos=1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._ack_lock:
            self._generation += 1
            self._connected = False
        self.subscribed.clear()
        self.stats.add(disconnects=1)
        if not self._closing.is_set():
            logger.warning(
                "MQTT consumer lost the broker %s (%s); reconnecting with backoff",
                self.settings.url,
                reason_code,
            )

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        granted = reason_codes[0]
        if granted.is_failure:
            logger.error("MQTT subscription to %s refused: %s", self.settings.subscription, granted)
            return
        if granted.value != 1:
            logger.warning("MQTT subscription granted at QoS %s, not 1", granted.value)
        self.subscribed.set()

    def _on_message(self, client, userdata, message: MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # ingestion dead-letters the topic it cannot read
            topic = bytes(message._topic).decode("utf-8", "replace")
        delivery = Delivery(
            IncomingMessage(
                topic=topic, payload=bytes(message.payload), received_at=timezone.now()
            ),
            mid=message.mid,
            qos=message.qos,
            generation=self._generation,
        )
        self.stats.add(received=1)
        # A full buffer holds the network loop back (TCP then holds the broker back); the window
        # keeps that rare with Mosquitto, amqtt has none. Stopping: drop, the broker keeps it.
        while not self._closing.is_set():
            try:
                self._buffer.put(delivery, timeout=0.2)
                return
            except queue.Full:
                continue

    # -- the worker --

    def _work(self) -> None:
        try:
            while not self._stopping.is_set():
                batch = self._next_batch()
                if batch:
                    self._process(batch)
            # The final flush: what is buffered now, not what the freed window brings after.
            final: list[Delivery] = []
            with contextlib.suppress(queue.Empty):
                while True:
                    final.append(self._buffer.get_nowait())
            limit = self.settings.batch_limit
            for start in range(0, len(final), limit):
                if not self._process(final[start : start + limit]):
                    break
        except Exception:  # the loop itself must not die unseen
            logger.exception("MQTT ingest worker failed")
            raise
        finally:
            connection.close()

    def _next_batch(self) -> list[Delivery]:
        """Wait for a first message, then take more until the batch limit or the batch wait."""
        try:
            batch = [self._buffer.get(timeout=0.2)]
        except queue.Empty:
            return []
        limit = self.settings.batch_limit
        deadline = time.monotonic() + self.settings.batch_wait
        while len(batch) < limit:
            try:
                batch.append(self._buffer.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping.is_set():
                break
            try:
                batch.append(self._buffer.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _process(self, batch: list[Delivery]) -> bool:
        if not self._commit([d.message for d in batch], batch):
            return False
        self._ack(batch)
        return True

    def _commit(self, messages: list[IncomingMessage], batch: list[Delivery]) -> bool:
        """Ingest until committed. False when stopping with the database still away (nothing
        is acked then: the broker redelivers to the next consumer start)."""
        delay = self.settings.retry_min_delay
        while True:
            try:
                result = self.ingest(messages)
            except DATABASE_UNAVAILABLE as error:
                self.stats.add(database_failures=1)
                logger.warning(
                    "database unavailable (%s); %d messages not acked, retrying in %.1f s",
                    error,
                    len(messages),
                    delay,
                )
                connection.close()
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, self.settings.retry_max_delay)
                continue
            except Exception:
                logger.exception("ingestion failed on a batch of %d messages", len(messages))
                return self._isolate_defect(batch)
            self.stats.record_batch(len(messages), result)
            return True

    def _isolate_defect(self, batch: list[Delivery]) -> bool:
        """Ingestion raised for something other than an unavailable database: a defect that
        some message triggers. Ingest the messages one by one (each still committed before its
        ack); one that still raises is logged with its payload and acknowledged, so it cannot
        hold up the stream."""
        if len(batch) == 1:
            self._log_rejected(batch[0])
            return True
        return all(self._commit_single(delivery) for delivery in batch)

    def _commit_single(self, delivery: Delivery) -> bool:
        delay = self.settings.retry_min_delay
        while True:
            try:
                result = self.ingest([delivery.message])
            except DATABASE_UNAVAILABLE:
                self.stats.add(database_failures=1)
                connection.close()
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, self.settings.retry_max_delay)
                continue
            except Exception:
                logger.exception("ingestion failed on one message")
                self._log_rejected(delivery)
                return True
            self.stats.record_batch(1, result)
            return True

    def _log_rejected(self, delivery: Delivery) -> None:
        self.stats.add(rejected_by_defect=1)
        logger.error(
            "message on %s acknowledged without being stored (ingestion raised on it); "
            "received at %s, payload (hex): %s",
            delivery.message.topic,
            delivery.message.received_at.isoformat(),
            delivery.message.payload.hex(),
        )

    def _ack(self, batch: list[Delivery]) -> None:
        """PUBACK every QoS 1 message of the committed batch, in receipt order, on the
        connection it came in on; one from an earlier connection is left to its redelivery."""
        acked = stale = 0
        with self._ack_lock:
            for delivery in batch:
                if delivery.qos == 0:
                    continue
                if delivery.generation != self._generation or not self._connected:
                    stale += 1
                    continue
                rc = self._client.ack(delivery.mid, delivery.qos)
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    acked += 1
                else:
                    stale += 1
        self.stats.add(acked=acked, unacked_stale=stale)
