"""What the MQTT tests share: the broker under test, consumer settings, waiting.

The broker is Mosquitto at MQTT_URL when it is set (CI sets mqtt://127.0.0.1:1883), else the
embedded amqtt broker on a free port of 127.0.0.1. Every test uses device ids, a shared
subscription group and client ids of its own, so tests (and anyone else on the same Mosquitto)
do not see each other's readings; each persistent session a test opens is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from integrations.broker import EmbeddedBroker, free_port
from integrations.mqtt import MqttSettings, forget_session

TIMEOUT = 30
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass
class BrokerUnderTest:
    url: str
    kind: str  # "mosquitto" or "amqtt"
    sessions: list[tuple[MqttSettings, str]] = field(default_factory=list)

    @property
    def protocols(self) -> tuple[str, ...]:
        return ("3.1.1", "5") if self.kind == "mosquitto" else ("3.1.1",)

    def settings(self, protocol: str = "3.1.1", **environ: str) -> MqttSettings:
        """Consumer settings for this broker with a client id and share group of their own."""
        env = {
            "MQTT_URL": self.url,
            "MQTT_PROTOCOL": protocol,
            "MQTT_CLIENT_ID": f"t-{uuid.uuid4().hex[:12]}",
            "MQTT_SHARE_GROUP": f"g{uuid.uuid4().hex[:10]}" if self.kind == "mosquitto" else "",
            "MQTT_STATS_INTERVAL": "0",
        }
        env.update(environ)
        settings = MqttSettings.from_environment(env)
        self.sessions.append((settings, settings.client_id))
        return settings

    def forget_sessions(self) -> None:
        for settings, client_id in self.sessions:
            forget_session(settings, client_id, timeout=5)
        self.sessions.clear()


def requires_mosquitto(broker: BrokerUnderTest) -> None:
    if broker.kind != "mosquitto":
        pytest.skip("needs Mosquitto (set MQTT_URL): amqtt keeps no session across reconnects")


@pytest.fixture(scope="session")
def _session_broker():
    url = os.environ.get("MQTT_URL")
    if url:
        yield BrokerUnderTest(url=url, kind="mosquitto")
        return
    with EmbeddedBroker(port=0) as embedded:
        yield BrokerUnderTest(url=embedded.url, kind="amqtt")


@pytest.fixture
def broker(_session_broker):
    """The broker under test; the persistent sessions the test opened are removed after it."""
    yield _session_broker
    _session_broker.forget_sessions()


def wait_for(condition, timeout: float = TIMEOUT, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def new_device_id(prefix: str = "T") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10].upper()}"


class PrivateMosquitto:
    """A Mosquitto of our own on a free port, with persistence in a temporary directory, that a
    test may stop and start again (the machine's broker is not ours to restart)."""

    def __init__(self, **options: str | int):
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="pharmadms-mosquitto-"))
        # Started as root, mosquitto drops to its own user: it must still write its persistence.
        self.directory.chmod(0o777)  # noqa: S103 - a private temporary directory
        self.options = {
            "persistence": "true",
            "persistence_location": f"{self.directory}/",
            "autosave_interval": 1,
            "max_inflight_messages": 100,
            "max_queued_messages": 0,
            **options,
        }
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> PrivateMosquitto:
        config = self.directory / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        lines += [f"{key} {value}" for key, value in self.options.items()]
        lines.append(f"log_dest file {self.directory}/mosquitto.log")
        config.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen(  # noqa: S603 - the system's mosquitto, our config
            [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if not wait_for(self._listening, timeout=10):
            self.stop()
            raise RuntimeError(f"mosquitto did not start on port {self.port}")
        return self

    def _listening(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file and exits."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def private_mosquitto():
    if not os.path.exists(MOSQUITTO):
        pytest.skip("needs the mosquitto binary")
    instance = PrivateMosquitto().start()
    try:
        yield instance
    finally:
        instance.remove()
