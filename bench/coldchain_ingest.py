"""Cold-chain ingestion: readings stored and evaluated per second, against a plain INSERT.

    .venv/bin/python bench/coldchain_ingest.py [--readings 20000] [--rounds 3]
        [--shapes 500x1,100x1,1x100] [--loggers 200] [--shipments 20] [--show-queries]

Calls ``coldchain.services.ingest_messages`` directly, as the MQTT consumer does, with batches
of a given shape: ``500x1`` is 500 messages of one reading each (500 loggers reporting live),
``1x100`` one message holding a backlog of 100 readings. Three sides, alternating batch by
batch so that a busy machine slows them alike, each with readings of its own loggers:

- *evaluated*: ``ingest_messages`` followed by the excursion evaluation of the batch (four
  rules: instant, consecutive, cumulative, data gap), run in-process after the commit as the
  embedded default does (Celery eager): what the consumer pays end to end;
- *stored*: ``ingest_messages`` with the hand-off to the evaluation switched off;
- *floor*: the same reading rows, already parsed, written by one ``executemany`` INSERT per
  batch in one transaction into a copy of the readings table (same columns and indexes, no
  triggers or foreign keys): the cheapest way the database takes them.

It prints the medians of the rounds and the ratios evaluated/floor and stored/floor; the
figure that matters is the evaluated rate (issue 6: at least 6,000 readings/s on PostgreSQL
with realistic batches, so that the consumer keeps half of raw MQTT QoS 1). At the end it
checks that every reading was stored once and evaluated once (no rule started again).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import statistics
import sys
import time
from decimal import Decimal
from unittest import mock

# Excursions found on the way are e-mailed: keep the mail in memory, not on a mail server.
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")

from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from throwaway import throwaway_database  # sets Django up before any model is imported

from coldchain import services as coldchain_services
from coldchain.ingest import IncomingMessage, reading_topic
from coldchain.models import EvaluationState, Excursion, Reading
from orders import services as order_services
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

GOAL_READINGS_PER_SECOND = 6000
INTERVAL = datetime.timedelta(seconds=60)  # measured time between two readings of a logger
COLUMNS = (
    "logger_id",
    "sequence",
    "measured_at",
    "celsius",
    "humidity",
    "battery",
    "latitude",
    "longitude",
    "received_at",
    "shipment_id",
)


class World:
    """Shipments in transit with their loggers: ``evaluated`` and ``stored`` sets alike."""


def seed(loggers: int, shipments: int) -> World:
    """``shipments`` dispatched vaccine shipments (2–8 °C, four rules), each carrying its share
    of 2 × ``loggers`` loggers, on their way since 30 days ago."""
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
        quantity=10 * shipments,
        actor=net.warehouse,
        reason="bench opening stock",
    )
    profile = TemperatureProfileFactory(storage_class=product.storage_class)
    ExcursionRuleFactory(profile=profile, kind="instant")
    ExcursionRuleFactory(profile=profile, kind="consecutive", delay_minutes=10)
    ExcursionRuleFactory(profile=profile, kind="cumulative", budget_minutes=60)
    ExcursionRuleFactory(profile=profile, kind="data_gap", max_interval_minutes=30)
    trips = []
    for _ in range(shipments):
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
        trips.append(
            order_services.shipment_dispatch(shipment=shipment, actor=net.warehouse, reason="b")
        )
    world = World()
    world.starts_at = (timezone.now() - datetime.timedelta(days=30)).replace(microsecond=0)
    for side in ("evaluated", "stored"):
        devices = []
        for n in range(loggers):
            logger = LoggerFactory(owner=seller, device_id=f"{side[:4].upper()}-{n:05d}")
            coldchain_services.logger_assign(
                logger=logger,
                shipment=trips[n % shipments],
                actor=net.warehouse,
                reason="bench",
                starts_at=world.starts_at,
            )
            devices.append((logger.device_id, logger.pk, trips[n % shipments].pk))
        setattr(world, side, devices)
    return world


def celsius(device_index: int, sequence: int) -> float:
    """A fridge around 5 °C; one logger in 40 has a 15-minute warm spell every 4 hours."""
    if device_index % 40 == 0 and 120 <= sequence % 240 < 135:
        return 9.5
    return round(4.0 + (sequence % 30) / 10, 1)


def batches(world: World, side: str, first: dict, total: int, shape: tuple[int, int]):
    """``total`` readings of the side's loggers as batches of ``shape`` (messages, readings a
    message), each message of one logger, loggers in turn; ``first`` holds each logger's next
    sequence number and advances."""
    messages_per_batch, per_message = shape
    devices = getattr(world, side)
    received_at = timezone.now()
    out, batch, rows, made, turn = [], [], [], 0, 0
    while made < total:
        index = turn % len(devices)
        turn += 1
        device_id, logger_id, shipment_id = devices[index]
        readings = []
        for _ in range(min(per_message, total - made)):
            sequence = first.get(device_id, 0)
            first[device_id] = sequence + 1
            at = world.starts_at + sequence * INTERVAL
            value = celsius(index, sequence)
            readings.append({"seq": sequence, "at": at.isoformat(), "c": value, "battery": 90})
            rows.append(
                (logger_id, sequence, at, Decimal(str(value)), None, 90, None, None, received_at)
                + (shipment_id,)
            )
            made += 1
        payload = json.dumps({"v": 1, "device_id": device_id, "readings": readings}).encode()
        batch.append(IncomingMessage(reading_topic(device_id), payload, received_at))
        if len(batch) == messages_per_batch or made == total:
            out.append((batch, rows))
            batch, rows = [], []
    return out


def create_floor_table() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("CREATE TABLE bench_floor (LIKE coldchain_reading INCLUDING ALL)")
        else:
            cursor.execute("CREATE TABLE bench_floor AS SELECT * FROM coldchain_reading WHERE 0")
            cursor.execute(
                "CREATE UNIQUE INDEX bench_floor_key ON bench_floor (logger_id, sequence)"
            )
            cursor.execute(
                "CREATE INDEX bench_floor_trip ON bench_floor (shipment_id, measured_at)"
            )
            cursor.execute(
                "CREATE INDEX bench_floor_logger ON bench_floor "
                "(logger_id, shipment_id, measured_at, sequence)"
            )


def floor_insert(rows) -> None:
    ops = connection.ops
    sql = (
        f"INSERT INTO bench_floor ({', '.join(COLUMNS)}) "  # noqa: S608 - constant names
        f"VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    )
    if connection.vendor != "postgresql":
        rows = [
            (r[0], r[1], ops.adapt_datetimefield_value(r[2]), r[3], *r[4:8])
            + (ops.adapt_datetimefield_value(r[8]), r[9])
            for r in rows
        ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def no_evaluation(work) -> None:
    """The stored side: the evaluation is not handed off."""


def run_round(world, shape, total, sequences, rates, evaluations):
    evaluated = batches(world, "evaluated", sequences["evaluated"], total, shape)
    stored = batches(world, "stored", sequences["stored"], total, shape)
    seconds = {"evaluated": 0.0, "stored": 0.0, "floor": 0.0}
    for (messages, rows), (stored_messages, _) in zip(evaluated, stored, strict=True):
        began = time.perf_counter()
        floor_insert(rows)
        seconds["floor"] += time.perf_counter() - began

        with mock.patch.object(coldchain_services, "_schedule_evaluation", no_evaluation):
            began = time.perf_counter()
            result = coldchain_services.ingest_messages(stored_messages)
            seconds["stored"] += time.perf_counter() - began
        assert result.stored == len(rows), result

        began = time.perf_counter()
        result = coldchain_services.ingest_messages(messages)
        seconds["evaluated"] += time.perf_counter() - began
        assert result.stored == len(rows), result
        evaluations["batches"] += 1
    for side, spent in seconds.items():
        rates[side].append(total / spent)


def show_queries(world, shape, sequences) -> None:
    ((messages, _),) = batches(
        world, "evaluated", sequences["evaluated"], shape[0] * shape[1], shape
    )
    with CaptureQueriesContext(connection) as captured:
        coldchain_services.ingest_messages(messages)
    print(f"one {shape[0]}x{shape[1]} batch, ingested and evaluated: {len(captured)} statements")
    for query in captured:
        print(f"  {query['sql'][:160]}")


def check(world, sequences) -> None:
    """Every reading stored once; each rule of each trip evaluated each reading once."""
    expected = sum(sequences["evaluated"].values()) + sum(sequences["stored"].values())
    assert Reading.objects.count() == expected, (Reading.objects.count(), expected)
    per_logger = sequences["evaluated"]
    device_of = {logger_id: device_id for device_id, logger_id, _ in world.evaluated}
    states = EvaluationState.objects.values_list(
        "logger_id", "readings_evaluated", "full_evaluations"
    )
    for logger_id, readings, full in states:
        assert full == 0, (logger_id, full)
        assert readings == per_logger.get(device_of[logger_id], 0), (logger_id, readings)


def parse_shape(text: str) -> tuple[int, int]:
    messages, readings = text.lower().split("x")
    return int(messages), int(readings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=20000, help="readings a side a round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per shape")
    parser.add_argument(
        "--shapes",
        default="500x1,100x1,1x100",
        help="batch shapes, messages x readings a message (default 500x1,100x1,1x100)",
    )
    parser.add_argument("--loggers", type=int, default=200, help="loggers a side (default 200)")
    parser.add_argument("--shipments", type=int, default=20, help="shipments (default 20)")
    parser.add_argument("--warmup", type=int, default=2000, help="untimed readings a side first")
    parser.add_argument("--show-queries", action="store_true", help="the SQL of one batch")
    args = parser.parse_args()
    logging.getLogger("celery").setLevel(logging.WARNING)  # a line per in-process task
    shapes = [parse_shape(text) for text in args.shapes.split(",")]

    with throwaway_database("cold-chain ingestion"):
        world = seed(args.loggers, args.shipments)
        create_floor_table()
        sequences = {"evaluated": {}, "stored": {}}
        evaluations = {"batches": 0}
        run_round(
            world,
            shapes[0],
            args.warmup,
            sequences,
            {k: [] for k in ("evaluated", "stored", "floor")},
            evaluations,
        )
        if args.show_queries:
            show_queries(world, shapes[0], sequences)
        print(
            f"{args.loggers} loggers a side on {args.shipments} shipments, 4 rules, "
            f"{args.readings} readings a side a round, {args.rounds} rounds; readings/s (median)"
        )
        print(
            f"{'shape':>8} {'evaluated':>10} {'stored':>9} {'floor':>9} "
            f"{'eval/floor':>10} {'stored/floor':>12}"
        )
        for shape in shapes:
            rates = {"evaluated": [], "stored": [], "floor": []}
            for _ in range(args.rounds):
                run_round(world, shape, args.readings, sequences, rates, evaluations)
            medians = {side: statistics.median(values) for side, values in rates.items()}
            print(
                f"{shape[0]:>4}x{shape[1]:<3} {medians['evaluated']:>10.0f} "
                f"{medians['stored']:>9.0f} {medians['floor']:>9.0f} "
                f"{medians['evaluated'] / medians['floor']:>10.3f} "
                f"{medians['stored'] / medians['floor']:>12.3f}",
                flush=True,
            )
        check(world, sequences)
        print(
            f"checked: {Reading.objects.count()} readings stored once, each evaluated once by "
            f"every rule; {Excursion.objects.count()} excursions found "
            f"(goal: evaluated ≥ {GOAL_READINGS_PER_SECOND} readings/s on PostgreSQL)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
