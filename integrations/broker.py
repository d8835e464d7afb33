"""The embedded MQTT broker: amqtt in-process, for the demo and a first run without MQTT_URL.

amqtt speaks MQTT 3.1.1 only and has no shared subscriptions, so the consumer connects to it with
MQTT 3.1.1 and subscribes plainly (``integrations.mqtt.MqttSettings`` decides that). It runs in a
thread of its own with its own asyncio loop, so that a synchronous program (``dev.py demo``, a
management command, a test) can start it, use it over TCP like any broker, and stop it.
Anonymous clients are allowed and it listens on 127.0.0.1 only: it is not for production.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from concurrent.futures import Future

logger = logging.getLogger(__name__)

DEFAULT_PORT = 1884


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at the moment of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def broker_config(host: str, port: int) -> dict:
    """Anonymous access on one loopback listener; no $SYS publishing, no packet logging."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


class EmbeddedBroker:
    """amqtt serving ``mqtt://host:port`` from a daemon thread until :meth:`stop`.

    ``with EmbeddedBroker(port=0) as broker: ... broker.url`` picks a free port.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT):
        self.host = host
        self.port = port or free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10) -> EmbeddedBroker:
        started: Future = Future()
        self._thread = threading.Thread(
            target=self._serve, args=(started,), name="embedded-mqtt-broker", daemon=True
        )
        self._thread.start()
        started.result(timeout=timeout)  # raises what the broker raised while starting
        logger.info("embedded MQTT broker (amqtt, MQTT 3.1.1) listening on %s", self.url)
        return self

    def _serve(self, started: Future) -> None:
        from amqtt.broker import Broker

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._broker = Broker(broker_config(self.host, self.port), loop=loop)
            loop.run_until_complete(self._broker.start())
        except BaseException as error:  # noqa: BLE001 - handed to the thread that started us
            started.set_exception(error)
            loop.close()
            self._stopped.set()
            return
        started.set_result(True)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._stopped.set()

    def stop(self, timeout: float = 10) -> None:
        loop, broker = self._loop, self._broker
        if loop is None or broker is None or self._stopped.is_set():
            return
        try:
            asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(timeout=timeout)
        except Exception:  # a broker that fails to shut down cleanly is stopped all the same
            logger.exception("embedded MQTT broker did not shut down cleanly")
        loop.call_soon_threadsafe(loop.stop)
        self._stopped.wait(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        logger.info("embedded MQTT broker on %s stopped", self.url)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
