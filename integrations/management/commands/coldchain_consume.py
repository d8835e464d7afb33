"""Consume logger telemetry from MQTT into the cold chain until SIGTERM or Ctrl-C.

Settings come from the environment (``MQTT_*``, docs/deployment.md). The first SIGTERM/SIGINT
finishes the batch in hand, acks it and disconnects; a second one ends the process at once
(nothing unacknowledged is lost: the broker redelivers it).
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from integrations.broker import EmbeddedBroker
from integrations.mqtt import MqttConfigurationError, MqttSettings, TelemetryConsumer

logger = logging.getLogger("integrations.mqtt")


class Command(BaseCommand):
    help = "Consume MQTT telemetry (pharmadms/v1/loggers/+/readings) into the cold chain."

    def add_arguments(self, parser):
        parser.add_argument(
            "--embedded-broker",
            action="store_true",
            help="first start the embedded MQTT broker (amqtt) in this process; MQTT_URL unset",
        )

    def handle(self, *args, **options):
        try:
            settings = MqttSettings.from_environment()
        except MqttConfigurationError as error:
            raise CommandError(str(error)) from error
        broker = None
        if options["embedded_broker"]:
            if not settings.embedded:
                raise CommandError("--embedded-broker serves the embedded default: unset MQTT_URL")
            broker = EmbeddedBroker(settings.host, settings.port).start()
        stop = threading.Event()

        def on_signal(signum, frame):
            if stop.is_set():
                logger.warning("second %s: ending at once", signal.Signals(signum).name)
                os._exit(128 + signum)
            logger.info("%s: finishing the batch in hand", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            TelemetryConsumer(settings).serve(stop)
        finally:
            if broker is not None:
                broker.stop()
