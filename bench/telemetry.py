"""Telemetry throughput: readings stored per second end to end, against raw MQTT QoS 1.

    .venv/bin/python bench/telemetry.py [--readings 20000] [--rounds 3] [--loggers 20]
        [--protocol 5] [--batch-size 500] [--window 1000] [--broker-url mqtt://…]
    .venv/bin/python bench/telemetry.py --backlog 1000000 [--per-message 1]

End to end is: a paho publisher sends one-reading messages at QoS 1 (a bounded window of 1000
unacknowledged) to Mosquitto; ``manage.py coldchain_consume`` in its own process takes them in
batches, commits each through ``coldchain.services.ingest_messages`` (validation, dedup insert,
dead letters), runs the excursion evaluation of the batch in-process (Celery eager, as the
embedded default does: the rate includes it), and acks. The time runs from the first publish
until the last reading is committed (the bench polls the count).

The floor is the same messages, published the same way through the same broker, received by a
plain paho subscriber at QoS 1 in its own process that does nothing with them (auto-ack): what
MQTT itself costs on this machine. The two sides alternate, each round with fresh readings; the
script prints the medians, the ratio (goal: at least 0.5) and the consumer's peak RSS.

``--backlog N`` measures a drain instead: the consumer's session is created, the consumer goes
away, N readings are queued at the broker (``--per-message`` readings a message), and the
consumer comes back: the drain rate, and the consumer's RSS sampled while it drains (it must
stay flat: the broker's in-flight window and the consumer's bounded buffer hold the rest back).

The broker is a private Mosquitto on a free port, configured as docs/deployment.md recommends
for the consumer (``max_inflight_messages 1000``, large ``max_queued_messages``, persistence),
unless ``--broker-url`` names another. Database: DATABASE_URL (SQLite when unset), a throw-away
database as in the other benches.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from django.db import connection
from django.utils import timezone
from throwaway import PROJECT_DIR, throwaway_database  # sets Django up first

from coldchain import services as coldchain_services
from coldchain.ingest import reading_topic
from coldchain.models import Reading
from integrations.broker import free_port
from integrations.mqtt import MqttSettings, forget_session
from integrations.simulator import Publisher, payload
from orders import services as order_services
from orders.signals import business_event
from partners.models import LocationKind, Role
from tests.conftest import build_network
from tests.factories import (
    AgreementFactory,
    AgreementPriceFactory,
    BatchFactory,
    ExcursionRuleFactory,
    LicenceFactory,
    LocationFactory,
    LoggerFactory,
    ProductFactory,
    TemperatureProfileFactory,
    UserFactory,
)

INTERVAL_SECONDS = 10  # measured time between two readings of one logger
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_CONFIG = """listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {directory}/
autosave_interval 300
max_inflight_messages 1000
max_queued_messages 5000000
max_queued_bytes 0
log_dest file {directory}/mosquitto.log
"""

RAW_SUBSCRIBER = r"""
import json, sys, threading, time
from paho.mqtt.client import Client, MQTTv311, MQTTv5
from paho.mqtt.enums import CallbackAPIVersion
host, port, protocol, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
state = {"n": 0, "first": 0.0, "last": 0.0, "expected": 0}
done = threading.Event()
def on_message(client, userdata, message):
    now = time.time()
    if not state["n"]:
        state["first"] = now
    state["n"] += 1
    state["last"] = now
    if state["expected"] and state["n"] >= state["expected"]:
        done.set()
client = Client(callback_api_version=CallbackAPIVersion.VERSION2,
                protocol=MQTTv5 if protocol == "5" else MQTTv311)
client.on_message = on_message
client.on_subscribe = lambda *a: print("ready", flush=True)
client.connect(host, port)
client.subscribe(topic, qos=1)
client.loop_start()
for line in sys.stdin:
    state.update(n=0, expected=int(line))
    done.clear()
    done.wait()
    print(json.dumps(state), flush=True)
"""


def mosquitto(directory: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    directory.chmod(0o777)  # mosquitto started as root drops to its own user
    config = directory / "mosquitto.conf"
    config.write_text(MOSQUITTO_CONFIG.format(port=port, directory=directory))
    process = subprocess.Popen([MOSQUITTO, "-c", str(config)])  # noqa: S603
    time.sleep(0.5)
    return process, f"mqtt://127.0.0.1:{port}"


def seed(loggers: int) -> list[str]:
    """A dispatched vaccine shipment carrying ``loggers`` loggers since 30 days ago, with a
    2–8 °C profile and the rules loggers use most (instant high/low, data gap)."""
    # Business events (webhooks, e-mail) of the seeding are not the bench's business.
    business_event.disconnect(dispatch_uid="integrations.on_business_event")
    net = build_network()
    seller, buyer = net.manufacturer, net.wholesaler
    LocationFactory(site=net.manufacturer_site, code="TRANSIT", kind=LocationKind.IN_TRANSIT)
    LicenceFactory(partner=buyer)
    buyer_user = UserFactory(username="north-buyer", partner=buyer, role=Role.PARTNER_USER)
    desk = UserFactory(username="acme-desk", partner=seller, role=Role.ORDER_DESK)
    agreement = AgreementFactory(supplier=seller, customer=buyer, territory=["DE"])
    product = ProductFactory(manufacturer=seller, name="Bench vaccine")
    AgreementPriceFactory(agreement=agreement, product=product)
    lot = BatchFactory(product=product, lot_number="BENCH-1")
    from batches import services as stock

    stock.stock_receive(
        batch=lot,
        location=net.manufacturer_storage,
        quantity=1000,
        actor=net.warehouse,
        reason="bench opening stock",
    )
    order = order_services.order_create(
        buyer=buyer,
        seller=seller,
        ship_to=net.wholesaler_site,
        lines=[{"product": product, "quantity": 10}],
        actor=buyer_user,
        reason="bench order",
    )
    order = order_services.order_submit(order=order, actor=buyer_user, reason="bench")
    order = order_services.order_confirm(order=order, actor=desk, reason="bench")
    order = order_services.order_allocate(order=order, actor=desk, reason="bench")
    shipment = order_services.shipment_create_from_order(
        order=order, actor=net.warehouse, reason="bench", carrier="Bench Freight"
    )
    shipment = order_services.shipment_dispatch(
        shipment=shipment, actor=net.warehouse, reason="bench"
    )
    profile = TemperatureProfileFactory(storage_class=product.storage_class)
    ExcursionRuleFactory(profile=profile, kind="instant")
    ExcursionRuleFactory(profile=profile, kind="data_gap", max_interval_minutes=30)
    starts_at = timezone.now() - datetime.timedelta(days=30)
    device_ids = []
    for n in range(loggers):
        logger = LoggerFactory(owner=seller, device_id=f"BENCH-{n:04d}")
        coldchain_services.logger_assign(
            logger=logger,
            shipment=shipment,
            actor=net.warehouse,
            reason="bench",
            starts_at=starts_at,
        )
        device_ids.append(logger.device_id)
    return device_ids, starts_at


def messages(device_ids, starts_at, first: int, count: int, per_message: int = 1) -> list:
    """``count`` readings from reading number ``first`` on, spread over the loggers in turn,
    ``per_message`` readings a message (of one logger)."""
    out = []
    loggers = len(device_ids)
    for start in range(first, first + count, per_message * loggers):
        for offset, device_id in enumerate(device_ids):
            readings = []
            for k in range(per_message):
                number = start + offset + k * loggers
                if number >= first + count:
                    break
                sequence = number // loggers
                at = starts_at + datetime.timedelta(seconds=sequence * INTERVAL_SECONDS)
                readings.append(
                    {
                        "seq": sequence,
                        "at": at.isoformat().replace("+00:00", "Z"),
                        "c": round(4.0 + (sequence % 30) / 10, 2),
                        "rh": 50.0,
                        "battery": 90,
                    }
                )
            if readings:
                out.append((reading_topic(device_id), payload(device_id, readings), len(readings)))
    return out


def publish(settings: MqttSettings, batch: list, window: int) -> float:
    with Publisher(settings, window=window) as publisher:
        began = time.time()
        for topic, data, readings in batch:
            publisher.publish(topic, data, readings)
        publisher.flush(timeout=600)
    return began


def stored() -> int:
    return Reading.objects.count()


def wait_stored(target: int, timeout: float = 1800) -> float:
    deadline = time.time() + timeout
    while stored() < target:
        if time.time() > deadline:
            raise RuntimeError(f"only {stored()} of {target} readings stored in time")
        time.sleep(0.02)
    return time.time()


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] or ""
    if db["PASSWORD"]:
        auth += f":{db['PASSWORD']}"
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Consumer:
    def __init__(self, env: dict, log: Path):
        self.env, self.log, self.process = env, log, None

    def start(self) -> Consumer:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(  # noqa: S603
                [sys.executable, "manage.py", "coldchain_consume"],
                cwd=PROJECT_DIR,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.time() + 60
        while "subscribing to" not in self.log.read_text():
            if time.time() > deadline or self.process.poll() is not None:
                raise RuntimeError(self.log.read_text()[-2000:])
            time.sleep(0.1)
        time.sleep(0.5)
        return self

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)


def throughput(args, settings, consumer_env, log, device_ids, starts_at) -> None:
    subscriber = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-c",
            RAW_SUBSCRIBER,
            settings.host,
            str(settings.port),
            settings.protocol,
            "bench/raw/#",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert subscriber.stdout.readline().strip() == "ready"
    consumer = Consumer(consumer_env, log).start()
    raw_rates, e2e_rates = [], []
    next_reading = 0
    try:
        warm = messages(device_ids, starts_at, next_reading, 1000)
        publish(settings, warm, args.window)
        next_reading += 1000
        wait_stored(next_reading)
        for round_number in range(args.rounds):
            batch = messages(device_ids, starts_at, next_reading, args.readings)
            raw = [(f"bench/raw/{t}", d, n) for t, d, n in batch]
            subscriber.stdin.write(f"{len(raw)}\n")
            subscriber.stdin.flush()
            began = publish(settings, raw, args.window)
            result = json.loads(subscriber.stdout.readline())
            raw_rates.append(len(raw) / (result["last"] - began))

            target = next_reading + args.readings
            began = publish(settings, batch, args.window)
            ended = wait_stored(target)
            e2e_rates.append(args.readings / (ended - began))
            next_reading = target
            print(
                f"round {round_number + 1}: raw {raw_rates[-1]:.0f} msg/s, "
                f"end to end {e2e_rates[-1]:.0f} readings/s",
                flush=True,
            )
        peak = rss_kib(consumer.process.pid, "VmHWM")
    finally:
        consumer.stop()
        subscriber.kill()
    raw, e2e = statistics.median(raw_rates), statistics.median(e2e_rates)
    print(f"raw paho→Mosquitto→paho QoS 1: {raw:.0f} messages/s (median of {args.rounds})")
    done = "committed and evaluated" if args.evaluation == "inline" else "committed"
    print(f"end to end, {done}: {e2e:.0f} readings/s")
    print(f"ratio end-to-end/raw: {e2e / raw:.2f} (goal ≥ 0.5)")
    print(f"consumer peak RSS: {peak / 1024:.1f} MiB; evaluation {args.evaluation}")


def backlog(args, settings, consumer_env, log, device_ids, starts_at) -> None:
    # the session exists (subscribed) before the backlog is queued, then the consumer is away
    Consumer(consumer_env, log).start().stop()
    began = time.time()
    queued = 0
    chunk = 50_000
    with Publisher(settings, window=args.window) as publisher:
        for first in range(0, args.backlog, chunk):
            for topic, data, readings in messages(
                device_ids, starts_at, first, min(chunk, args.backlog - first), args.per_message
            ):
                publisher.publish(topic, data, readings)
                queued += 1
        publisher.flush(timeout=1800)
    print(
        f"queued {args.backlog} readings in {queued} messages at the broker "
        f"in {time.time() - began:.0f} s",
        flush=True,
    )
    consumer = Consumer(consumer_env, log)
    began = time.time()
    consumer.start()
    samples = []
    while True:
        count = stored()
        samples.append((time.time() - began, count, rss_kib(consumer.process.pid)))
        if count >= args.backlog:
            break
        time.sleep(1)
    elapsed = time.time() - began
    peak = rss_kib(consumer.process.pid, "VmHWM")
    consumer.stop()
    print(f"drained {args.backlog} readings in {elapsed:.0f} s: {args.backlog / elapsed:.0f}/s")
    for fraction in (0.1, 0.25, 0.5, 0.75, 1.0):
        at, count, rss = next(s for s in samples if s[1] >= fraction * args.backlog)
        print(f"  {count:>9} stored after {at:6.0f} s: consumer RSS {rss / 1024:.1f} MiB")
    print(f"consumer peak RSS while draining: {peak / 1024:.1f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=20000, help="readings a round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loggers", type=int, default=20)
    parser.add_argument("--protocol", choices=["3.1.1", "5"], default="5")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--window", type=int, default=1000, help="in-flight window (both ways)")
    parser.add_argument("--broker-url", default="", help="an existing broker instead")
    parser.add_argument("--backlog", type=int, default=0, help="drain this many readings")
    parser.add_argument("--per-message", type=int, default=1, help="readings a backlog message")
    parser.add_argument(
        "--evaluation",
        choices=["inline", "queued"],
        default="inline",
        help="inline: Celery eager in the consumer (the embedded default); queued: the consumer "
        "only queues the evaluation tasks on --celery-broker (no worker runs; purged after)",
    )
    parser.add_argument("--celery-broker", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="pharmadms-bench-mqtt-"))
    broker = None
    try:
        if args.broker_url:
            url = args.broker_url
        else:
            broker, url = mosquitto(scratch)
        client_id = f"bench-{os.getpid()}"
        environ = {
            "MQTT_URL": url,
            "MQTT_PROTOCOL": args.protocol,
            "MQTT_CLIENT_ID": client_id,
            "MQTT_SHARE_GROUP": f"bench{os.getpid()}",
            "MQTT_INFLIGHT_WINDOW": str(args.window),
            "MQTT_BATCH_SIZE": str(args.batch_size),
            "MQTT_STATS_INTERVAL": "10",
        }
        settings = MqttSettings.from_environment(environ)
        with throwaway_database("telemetry"):
            device_ids, starts_at = seed(args.loggers)
            consumer_env = {
                k: v
                for k, v in os.environ.items()
                if k not in {"CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
            }
            consumer_env.update(environ, DATABASE_URL=database_url(), LOG_LEVEL="INFO")
            if args.evaluation == "queued":
                consumer_env["CELERY_BROKER_URL"] = args.celery_broker
            log = scratch / "consumer.log"
            print(
                f"broker {url} (MQTT {args.protocol}), {args.loggers} loggers, "
                f"batches of up to {settings.batch_limit}; consumer log {log}",
                flush=True,
            )
            try:
                if args.backlog:
                    backlog(args, settings, consumer_env, log, device_ids, starts_at)
                else:
                    throughput(args, settings, consumer_env, log, device_ids, starts_at)
            finally:
                forget_session(settings, client_id)
                connection.close()
                if args.evaluation == "queued":
                    from kombu import Connection

                    with Connection(args.celery_broker) as celery_broker:
                        purged = celery_broker.default_channel.queue_purge("celery")
                    print(f"purged {purged} queued evaluation tasks")
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(timeout=60)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
