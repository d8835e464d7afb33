"""Telemetry ingestion: parse and validate logger messages, store readings in bulk, dead-letter
the rest (contracts.md, "Telemetry ingestion").

The entry point is :func:`coldchain.services.ingest_messages`; this module holds its types and
the pieces it is built from:

- :func:`parse_message` turns one MQTT message into readings or refusals, without the database;
- :func:`store_readings` writes readings deduplicated on (logger, sequence) and reports which
  rows were new: on PostgreSQL one ``INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING
  RETURNING`` per chunk (one round trip for a thousand rows, no SQL text growing with the
  batch); on SQLite a multi-row ``INSERT OR IGNORE … RETURNING``;
- :func:`store_dead_letters` keeps refused messages with their raw payload, once each.

Payload, version 1 (topic ``pharmadms/v1/loggers/<device_id>/readings``)::

    {"v": 1, "device_id": "LG-0001", "readings": [
        {"seq": 17, "at": "2026-11-28T10:00:00Z", "c": 5.2, "rh": 45.0, "battery": 87,
         "lat": 48.1, "lon": 11.5}, ...]}
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.conf import settings
from django.db import connection

from .models import (
    DEVICE_ID,
    PLAUSIBLE_MAX_CELSIUS,
    PLAUSIBLE_MIN_CELSIUS,
    DeadLetter,
    DeadLetterReason,
    Reading,
)

# The telemetry topics: a logger publishes to reading_topic(its device id); a consumer
# subscribes to TOPIC_FILTER; TOPIC reads the device id back.
TOPIC_PREFIX = "pharmadms/v1/loggers"
TOPIC_FILTER = f"{TOPIC_PREFIX}/+/readings"
TOPIC = re.compile(rf"^{re.escape(TOPIC_PREFIX)}/(?P<device_id>{DEVICE_ID})/readings$")

PAYLOAD_VERSION = 1
MAX_READINGS_PER_MESSAGE = 10_000
MAX_SEQUENCE = 2**63 - 1
DUPLICATE = "duplicate"
CENT = Decimal("0.01")
MICRO = Decimal("0.000001")
CHUNK_ROWS = 5000
# A logger's clock may run a little ahead of ours; further ahead is a bad clock, not a reading.
FUTURE_TOLERANCE = datetime.timedelta(minutes=10)


def reading_topic(device_id: str) -> str:
    return f"{TOPIC_PREFIX}/{device_id}/readings"


@dataclass(frozen=True)
class IncomingMessage:
    """One MQTT message as the consumer received it."""

    topic: str
    payload: bytes
    received_at: datetime.datetime


@dataclass
class IngestResult:
    """What one call did. ``dead_lettered`` counts refused items: a whole message counts one,
    a refused reading of an otherwise valid message counts one. ``reasons`` counts them by
    reason code, and counts duplicates under ``"duplicate"``."""

    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class ParsedReading:
    sequence: int
    measured_at: datetime.datetime
    celsius: Decimal
    humidity: Decimal | None
    battery: int | None
    latitude: Decimal | None
    longitude: Decimal | None
    logger_id: int | None = None
    shipment_id: int | None = None


@dataclass
class Refusal:
    reason: str
    detail: str
    sequences: list[int] = field(default_factory=list)
    count: int = 1


@dataclass
class ParsedMessage:
    message: IncomingMessage
    device_id: str = ""
    readings: list[ParsedReading] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)  # whole message or some readings


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _future_tolerance() -> datetime.timedelta:
    return getattr(settings, "COLDCHAIN_FUTURE_TOLERANCE", FUTURE_TOLERANCE)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _number(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _Invalid(DeadLetterReason.INVALID_READING, f"{what} must be a number")
    number = Decimal(value)
    if not number.is_finite():
        raise _Invalid(DeadLetterReason.INVALID_READING, f"{what} must be a finite number")
    return number


def _optional_number(reading: dict, key: str, low: Decimal, high: Decimal, places: Decimal):
    value = reading.get(key)
    if value is None:
        return None
    number = _number(value, key)
    if not low <= number <= high:
        raise _Invalid(DeadLetterReason.INVALID_READING, f"{key} must lie in {low}…{high}")
    return number.quantize(places, rounding=ROUND_HALF_EVEN)


def _timestamp(value: Any) -> datetime.datetime:
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise _Invalid(DeadLetterReason.INVALID_READING, "at must be an ISO 8601 time string")
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError as error:
        raise _Invalid(DeadLetterReason.INVALID_READING, f"at: {error}") from error
    if moment.tzinfo is None:
        raise _Invalid(DeadLetterReason.INVALID_READING, "at must carry a UTC offset (e.g. Z)")
    return moment.astimezone(datetime.UTC)


def _reading(raw: Any, latest: datetime.datetime) -> ParsedReading:
    """One reading; ``latest`` is the latest measured time its message's receipt allows."""
    if not isinstance(raw, dict):
        raise _Invalid(DeadLetterReason.INVALID_READING, "a reading must be a JSON object")
    sequence = raw.get("seq")
    if isinstance(sequence, bool) or not isinstance(sequence, int):
        raise _Invalid(DeadLetterReason.INVALID_READING, "seq must be a whole number")
    if not 0 <= sequence <= MAX_SEQUENCE:
        raise _Invalid(DeadLetterReason.INVALID_READING, "seq must be 0 or more (64 bits)")
    if "c" not in raw:
        raise _Invalid(DeadLetterReason.INVALID_READING, "c (°C) is missing")
    measured_at = _timestamp(raw.get("at"))
    celsius = _number(raw["c"], "c")
    if not PLAUSIBLE_MIN_CELSIUS <= celsius <= PLAUSIBLE_MAX_CELSIUS:
        raise _Invalid(
            DeadLetterReason.IMPOSSIBLE_TEMPERATURE,
            f"{celsius} °C lies outside {PLAUSIBLE_MIN_CELSIUS}…{PLAUSIBLE_MAX_CELSIUS} °C",
        )
    if measured_at > latest:
        raise _Invalid(
            DeadLetterReason.FUTURE_READING,
            f"measured at {measured_at.isoformat()}, after its receipt at "
            f"{(latest - _future_tolerance()).isoformat()}",
        )
    battery = raw.get("battery")
    if battery is not None and (
        isinstance(battery, bool) or not isinstance(battery, int) or not 0 <= battery <= 100
    ):
        raise _Invalid(DeadLetterReason.INVALID_READING, "battery must be a whole 0…100")
    return ParsedReading(
        sequence=sequence,
        measured_at=measured_at,
        celsius=celsius.quantize(CENT, rounding=ROUND_HALF_EVEN),
        humidity=_optional_number(raw, "rh", Decimal(0), Decimal(100), CENT),
        battery=battery,
        latitude=_optional_number(raw, "lat", Decimal(-90), Decimal(90), MICRO),
        longitude=_optional_number(raw, "lon", Decimal(-180), Decimal(180), MICRO),
    )


def parse_message(message: IncomingMessage) -> ParsedMessage:
    """Validate one message without the database: its readings, or why it is refused.

    A problem with the message as a whole refuses it all; a problem with one reading refuses
    that reading only (grouped by reason), and the others are kept.
    """
    parsed = ParsedMessage(message=message)
    topic = TOPIC.match(message.topic or "")
    try:
        if topic is None:
            raise _Invalid(DeadLetterReason.INVALID_TOPIC, f"unexpected topic {message.topic!r}")
        parsed.device_id = topic["device_id"]
        try:
            document = json.loads(
                bytes(message.payload).decode("utf-8"),
                parse_float=Decimal,
                parse_constant=_refuse_constant,
            )
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise _Invalid(DeadLetterReason.MALFORMED_JSON, str(error)[:500]) from error
        if not isinstance(document, dict):
            raise _Invalid(DeadLetterReason.INVALID_PAYLOAD, "the payload must be a JSON object")
        version = document.get("v")
        if isinstance(version, bool) or version != PAYLOAD_VERSION:
            raise _Invalid(
                DeadLetterReason.UNSUPPORTED_VERSION,
                f"payload version {version!r}: this server reads version {PAYLOAD_VERSION}",
            )
        device_id = document.get("device_id")
        if not isinstance(device_id, str):
            raise _Invalid(DeadLetterReason.INVALID_PAYLOAD, "device_id must be a string")
        if device_id != parsed.device_id:
            raise _Invalid(
                DeadLetterReason.DEVICE_MISMATCH,
                f"device_id {device_id[:64]!r} differs from the topic's {parsed.device_id!r}",
            )
        readings = document.get("readings")
        if not isinstance(readings, list) or not readings:
            raise _Invalid(DeadLetterReason.INVALID_PAYLOAD, "readings must be a non-empty list")
        if len(readings) > MAX_READINGS_PER_MESSAGE:
            raise _Invalid(
                DeadLetterReason.INVALID_PAYLOAD,
                f"{len(readings)} readings: at most {MAX_READINGS_PER_MESSAGE} a message",
            )
    except _Invalid as invalid:
        parsed.refusals.append(Refusal(invalid.reason, invalid.detail))
        return parsed
    refused: dict[str, Refusal] = {}
    latest = message.received_at + _future_tolerance()  # a setting: read once a message
    for index, raw in enumerate(readings):
        try:
            parsed.readings.append(_reading(raw, latest))
        except _Invalid as invalid:
            refusal = refused.get(invalid.reason)
            sequence = raw.get("seq") if isinstance(raw, dict) else None
            label = (
                sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None
            )
            if refusal is None:
                refusal = refused[invalid.reason] = Refusal(
                    invalid.reason, f"reading {index}: {invalid.detail}", count=0
                )
            refusal.count += 1
            if label is not None:
                refusal.sequences.append(label)
    parsed.refusals.extend(refused.values())
    return parsed


# --- storage -------------------------------------------------------------------------------

_READING_COLUMNS = (
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
_PG_TYPES = (
    "bigint",
    "bigint",
    "timestamptz",
    "numeric",
    "numeric",
    "smallint",
    "numeric",
    "numeric",
    "timestamptz",
    "bigint",
)


def _chunks(rows: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


@contextlib.contextmanager
def binary_cursor() -> Iterator[Any]:
    """PostgreSQL: a cursor on Django's connection (same transaction) that sends its parameters
    apart from the SQL, in binary (``%b``), and reads results in binary.

    Django's own cursor binds parameters on the client, turning each array of a bulk statement
    into its text literal in Python: for the telemetry's arrays of hundreds of values that costs
    more than the statement (16 ms against 4.5 ms for 800 rows of 13 columns, measured here).
    Errors surface as Django's (``OperationalError``…), as from any Django cursor, and the
    statements are logged where Django logs queries (``CaptureQueriesContext``).
    """
    import psycopg

    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        if not connection.queries_logged:
            yield cursor
            return
        execute = cursor.execute

        def logged(sql, params=None, **kwargs):
            began = time.monotonic()
            try:
                return execute(sql, params, **kwargs)
            finally:
                connection.queries_log.append(
                    {"sql": sql, "time": f"{time.monotonic() - began:.3f}"}
                )

        cursor.execute = logged
        yield cursor


def store_readings(
    rows: Sequence[tuple[ParsedReading, datetime.datetime]],
) -> set[tuple[int, int]]:
    """Insert readings (each with its message's receipt time) that are not stored yet;
    return the (logger id, sequence) of those inserted now."""
    table = Reading._meta.db_table
    columns = ", ".join(_READING_COLUMNS)
    inserted: set[tuple[int, int]] = set()
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%b::{kind}[]" for kind in _PG_TYPES)
        sql = (
            f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays})"  # noqa: S608
            " ON CONFLICT (logger_id, sequence) DO NOTHING RETURNING logger_id, sequence"
        )
        with binary_cursor() as cursor:
            for chunk in _chunks(rows, CHUNK_ROWS):
                cursor.execute(
                    sql,
                    [list(column) for column in zip(*map(_values, chunk), strict=True)],
                    binary=True,
                )
                inserted.update(cursor.fetchall())
        return inserted
    ops = connection.ops
    one = "(" + ", ".join(["%s"] * len(_READING_COLUMNS)) + ")"
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, 500):
            params: list[Any] = []
            for values in map(_values, chunk):
                values = list(values)
                values[2] = ops.adapt_datetimefield_value(values[2])
                values[8] = ops.adapt_datetimefield_value(values[8])
                params.extend(values)
            cursor.execute(
                f"INSERT OR IGNORE INTO {table} ({columns}) VALUES "  # noqa: S608
                + ", ".join([one] * len(chunk))
                + " RETURNING logger_id, sequence",
                params,
            )
            inserted.update(tuple(row) for row in cursor.fetchall())
    return inserted


def _values(row: tuple[ParsedReading, datetime.datetime]) -> tuple:
    reading, received_at = row
    return (
        reading.logger_id,
        reading.sequence,
        reading.measured_at,
        reading.celsius,
        reading.humidity,
        reading.battery,
        reading.latitude,
        reading.longitude,
        received_at,
        reading.shipment_id,
    )


def store_dead_letters(parsed_messages: Iterable[ParsedMessage]) -> None:
    """Keep every refusal with its message's raw payload (a redelivered message adds none:
    ``INSERT … ON CONFLICT DO NOTHING`` on PostgreSQL, ``INSERT OR IGNORE`` on SQLite)."""
    rows = []
    ops = connection.ops
    for parsed in parsed_messages:
        payload = bytes(parsed.message.payload)
        digest = hashlib.sha256(payload).hexdigest()
        for refusal in parsed.refusals:
            rows.append(
                [
                    ops.adapt_datetimefield_value(parsed.message.received_at),
                    (parsed.message.topic or "")[:300],
                    parsed.device_id,
                    payload,
                    digest,
                    refusal.reason,
                    refusal.detail[:2000],
                    json.dumps(refusal.sequences[:1000]),
                    refusal.count,
                ]
            )
    if not rows:
        return
    columns = ", ".join(_DEAD_LETTER_COLUMNS)
    one = "(" + ", ".join(["%s"] * len(_DEAD_LETTER_COLUMNS)) + ")"
    table = DeadLetter._meta.db_table
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, 200):
            values = ", ".join([one] * len(chunk))
            params = [value for row in chunk for value in row]
            if connection.vendor == "postgresql":
                sql = (
                    f"INSERT INTO {table} ({columns}) VALUES {values}"  # noqa: S608
                    " ON CONFLICT (topic, payload_sha256, reason) DO NOTHING"
                )
            else:
                sql = f"INSERT OR IGNORE INTO {table} ({columns}) VALUES {values}"  # noqa: S608
            cursor.execute(sql, params)


_DEAD_LETTER_COLUMNS = (
    "received_at",
    "topic",
    "device_id",
    "payload",
    "payload_sha256",
    "reason",
    "detail",
    "sequences",
    "refused_count",
)
