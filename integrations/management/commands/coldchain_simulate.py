"""Publish realistic logger telemetry over MQTT for shipments in transit (the demo's loggers).

For each logger travelling with the chosen shipments (default: every active assignment), a trip
of ``--readings`` readings every ``--interval`` seconds, ending now, in the chosen profile(s);
``--speed`` accelerates it (measured seconds per wall-clock second); ``--follow`` then goes on
live, one reading per logger every interval, until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from coldchain.selectors import active_assignments
from integrations.mqtt import MqttConfigurationError, MqttSettings
from integrations.simulator import PROFILES, follow, simulate, trips_for_assignments


class Command(BaseCommand):
    help = "Simulate temperature loggers: publish readings over MQTT for shipments in transit."

    def add_arguments(self, parser):
        parser.add_argument(
            "--shipment", type=int, action="append", default=[], help="shipment id (repeatable)"
        )
        parser.add_argument(
            "--profile",
            choices=[*PROFILES, "mixed"],
            default="normal",
            help="temperature profile; mixed gives each logger the next profile in turn",
        )
        parser.add_argument("--interval", type=int, default=300, help="seconds between readings")
        parser.add_argument("--readings", type=int, default=96, help="readings per logger")
        parser.add_argument(
            "--speed",
            type=float,
            default=0,
            help="measured seconds per wall-clock second (0: as fast as the broker takes them)",
        )
        parser.add_argument("--window", type=int, default=200, help="QoS 1 messages in flight")
        parser.add_argument("--follow", action="store_true", help="then go on live until stopped")

    def handle(self, *args, **options):
        try:
            settings = MqttSettings.from_environment()
        except MqttConfigurationError as error:
            raise CommandError(str(error)) from error
        if options["interval"] < 1 or options["readings"] < 1 or options["window"] < 1:
            raise CommandError("--interval, --readings and --window must be at least 1")
        assignments = active_assignments()
        if options["shipment"]:
            wanted = set(options["shipment"])
            assignments = [a for a in assignments if a[1] in wanted]
            missing = wanted - {a[1] for a in assignments}
            if missing:
                raise CommandError(
                    f"no logger travels with shipment(s) {', '.join(map(str, sorted(missing)))}"
                )
        profiles = PROFILES if options["profile"] == "mixed" else (options["profile"],)
        trips = trips_for_assignments(
            assignments, profiles=profiles, interval=options["interval"], count=options["readings"]
        )
        if not trips:
            self.stdout.write("no logger is travelling with a shipment: nothing to simulate")
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        for trip in trips:
            self.stdout.write(f"{trip.device_id}: {trip.count} readings, {trip.profile}")
        try:
            stats = simulate(
                settings, trips, speed=options["speed"], window=options["window"], stop=stop
            )
        except ConnectionError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"published {stats.published} messages ({stats.readings} readings) to {settings.url}"
        )
        if options["follow"] and not stop.is_set():
            self.stdout.write(f"following live: a reading per logger every {options['interval']} s")
            ends = {device_id: end for device_id, _shipment, _start, end in assignments}
            follow(settings, trips, stop=stop, window=options["window"], ends=ends)
