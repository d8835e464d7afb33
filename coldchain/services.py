"""Every state change of the cold chain: telemetry ingestion, loggers and their assignments,
profiles and rules, the evaluation of excursions and QA's decisions on them.

Lock order (docs/architecture.md, "The audit chain"): a transaction locks the rows another
writer may hold while it waits for the chain head (the logger row when assigning, evaluation
states and the excursion-number counter when evaluating) before its first regulated write.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import logging
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from audit.history import check_editable, create_with_reason, save_with_reason, update_with_reason
from audit.models import Signature, SignatureMeaning
from audit.services import signature_apply, signature_verify_password
from batches.models import Batch, Product, StorageClass
from orders.models import Shipment, ShipmentLine, ShipmentStatus
from orders.signals import announce
from partners.models import Partner, Role, User
from partners.services import system_account
from pharmadms import clock
from pharmadms.exceptions import InvalidInput, NotPermitted, RuleViolation
from pharmadms.permissions import require_role

from . import ingest
from .evaluation import Finding, RuleEvaluator, State
from .ingest import DUPLICATE, IncomingMessage, IngestResult, ParsedReading, Refusal
from .models import (
    EXCURSION_TRANSITIONS,
    DeadLetterReason,
    EvaluationState,
    Excursion,
    ExcursionDisposition,
    ExcursionKind,
    ExcursionNumberCounter,
    ExcursionRule,
    ExcursionStatus,
    Logger,
    LoggerAssignment,
    Reading,
    RuleKind,
    TemperatureProfile,
)

logger = logging.getLogger(__name__)

LOGGER_ROLES = (Role.ADMIN, Role.QA_OFFICER)
ASSIGN_ROLES = (Role.WAREHOUSE_OPERATOR, Role.ORDER_DESK, Role.ADMIN)
LOGGER_FIELDS = {"device_model", "calibration_certificate", "calibration_due_on", "is_active"}
PROFILE_FIELDS = {
    "name",
    "min_celsius",
    "max_celsius",
    "ignore_first_minutes",
    "mkt_window_hours",
    "mkt_limit_celsius",
    "is_active",
}
RULE_FIELDS = {
    "name",
    "kind",
    "direction",
    "limit_celsius",
    "delay_minutes",
    "budget_minutes",
    "max_interval_minutes",
    "is_active",
}
SYSTEM_REASON = "evaluation of the logger's readings"


# --- telemetry ingestion -------------------------------------------------------------------


def ingest_messages(messages: Sequence[IncomingMessage]) -> IngestResult:
    """Validate, store and dead-letter a batch of logger messages in one transaction.

    Readings are deduplicated on (logger, sequence) and attached to the shipment their logger
    travelled with at the measured time; invalid messages (or readings) go to the dead letters
    with their reason and raw payload. Evaluation of the shipments that got new readings is
    handed to Celery once the transaction has committed. Bad input never raises; only a
    database failure does (nothing is then stored and the consumer must not acknowledge).
    """
    result = IngestResult()
    parsed = [ingest.parse_message(message) for message in messages]
    with transaction.atomic():
        _resolve(parsed)
        rows: list[tuple[ParsedReading, datetime.datetime]] = []
        seen: set[tuple[int, int]] = set()
        for message in parsed:
            for reading in message.readings:
                key = (reading.logger_id, reading.sequence)
                if key in seen:
                    result.duplicates += 1
                    continue
                seen.add(key)
                rows.append((reading, message.message.received_at))
        inserted = ingest.store_readings(rows) if rows else set()
        ingest.store_dead_letters(parsed)
        result.stored = len(inserted)
        result.duplicates += len(rows) - len(inserted)
        for message in parsed:
            for refusal in message.refusals:
                result.dead_lettered += refusal.count
                result.reasons[refusal.reason] += refusal.count
        if result.duplicates:
            result.reasons[DUPLICATE] += result.duplicates
        earliest: dict[tuple[int, int], datetime.datetime] = {}
        for reading, _ in rows:
            if (reading.logger_id, reading.sequence) in inserted:
                key = (reading.shipment_id, reading.logger_id)
                if key not in earliest or reading.measured_at < earliest[key]:
                    earliest[key] = reading.measured_at
        if earliest:
            work = [
                [shipment_id, logger_id, moment.isoformat()]
                for (shipment_id, logger_id), moment in sorted(earliest.items())
            ]
            transaction.on_commit(partial(_schedule_evaluation, work))
    return result


def _schedule_evaluation(work: list[list[Any]]) -> None:
    """Hand the evaluation to Celery, never raising: the readings are committed, and the
    periodic sweep (``coldchain.evaluate_in_transit``) picks up what a lost task missed."""
    from .tasks import evaluate_readings

    try:
        evaluate_readings.delay(work)
    except Exception:
        logger.exception("evaluation of %d shipment/logger pairs was not scheduled", len(work))


def _loggers_and_windows(
    spans: dict[str, tuple[datetime.datetime, datetime.datetime]],
) -> tuple[dict[str, tuple[int, bool]], dict[int, list[tuple]]]:
    """The batch's loggers by device id ((id, active)), and each one's trip windows (start, end
    or None, shipment id) that may hold a reading measured within its ``spans`` (first, last):
    one query on PostgreSQL, however many trips a logger has made."""
    loggers: dict[str, tuple[int, bool]] = {}
    windows: dict[int, list[tuple]] = defaultdict(list)
    if not spans:
        return loggers, windows
    if connection.vendor == "postgresql":
        devices = sorted(spans)
        with ingest.binary_cursor() as cursor:
            cursor.execute(
                "SELECT l.device_id, l.id, l.is_active, w.starts_at, w.ends_at, w.shipment_id "  # noqa: S608
                "FROM unnest(%b::text[], %b::timestamptz[], %b::timestamptz[]) "
                "AS t(device_id, first_at, last_at) "
                f"JOIN {Logger._meta.db_table} AS l ON l.device_id = t.device_id "
                "LEFT JOIN LATERAL (SELECT a.starts_at, coalesce(a.ends_at, sh.received_at) "
                "AS ends_at, a.shipment_id "
                f"FROM {LoggerAssignment._meta.db_table} AS a "
                f"JOIN {Shipment._meta.db_table} AS sh ON sh.id = a.shipment_id "
                "WHERE a.logger_id = l.id AND a.starts_at <= t.last_at "
                "AND coalesce(a.ends_at, sh.received_at, 'infinity') > t.first_at) AS w ON true",
                [devices, [spans[d][0] for d in devices], [spans[d][1] for d in devices]],
                binary=True,
            )
            for device_id, pk, active, starts_at, ends_at, shipment_id in cursor.fetchall():
                loggers[device_id] = (pk, active)
                if shipment_id is not None:
                    windows[pk].append((starts_at, ends_at, shipment_id))
        return loggers, windows
    for pk, device_id, active in Logger.objects.filter(device_id__in=set(spans)).values_list(
        "pk", "device_id", "is_active"
    ):
        loggers[device_id] = (pk, active)
    for logger_id, starts_at, ends_at, received_at, shipment_id in LoggerAssignment.objects.filter(
        logger_id__in=[pk for pk, _ in loggers.values()]
    ).values_list("logger_id", "starts_at", "ends_at", "shipment__received_at", "shipment_id"):
        windows[logger_id].append((starts_at, ends_at or received_at, shipment_id))
    return loggers, windows


def _resolve(parsed: list[ingest.ParsedMessage]) -> None:
    """Find each message's logger and each reading's shipment; refuse what has none."""
    spans: dict[str, tuple[datetime.datetime, datetime.datetime]] = {}
    for message in parsed:
        for reading in message.readings:
            first, last = spans.get(message.device_id, (reading.measured_at, reading.measured_at))
            spans[message.device_id] = (
                min(first, reading.measured_at),
                max(last, reading.measured_at),
            )
    loggers, windows = _loggers_and_windows(spans)
    for message in parsed:
        if not message.readings:
            continue
        device = loggers.get(message.device_id)
        if device is None or not device[1]:
            if device is None:
                reason, state = DeadLetterReason.UNKNOWN_LOGGER, "not registered"
            else:
                reason, state = DeadLetterReason.INACTIVE_LOGGER, "deactivated"
            message.refusals.insert(
                0,
                Refusal(
                    reason,
                    f"logger {message.device_id!r} is {state}",
                    [r.sequence for r in message.readings][:1000],
                    count=len(message.readings),
                ),
            )
            message.readings = []
            continue
        kept, unassigned = [], []
        for reading in message.readings:
            reading.logger_id = device[0]
            for starts_at, ends_at, shipment_id in windows.get(device[0], ()):
                if starts_at <= reading.measured_at and (
                    ends_at is None or reading.measured_at < ends_at
                ):
                    reading.shipment_id = shipment_id
                    kept.append(reading)
                    break
            else:
                unassigned.append(reading)
        if unassigned:
            first = unassigned[0].measured_at.isoformat()
            message.refusals.append(
                Refusal(
                    DeadLetterReason.UNASSIGNED_LOGGER,
                    f"logger {message.device_id} was on no shipment at {first}"
                    + (
                        f" (and {len(unassigned) - 1} more readings)" if len(unassigned) > 1 else ""
                    ),
                    [r.sequence for r in unassigned][:1000],
                    count=len(unassigned),
                )
            )
        message.readings = kept


# --- loggers -------------------------------------------------------------------------------


def mosquitto_password_hash(password: str, *, iterations: int = 101) -> str:
    """The password as Mosquitto 2's password file stores it (``$7$``: PBKDF2-SHA512)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def mosquitto_password_check(password: str, stored: str) -> bool:
    try:
        _, scheme, iterations, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "7":
        return False
    computed = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt), int(iterations), 64
    )
    return secrets.compare_digest(base64.b64encode(computed).decode(), digest)


def _require_member(actor: User, partner: Partner, what: str) -> None:
    if not actor.is_superuser and actor.partner_id != partner.pk:
        raise NotPermitted(f"{what} belongs to another organisation")


@transaction.atomic
def logger_register(
    *,
    owner: Partner,
    actor: User,
    reason: str,
    device_id: str,
    device_model: str,
    calibration_certificate: str = "",
    calibration_due_on: datetime.date | None = None,
    is_active: bool = True,
) -> Logger:
    """Register a logger of ``owner`` (its admin or QA officer)."""
    require_role(actor, *LOGGER_ROLES)
    _require_member(actor, owner, "the logger's owner")
    if Logger.objects.filter(device_id=device_id).exists():
        raise RuleViolation(f"logger {device_id} is already registered", code="duplicate")
    return create_with_reason(
        Logger,
        actor=actor,
        reason=reason,
        owner=owner,
        device_id=device_id,
        device_model=device_model,
        calibration_certificate=calibration_certificate,
        calibration_due_on=calibration_due_on,
        is_active=is_active,
    )


@transaction.atomic
def logger_update(*, logger: Logger, actor: User, reason: str, **changes: Any) -> Logger:
    """Record a new calibration, change the model, or (de)activate a logger."""
    require_role(actor, *LOGGER_ROLES)
    _require_member(actor, logger.owner, "this logger")
    check_editable(changes, LOGGER_FIELDS)
    locked = Logger.objects.select_for_update().get(pk=logger.pk)
    return update_with_reason(
        locked, actor=actor, reason=reason, changes=changes, editable=LOGGER_FIELDS
    )


@dataclass(frozen=True)
class LoggerCredentials:
    """A logger's MQTT credentials: the password exists only in this answer."""

    logger: Logger
    username: str
    password: str


def logger_credentials_issue(*, logger: Logger, actor: User, reason: str) -> LoggerCredentials:
    """Generate a new MQTT password for a logger (the old one stops working once the broker's
    password file is re-exported); only its hash is kept."""
    require_role(actor, *LOGGER_ROLES)
    _require_member(actor, logger.owner, "this logger")
    password = secrets.token_urlsafe(24)
    with transaction.atomic():
        locked = Logger.objects.select_for_update().get(pk=logger.pk)
        locked.mqtt_password_hash = mosquitto_password_hash(password)
        save_with_reason(locked, actor=actor, reason=reason, update_fields=["mqtt_password_hash"])
    return LoggerCredentials(logger=locked, username=locked.mqtt_username, password=password)


def mosquitto_password_file(loggers: Iterable[Logger]) -> str:
    """Lines of a Mosquitto ``password_file`` for the active loggers that have credentials."""
    return "".join(
        f"{row.mqtt_username}:{row.mqtt_password_hash}\n"
        for row in loggers
        if row.is_active and row.mqtt_password_hash
    )


# --- assignments ---------------------------------------------------------------------------


def _window_end(assignment: LoggerAssignment) -> datetime.datetime | None:
    return assignment.ends_at or assignment.shipment.received_at


@transaction.atomic
def logger_assign(
    *,
    logger: Logger,
    shipment: Shipment,
    actor: User,
    reason: str,
    starts_at: datetime.datetime | None = None,
    ends_at: datetime.datetime | None = None,
) -> LoggerAssignment:
    """Send a calibrated logger with a shipment from ``starts_at`` (default: its dispatch, or
    now) to ``ends_at`` (default: open, ending at the shipment's receipt).

    Refused: a logger that is inactive, uncalibrated or due for calibration within the window
    (``logger_not_calibrated``); a window overlapping another of the logger's
    (``assignment_overlap``); a received shipment; someone not of the shipment's seller.
    """
    require_role(actor, *ASSIGN_ROLES)
    locked = Logger.objects.select_for_update().get(pk=logger.pk)  # before the regulated write
    shipment = Shipment.objects.select_related("order").get(pk=shipment.pk)
    _require_member(actor, shipment.order.seller, "this shipment")
    if not actor.is_superuser and locked.owner_id != actor.partner_id:
        raise NotPermitted(f"logger {locked.device_id} belongs to another organisation")
    if shipment.status == ShipmentStatus.RECEIVED:
        raise RuleViolation(
            f"shipment {shipment.number} has been received: its trip is over",
            code="invalid_status_transition",
        )
    if not locked.is_active:
        raise RuleViolation(f"logger {locked.device_id} is deactivated", code="logger_inactive")
    starts_at = starts_at or shipment.dispatched_at or clock.now()
    if ends_at is not None and ends_at <= starts_at:
        raise InvalidInput("an assignment must end after it starts", code="invalid_window")
    last_day = timezone.localdate(ends_at or starts_at)
    if not locked.is_calibrated_on(max(timezone.localdate(starts_at), last_day)):
        due = locked.calibration_due_on or "never calibrated"
        raise RuleViolation(
            f"logger {locked.device_id} is not calibrated for this trip (calibration due: "
            f"{due}); an uncalibrated logger cannot be assigned",
            code="logger_not_calibrated",
        )
    for other in locked.assignments.select_related("shipment"):
        other_end = _window_end(other)
        if (other_end is None or other_end > starts_at) and (
            ends_at is None or other.starts_at < ends_at
        ):
            raise RuleViolation(
                f"logger {locked.device_id} is already with shipment {other.shipment.number} "
                f"from {other.starts_at:%Y-%m-%d %H:%M}",
                code="assignment_overlap",
            )
    return create_with_reason(
        LoggerAssignment,
        actor=actor,
        reason=reason,
        logger=locked,
        shipment=shipment,
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=actor,
    )


@transaction.atomic
def logger_assignment_end(
    *,
    assignment: LoggerAssignment,
    actor: User,
    reason: str,
    ends_at: datetime.datetime | None = None,
) -> LoggerAssignment:
    """Take the logger off the shipment at ``ends_at`` (default now): later readings are no
    longer the shipment's."""
    require_role(actor, *ASSIGN_ROLES)
    Logger.objects.select_for_update().get(pk=assignment.logger_id)
    locked = LoggerAssignment.objects.select_related("shipment__order").get(pk=assignment.pk)
    _require_member(actor, locked.shipment.order.seller, "this shipment")
    if locked.ends_at is not None:
        raise RuleViolation("this assignment has already ended", code="assignment_ended")
    ends_at = ends_at or clock.now()
    if ends_at <= locked.starts_at:
        raise InvalidInput("an assignment must end after it starts", code="invalid_window")
    return update_with_reason(
        locked, actor=actor, reason=reason, changes={"ends_at": ends_at}, editable={"ends_at"}
    )


# --- profiles and rules --------------------------------------------------------------------

# Changing these changes what the readings show: the trips in transit are judged again.
PROFILE_JUDGING_FIELDS = {"min_celsius", "max_celsius", "ignore_first_minutes", "is_active"}
RULE_JUDGING_FIELDS = RULE_FIELDS - {"name", "kind"}  # a new name judges nothing anew


def _require_profile_keeper(actor: User, profile: TemperatureProfile | None = None) -> None:
    """Profiles and rules are reference data every partner reads; the QA officers and admins of
    the profile's owner maintain them (of any partner for a new profile, which it then owns);
    a profile without an owner is the platform's (superusers)."""
    if actor is None or not actor.is_active:
        raise NotPermitted("an active user is required")
    if actor.is_superuser:
        return
    require_role(actor, Role.QA_OFFICER, Role.ADMIN)
    if profile is not None and profile.owner_id != actor.partner_id:
        raise NotPermitted(
            f"profile {profile.name!r} is maintained by "
            f"{profile.owner.name if profile.owner_id else 'the platform'}",
            code="not_your_organisation",
        )


def _full_clean(instance, changes: dict[str, Any]) -> None:
    """Validate the row as it will be after ``changes``, every constraint included (a partial
    validation skips a check whose other field did not change: min < max, a rule kind's
    setting), so that bad input answers 400 and never reaches the database's CHECK."""
    from django.core.exceptions import ValidationError

    from audit.history import invalid_input_from

    for name, value in changes.items():
        setattr(instance, name, value)
    try:
        instance.full_clean()
    except ValidationError as error:
        raise invalid_input_from(error) from error


@transaction.atomic
def temperature_profile_create(
    *, storage_class: StorageClass, actor: User, reason: str, rules: Sequence[dict] = (), **fields
) -> TemperatureProfile:
    """A profile for a storage class (its range by default) with its rules, owned by the
    actor's partner."""
    _require_profile_keeper(actor)
    check_editable(fields, PROFILE_FIELDS)
    fields.setdefault("min_celsius", storage_class.min_celsius)
    fields.setdefault("max_celsius", storage_class.max_celsius)
    fields.setdefault("name", storage_class.name)
    if fields.get("is_active", True) and (
        TemperatureProfile.objects.filter(storage_class=storage_class, is_active=True).exists()
    ):
        raise RuleViolation(
            f"storage class {storage_class.code} already has an active profile",
            code="duplicate_profile",
        )
    profile = TemperatureProfile(storage_class=storage_class, owner=actor.partner)
    _full_clean(profile, fields)
    profile = save_with_reason(profile, actor=actor, reason=reason)
    for rule in rules:
        excursion_rule_create(profile=profile, actor=actor, reason=reason, **rule)
    return profile


@transaction.atomic
def temperature_profile_update(
    *, profile: TemperatureProfile, actor: User, reason: str, **changes: Any
) -> TemperatureProfile:
    """Correct a profile (its owner's QA): a change of range, ignore period or activity makes
    the trips in transit be judged again from their first reading under the new profile."""
    check_editable(changes, PROFILE_FIELDS)
    locked = (
        TemperatureProfile.objects.select_for_update(of=("self",))
        .select_related("owner")
        .get(pk=profile.pk)
    )
    _require_profile_keeper(actor, locked)
    if (
        changes.get("is_active")
        and not locked.is_active
        and TemperatureProfile.objects.filter(
            storage_class_id=locked.storage_class_id, is_active=True
        ).exists()
    ):
        raise RuleViolation(
            f"storage class {locked.storage_class.code} already has an active profile",
            code="duplicate_profile",
        )
    judged = _judging_changes(locked, changes, PROFILE_JUDGING_FIELDS)
    _full_clean(locked, changes)
    updated = update_with_reason(
        locked, actor=actor, reason=reason, changes=changes, editable=PROFILE_FIELDS
    )
    if judged:
        _evaluate_again(locked.rules.values_list("pk", flat=True))
    return updated


@transaction.atomic
def excursion_rule_create(
    *, profile: TemperatureProfile, actor: User, reason: str, **fields
) -> ExcursionRule:
    """A new rule of a profile (its owner's QA); it judges the trips in transit from their
    first reading at the next evaluation."""
    _require_profile_keeper(actor, profile)
    check_editable(fields, RULE_FIELDS)
    fields.setdefault("name", fields.get("kind", "rule"))
    rule = ExcursionRule(profile=profile)
    _full_clean(rule, fields)
    return save_with_reason(rule, actor=actor, reason=reason)


@transaction.atomic
def excursion_rule_update(
    *, rule: ExcursionRule, actor: User, reason: str, **changes: Any
) -> ExcursionRule:
    """Correct a rule (its profile owner's QA). Its kind never changes (the excursions it found
    name it): deactivate it and create another. A change of what it judges (not of its name)
    makes the trips in transit be judged again by it from their first reading."""
    if "kind" in changes:
        raise InvalidInput(
            "a rule's kind never changes: deactivate it and create a rule of the other kind",
            code="field_not_editable",
        )
    check_editable(changes, RULE_FIELDS)
    locked = (
        ExcursionRule.objects.select_for_update(of=("self",))
        .select_related("profile__owner")
        .get(pk=rule.pk)
    )
    _require_profile_keeper(actor, locked.profile)
    judged = _judging_changes(locked, changes, RULE_JUDGING_FIELDS)
    _full_clean(locked, changes)
    updated = update_with_reason(
        locked, actor=actor, reason=reason, changes=changes, editable=RULE_FIELDS - {"kind"}
    )
    if judged:
        _evaluate_again([locked.pk])
    return updated


def _judging_changes(row, changes: dict[str, Any], judging: set[str]) -> set[str]:
    """The fields among ``judging`` that ``changes`` gives a new value."""
    return {name for name in judging & set(changes) if changes[name] != getattr(row, name)}


def _evaluate_again(rule_ids: Iterable[int]) -> None:
    """Forget where the rules stand on every trip: the next evaluation of a trip (its next batch,
    or the sweep within ten minutes) runs them from the first reading, withdrawing the open
    excursions they no longer find. The states are derived rows, not records: plain SQL."""
    rule_ids = sorted(set(rule_ids))
    if not rule_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {EvaluationState._meta.db_table} WHERE rule_id IN "  # noqa: S608
            f"({', '.join(['%s'] * len(rule_ids))})",
            rule_ids,
        )


# --- evaluation ----------------------------------------------------------------------------
#
# Set-based: a batch's (shipment, logger) pairs are evaluated together in a handful of
# statements whatever their number — their rules (two queries), their trip windows (one), their
# states created if missing and row-locked in one statement in a fixed order, read back (one),
# their new readings (one), and the changed states written back (one). Only what the readings
# show (an excursion to open, extend or withdraw) goes through the regulated services, one row at
# a time with its history: that is rare, the states and the readings are not.

# Pairs a transaction evaluates at most: the periodic sweep over every trip in transit is split
# into transactions of this many pairs, so that none holds its locks for long.
EVALUATION_CHUNK = 500
# The first key of the evaluation's advisory locks (the second is the shipment id).
EVALUATION_LOCK_SPACE = 7_411_000
# The earliest measured time a reading may have ("read everything"): a bound the index takes.
_BEGINNING = datetime.datetime(1900, 1, 1, tzinfo=datetime.UTC)
_STATE_COLUMNS = (*State.FIELDS, "full_evaluations", "open_excursion_id")
_STATE_TYPES = (
    "timestamptz",
    "bigint",
    "numeric",
    "timestamptz",
    "numeric",
    "bigint",
    "timestamptz",
    "numeric",
    "bigint",
    "integer",
    "bigint",
)


@dataclass(frozen=True)
class _RuleSpec:
    """What the evaluation needs of a rule and its profile, read with the trip in one query."""

    pk: int
    kind: str
    direction: str
    low: Decimal
    high: Decimal
    delay_minutes: int
    budget_minutes: int
    max_interval_minutes: int
    ignore_first_minutes: int

    @classmethod
    def of(
        cls, pk, kind, direction, limit, delay, budget, interval, low, high, ignore
    ) -> _RuleSpec:
        if limit is not None:  # a limit of its own replaces the profile's on its side
            if direction == "high":
                high = limit
            else:
                low = limit
        return cls(pk, kind, direction, low, high, delay, budget, interval, ignore)


def _evaluator(rule: _RuleSpec, trip_start: datetime.datetime, state: State) -> RuleEvaluator:
    return RuleEvaluator(
        kind=rule.kind,
        direction=rule.direction,
        low=rule.low,
        high=rule.high,
        delay_minutes=rule.delay_minutes,
        budget_minutes=rule.budget_minutes,
        max_interval_minutes=rule.max_interval_minutes,
        evaluate_from=trip_start + datetime.timedelta(minutes=rule.ignore_first_minutes),
        state=state,
    )


@dataclass
class EvaluationOutcome:
    readings: int = 0
    full: int = 0
    opened: int = 0
    updated: int = 0
    withdrawn: int = 0


@dataclass
class _RuleState:
    """One ``EvaluationState`` row as the evaluation holds it."""

    pk: int
    rule: _RuleSpec
    stored: tuple  # the stored ``State.values()``
    full_evaluations: int
    open_excursion_id: int | None
    evaluator: RuleEvaluator | None = None
    full: bool = False  # evaluated from the first reading (new rule, or late readings)


@dataclass
class _Trip:
    """One (shipment, logger) pair of a batch: the logger's window on the shipment and the
    states of the shipment's rules."""

    shipment_id: int
    logger_id: int
    earliest: datetime.datetime | None
    starts_at: datetime.datetime
    ends_at: datetime.datetime | None  # the assignment's end, or the shipment's receipt
    rules: list[_RuleState]

    @property
    def key(self) -> tuple[int, int]:
        return (self.shipment_id, self.logger_id)


def readings_evaluate(
    work: Iterable[tuple[int, int, datetime.datetime | None]],
    *,
    now: datetime.datetime | None = None,
) -> EvaluationOutcome:
    """Evaluate the rules of ``(shipment id, logger id, earliest new measured time)`` pairs.

    Readings measured after a rule's stored position continue from its stored state; when a
    reading may have arrived late (``earliest`` at or before the position) and the stored
    readings up to the position outnumber those the rule has evaluated, the rule starts again
    from the first reading, so the result never depends on the order of arrival. An
    evaluation that finds its readings already evaluated by another one (two batches of one
    logger evaluated concurrently) does nothing more.

    ``now`` (the periodic sweep) also looks for loggers that have gone silent: a data-gap rule
    whose last reading (or trip start) lies further back than its interval opens, or extends,
    an ongoing data-gap excursion.

    Pairs are evaluated together, at most ``EVALUATION_CHUNK`` a transaction, their states
    locked in (shipment, logger, rule) order before anything else, so that concurrent
    evaluations of one shipment (the task of each batch, the sweep) take turns without
    deadlocking. Idempotent: evaluating again with nothing new changes nothing.
    """
    earliest: dict[tuple[int, int], datetime.datetime | None] = {}
    for shipment_id, logger_id, moment in work:
        key = (shipment_id, logger_id)
        if key not in earliest or earliest[key] is None:
            earliest[key] = moment
        elif moment is not None:
            earliest[key] = min(earliest[key], moment)
    pairs = sorted(earliest.items())
    outcome = EvaluationOutcome()
    for first in range(0, len(pairs), EVALUATION_CHUNK):
        with transaction.atomic():
            _evaluate_pairs(pairs[first : first + EVALUATION_CHUNK], now, outcome)
    return outcome


def shipment_evaluate(
    *, shipment_id: int, logger_id: int, earliest: datetime.datetime | None = None
) -> EvaluationOutcome:
    """Evaluate the shipment's rules over one logger's readings, from where each rule stands
    (see :func:`readings_evaluate`)."""
    return readings_evaluate([(shipment_id, logger_id, earliest)])


_RULE_COLUMNS = (
    "r.id, r.kind, r.direction, r.limit_celsius, r.delay_minutes, r.budget_minutes, "
    "r.max_interval_minutes, p.min_celsius, p.max_celsius, p.ignore_first_minutes"
)


def _trips_of(
    pairs: list[tuple[int, int]],
) -> dict[tuple[int, int], tuple[datetime.datetime, datetime.datetime | None, list[_RuleSpec]]]:
    """Each (shipment, logger) pair's window (start; end: the assignment's, or the shipment's
    receipt) and the active rules of the active profiles of the storage classes the shipment
    carries, in rule order; pairs without an assignment or a rule are left out.

    PostgreSQL: two queries for the whole batch (the rules per shipment, the windows per
    pair). SQLite: three.
    """
    if not pairs:
        return {}
    if connection.vendor == "postgresql":
        shipment_ids = sorted({pair[0] for pair in pairs})
        of_shipment: dict[int, list[_RuleSpec]] = defaultdict(list)
        with ingest.binary_cursor() as cursor:
            cursor.execute(  # the rules of each shipment (a few shipments, a few rules each)
                f"SELECT DISTINCT s.shipment_id, {_RULE_COLUMNS} "  # noqa: S608 - constant names
                "FROM (SELECT DISTINCT sl.shipment_id, pr.storage_class_id "
                f"FROM {ShipmentLine._meta.db_table} AS sl "
                f"JOIN {Batch._meta.db_table} AS b ON b.id = sl.batch_id "
                f"JOIN {Product._meta.db_table} AS pr ON pr.id = b.product_id "
                "WHERE sl.shipment_id = ANY(%b::bigint[]) AND sl.quantity > 0) AS s "
                f"JOIN {TemperatureProfile._meta.db_table} AS p "
                "ON p.storage_class_id = s.storage_class_id AND p.is_active "
                f"JOIN {ExcursionRule._meta.db_table} AS r ON r.profile_id = p.id AND r.is_active "
                "ORDER BY s.shipment_id, r.id",
                [shipment_ids],
                binary=True,
            )
            for shipment_id, *rule in cursor.fetchall():
                of_shipment[shipment_id].append(_RuleSpec.of(*rule))
            cursor.execute(  # the window of each pair
                "SELECT t.shipment_id, t.logger_id, a.starts_at, "  # noqa: S608
                "coalesce(a.ends_at, sh.received_at) "
                "FROM unnest(%b::bigint[], %b::bigint[]) AS t(shipment_id, logger_id) "
                f"JOIN {LoggerAssignment._meta.db_table} AS a "
                "ON a.shipment_id = t.shipment_id AND a.logger_id = t.logger_id "
                f"JOIN {Shipment._meta.db_table} AS sh ON sh.id = t.shipment_id",
                [[pair[0] for pair in pairs], [pair[1] for pair in pairs]],
                binary=True,
            )
            return {
                (shipment_id, logger_id): (starts_at, ends_at, of_shipment[shipment_id])
                for shipment_id, logger_id, starts_at, ends_at in cursor.fetchall()
                if of_shipment.get(shipment_id)
            }
    shipment_ids = {pair[0] for pair in pairs}
    classes: dict[int, set[int]] = defaultdict(set)
    for shipment_id, class_id in (
        ShipmentLine.objects.filter(shipment_id__in=shipment_ids, quantity__gt=0)
        .values_list("shipment_id", "batch__product__storage_class_id")
        .distinct()
    ):
        classes[shipment_id].add(class_id)
    of_class: dict[int, list[_RuleSpec]] = defaultdict(list)
    for class_id, *rule in (
        ExcursionRule.objects.filter(
            is_active=True,
            profile__is_active=True,
            profile__storage_class_id__in=set().union(*classes.values()),
        )
        .order_by("pk")
        .values_list(
            "profile__storage_class_id",
            "pk",
            "kind",
            "direction",
            "limit_celsius",
            "delay_minutes",
            "budget_minutes",
            "max_interval_minutes",
            "profile__min_celsius",
            "profile__max_celsius",
            "profile__ignore_first_minutes",
        )
    ):
        of_class[class_id].append(_RuleSpec.of(*rule))
    wanted = set(pairs)
    trips = {}
    for shipment_id, logger_id, starts_at, ends_at, received_at in LoggerAssignment.objects.filter(
        shipment_id__in=shipment_ids, logger_id__in={pair[1] for pair in pairs}
    ).values_list("shipment_id", "logger_id", "starts_at", "ends_at", "shipment__received_at"):
        rules = sorted(
            (rule for class_id in classes[shipment_id] for rule in of_class[class_id]),
            key=lambda rule: rule.pk,
        )
        if (shipment_id, logger_id) in wanted and rules:
            trips[(shipment_id, logger_id)] = (starts_at, ends_at or received_at, rules)
    return trips


def _evaluate_pairs(
    pairs: list[tuple[tuple[int, int], datetime.datetime | None]],
    now: datetime.datetime | None,
    outcome: EvaluationOutcome,
) -> None:
    context = _trips_of([key for key, _ in pairs])
    pairs = [(key, moment) for key, moment in pairs if key in context]
    if not pairs:
        return
    keys = [(key[0], key[1], rule.pk) for key, _ in pairs for rule in context[key][2]]
    _lock_trips(shipment_id for (shipment_id, _), _ in pairs)  # before reading any state
    stored = _load_states(keys)
    trips = []
    for (shipment_id, logger_id), moment in pairs:
        starts_at, ends_at, rules = context[(shipment_id, logger_id)]
        rule_states = []
        for rule in rules:
            pk, values, full_evaluations, open_excursion_id = stored[
                (shipment_id, logger_id, rule.pk)
            ]
            rule_states.append(
                _RuleState(pk, rule, tuple(values), full_evaluations, open_excursion_id)
            )
        trips.append(_Trip(shipment_id, logger_id, moment, starts_at, ends_at, rule_states))
    readings = _readings_of(_start_evaluators(trips, outcome))
    moment_now = now or clock.now()
    for trip in trips:
        evaluators = [state.evaluator for state in trip.rules]
        rows = readings.get(trip.key, ())
        outcome.readings += len(rows)
        for at, sequence, celsius in rows:
            for evaluator in evaluators:
                evaluator.feed(at, sequence, celsius)
        for state in trip.rules:
            # The sweep looks for silence; a batch does too where a silence is still open,
            # so that the readings that end it (or show it never was) settle it at once.
            if state.rule.kind == RuleKind.DATA_GAP and (
                now is not None or state.open_excursion_id is not None
            ):
                until = moment_now if trip.ends_at is None else min(moment_now, trip.ends_at)
                state.evaluator.silence(until, ongoing=trip.ends_at is None or until < trip.ends_at)
    plans = _plans(trips)
    numbers = _take_numbers(sum(len(plan.creates) for plan in plans.values()))
    changed = []
    for trip in trips:
        for state in trip.rules:
            plan = plans.get((trip.shipment_id, trip.logger_id, state.rule.pk))
            open_excursion_id = state.open_excursion_id
            if plan is not None:
                _apply(plan, numbers, outcome)
                open_excursion_id = plan.current.pk if plan.current is not None else None
            if (
                state.full
                or state.evaluator.state.values() != state.stored
                or open_excursion_id != state.open_excursion_id
            ):
                changed.append((state.pk, state, open_excursion_id))
    _save_states(changed)


def _start_evaluators(
    trips: list[_Trip], outcome: EvaluationOutcome
) -> dict[tuple[int, int], datetime.datetime]:
    """Give every rule its evaluator, from its stored state or from the first reading; return
    from which measured time each trip's readings must be read."""
    since: dict[tuple[int, int], datetime.datetime] = {}
    counted: dict[tuple, int] = {}
    for trip in trips:
        for state in trip.rules:
            stored = State.from_values(state.stored)
            restart = stored.position_at is None
            if not restart and trip.earliest is not None and trip.earliest <= stored.position_at:
                restart = _has_unevaluated(trip, stored, counted)
                if restart:
                    state.full_evaluations += 1
                    outcome.full += 1
            # A silence still open is settled by a full evaluation of its rule when readings
            # come (the backlog may show there was no gap at all).
            if (
                not restart
                and state.rule.kind == RuleKind.DATA_GAP
                and state.open_excursion_id is not None
                and trip.earliest is not None
            ):
                restart = True
            state.full = restart
            begin = State() if restart else stored
            state.evaluator = _evaluator(state.rule, trip.starts_at, begin)
            start = _BEGINNING if begin.position_at is None else begin.position_at
            if trip.key not in since or start < since[trip.key]:
                since[trip.key] = start
    return since


def _has_unevaluated(trip: _Trip, stored: State, counted: dict[tuple, int]) -> bool:
    """Whether readings up to the state's position exist that the rule has not evaluated.

    Each rule evaluates a trip's readings in measured order, so the readings up to its
    position number exactly ``readings_evaluated`` unless some arrived late. (A reading another
    evaluation already took in, before this one got the lock, is not late.) Asked only when a
    batch brought a reading measured at or before the position: rarely.
    """
    key = (trip.shipment_id, trip.logger_id, stored.position_at, stored.position_sequence)
    if key not in counted:
        counted[key] = (
            Reading.objects.filter(shipment_id=trip.shipment_id, logger_id=trip.logger_id)
            .filter(
                Q(measured_at__lt=stored.position_at)
                | Q(measured_at=stored.position_at, sequence__lte=stored.position_sequence)
            )
            .count()
        )
    return counted[key] > stored.readings_evaluated


def _lock_trips(shipment_ids: Iterable[int]) -> None:
    """Take the evaluation lock of each shipment, in shipment order, until the commit.

    PostgreSQL: a transaction-level advisory lock per shipment (``pg_advisory_xact_lock``,
    taken by one statement in id order), so that two evaluations of one shipment (the tasks of
    two batches, a batch and the sweep) take turns, and two evaluations of several shipments
    never wait for each other in a circle. No row is written to lock it. SQLite: one writer
    at a time anyway (``BEGIN IMMEDIATE``).
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(%s, ordered.shipment)) FROM ("
            "SELECT DISTINCT (shipment %% 2147483647)::integer AS shipment "
            "FROM unnest(%s::bigint[]) AS given(shipment) ORDER BY 1) AS ordered",
            [EVALUATION_LOCK_SPACE, sorted(set(shipment_ids))],
        )


def _load_states(keys: list[tuple[int, int, int]]) -> dict[tuple[int, int, int], tuple]:
    """(shipment, logger, rule) → (pk, state values, full evaluations, open excursion id), the
    missing states created (under the trips' locks: nobody else creates them meanwhile)."""
    wanted = set(keys)
    columns = ("shipment_id", "logger_id", "rule_id", "id", "full_evaluations")
    columns += ("open_excursion_id", *State.FIELDS)
    if connection.vendor == "postgresql":
        pairs = sorted({(key[0], key[1]) for key in keys})
        with ingest.binary_cursor() as cursor:
            cursor.execute(
                f"SELECT {', '.join(f's.{name}' for name in columns)} "  # noqa: S608
                "FROM unnest(%b::bigint[], %b::bigint[]) AS t(shipment_id, logger_id) "
                f"JOIN {EvaluationState._meta.db_table} AS s "
                "ON s.shipment_id = t.shipment_id AND s.logger_id = t.logger_id",
                [[pair[0] for pair in pairs], [pair[1] for pair in pairs]],
                binary=True,
            )
            rows = cursor.fetchall()
    else:
        rows = EvaluationState.objects.filter(
            shipment_id__in={key[0] for key in keys},
            logger_id__in={key[1] for key in keys},
            rule_id__in={key[2] for key in keys},
        ).values_list(*columns)
    states = {
        (shipment_id, logger_id, rule_id): (pk, values, full, open_excursion_id)
        for shipment_id, logger_id, rule_id, pk, full, open_excursion_id, *values in rows
        if (shipment_id, logger_id, rule_id) in wanted
    }
    missing = sorted(wanted - set(states))
    if missing:
        fresh = State().values()
        for key, pk in _create_states(missing).items():
            states[key] = (pk, fresh, 0, None)
    return states


def _create_states(keys: list[tuple[int, int, int]]) -> dict[tuple[int, int, int], int]:
    """Insert fresh states for (shipment, logger, rule) ``keys``; their ids by key."""
    table = EvaluationState._meta.db_table
    columns = (
        "shipment_id, logger_id, rule_id, cumulative_seconds, readings_evaluated, "
        "full_evaluations, updated_at"
    )
    moment = timezone.now()
    created = {}
    if connection.vendor == "postgresql":
        with ingest.binary_cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({columns}) "  # noqa: S608 - names are constants
                "SELECT k.shipment_id, k.logger_id, k.rule_id, 0, 0, 0, %b "
                "FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[]) "
                "AS k(shipment_id, logger_id, rule_id) "
                "RETURNING shipment_id, logger_id, rule_id, id",
                [moment, *(list(column) for column in zip(*keys, strict=True))],
                binary=True,
            )
            return {(s, lg, r): pk for s, lg, r, pk in cursor.fetchall()}
    with connection.cursor() as cursor:
        stamp = connection.ops.adapt_datetimefield_value(moment)
        for first in range(0, len(keys), 200):
            chunk = keys[first : first + 200]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES "  # noqa: S608
                + ", ".join(["(%s, %s, %s, 0, 0, 0, %s)"] * len(chunk))
                + " RETURNING shipment_id, logger_id, rule_id, id",
                [value for key in chunk for value in (*key, stamp)],
            )
            created.update({(s, lg, r): pk for s, lg, r, pk in cursor.fetchall()})
    return created


def _readings_of(
    since: dict[tuple[int, int], datetime.datetime],
) -> dict[tuple[int, int], list[tuple[datetime.datetime, int, Decimal]]]:
    """Each trip's readings measured at or after its ``since``, in measured order: one query
    for all trips (PostgreSQL: a join with the trips as arrays, each an index range scan)."""
    readings: dict[tuple[int, int], list] = defaultdict(list)
    if not since:
        return readings
    keys = sorted(since)
    if connection.vendor == "postgresql":
        table = Reading._meta.db_table
        with ingest.binary_cursor() as cursor:
            cursor.execute(
                "SELECT r.shipment_id, r.logger_id, r.measured_at, r.sequence, r.celsius "  # noqa: S608
                "FROM unnest(%b::bigint[], %b::bigint[], %b::timestamptz[]) "
                "AS w(shipment_id, logger_id, since) "
                f"JOIN {table} AS r ON r.logger_id = w.logger_id "
                "AND r.shipment_id = w.shipment_id AND r.measured_at >= w.since "
                "ORDER BY r.shipment_id, r.logger_id, r.measured_at, r.sequence",
                [[k[0] for k in keys], [k[1] for k in keys], [since[k] for k in keys]],
                binary=True,
            )
            for shipment_id, logger_id, at, sequence, celsius in cursor.fetchall():
                readings[(shipment_id, logger_id)].append((at, sequence, celsius))
        return readings
    for first in range(0, len(keys), 100):  # SQLite: a bounded OR of index ranges
        condition = Q()
        for shipment_id, logger_id in keys[first : first + 100]:
            condition |= Q(
                shipment_id=shipment_id,
                logger_id=logger_id,
                measured_at__gte=since[(shipment_id, logger_id)],
            )
        for shipment_id, logger_id, at, sequence, celsius in (
            Reading.objects.filter(condition)
            .order_by("shipment_id", "logger_id", "measured_at", "sequence")
            .values_list("shipment_id", "logger_id", "measured_at", "sequence", "celsius")
        ):
            readings[(shipment_id, logger_id)].append((at, sequence, celsius))
    return readings


def _save_states(changed: list[tuple[int, _RuleState, int | None]]) -> None:
    """Write the changed states back in one statement (the table is derived, not regulated:
    no history, plain SQL)."""
    if not changed:
        return
    table = EvaluationState._meta.db_table
    moment = timezone.now()
    rows = [
        (pk, *state.evaluator.state.values(), state.full_evaluations, open_excursion_id)
        for pk, state, open_excursion_id in changed
    ]
    assignments = ", ".join(f"{name} = v.{name}" for name in _STATE_COLUMNS)
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%b::{kind}[]" for kind in ("bigint", *_STATE_TYPES))
        with ingest.binary_cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS s SET {assignments}, updated_at = %b "  # noqa: S608
                f"FROM unnest({arrays}) AS v(id, {', '.join(_STATE_COLUMNS)}) WHERE s.id = v.id",
                [moment, *(list(column) for column in zip(*rows, strict=True))],
                binary=True,
            )
        return
    with connection.cursor() as cursor:
        ops = connection.ops
        datetimes = {index + 1 for index, kind in enumerate(_STATE_TYPES) if kind == "timestamptz"}
        stamp = ops.adapt_datetimefield_value(moment)
        cursor.executemany(
            f"UPDATE {table} SET "  # noqa: S608
            + ", ".join(f"{name} = %s" for name in _STATE_COLUMNS)
            + ", updated_at = %s WHERE id = %s",
            [
                [
                    ops.adapt_datetimefield_value(value) if index in datetimes else value
                    for index, value in enumerate(row)
                ][1:]
                + [stamp, row[0]]
                for row in rows
            ],
        )


@dataclass
class _Plan:
    shipment_id: int
    rule: _RuleSpec
    logger_id: int
    creates: list[Finding]
    updates: list[tuple[Excursion, Finding]]
    withdrawals: list[Excursion]
    current: Excursion | None = None


def _plans(trips: list[_Trip]) -> dict[tuple[int, int, int], _Plan]:
    """What to write for each rule that found something or started again, against the
    excursions it found before (read, and locked, in one query: before the first regulated
    write, as the lock order wants)."""
    wanted = [
        (trip, state)
        for trip in trips
        for state in trip.rules
        if state.full or state.evaluator.findings
    ]
    if not wanted:
        return {}
    keys = {(trip.shipment_id, trip.logger_id, state.rule.pk) for trip, state in wanted}
    existing: dict[tuple[int, int, int], list[Excursion]] = defaultdict(list)
    for excursion in (
        Excursion.objects.select_for_update()
        .filter(
            shipment_id__in={key[0] for key in keys},
            logger_id__in={key[1] for key in keys},
            rule_id__in={key[2] for key in keys},
        )
        .exclude(status=ExcursionStatus.WITHDRAWN)
        .order_by("pk")
    ):
        key = (excursion.shipment_id, excursion.logger_id, excursion.rule_id)
        if key in keys:
            existing[key].append(excursion)
    plans = {}
    for trip, state in wanted:
        key = (trip.shipment_id, trip.logger_id, state.rule.pk)
        candidates = sorted(existing[key], key=lambda e: (e.starts_at, e.pk))
        plans[key] = _plan(trip, state.rule, state.evaluator, candidates, state.full)
    return plans


def _matches(excursion: Excursion, finding: Finding) -> bool:
    """The same excursion seen again: a data gap is known by where it starts (the reading
    before it, or the start of the trip); a temperature excursion by overlapping in time."""
    if excursion.kind != finding.kind:
        return False
    if finding.kind == ExcursionKind.DATA_GAP:
        return excursion.starts_at == finding.starts_at
    return excursion.starts_at <= finding.ends_at and finding.starts_at <= excursion.ends_at


def _plan(
    trip: _Trip,
    rule: _RuleSpec,
    evaluator: RuleEvaluator,
    existing: list[Excursion],
    full: bool,
) -> _Plan:
    """What to write for the findings of one rule: new excursions, changed ones, and (after a
    full evaluation) open ones the readings no longer show. An excursion is matched by one
    finding at most."""
    plan = _Plan(trip.shipment_id, rule, trip.logger_id, [], [], [])
    matched: set[int] = set()
    for finding in evaluator.findings:
        closed = [
            e for e in existing if e.status == ExcursionStatus.CLOSED and _matches(e, finding)
        ]
        if closed:
            # A closed excursion is QA's decided record: what the readings add after it is a
            # new excursion, starting where the decided one ended.
            boundary = max(e.ends_at for e in closed)
            matched.update(e.pk for e in closed)
            finding = Finding(
                finding.kind,
                max(finding.starts_at, boundary),
                finding.ends_at,
                finding.peak_celsius,
                finding.duration_seconds
                if finding.kind != ExcursionKind.CUMULATIVE
                else max(0, finding.duration_seconds - sum(e.duration_seconds for e in closed)),
                finding.is_ongoing,
            )
            if finding.kind != ExcursionKind.CUMULATIVE:
                finding.duration_seconds = int(
                    (finding.ends_at - finding.starts_at).total_seconds()
                )
        active = [
            e
            for e in existing
            if e.status != ExcursionStatus.CLOSED and e.pk not in matched and _matches(e, finding)
        ]
        if closed and finding.ends_at <= boundary and not active:
            continue
        if active:
            matched.add(active[0].pk)
            plan.updates.append((active[0], finding))
            if finding.is_ongoing:
                plan.current = active[0]
        else:
            plan.creates.append(finding)
    if full:
        plan.withdrawals = [
            e for e in existing if e.pk not in matched and e.status == ExcursionStatus.OPEN
        ]
    return plan


def _take_numbers(count: int) -> list[str]:
    """Take ``count`` excursion numbers under the counter's lock (before any regulated write)."""
    if not count:
        return []
    year = clock.localdate().year
    ExcursionNumberCounter.objects.get_or_create(year=year)
    counter = ExcursionNumberCounter.objects.select_for_update().get(pk=year)
    first = counter.last_number + 1
    counter.last_number += count
    counter.save(update_fields=["last_number"])
    return [f"EX-{year}-{number:06d}" for number in range(first, first + count)]


def _finding_fields(finding: Finding) -> dict[str, Any]:
    return {
        "starts_at": finding.starts_at,
        "ends_at": finding.ends_at,
        "is_ongoing": finding.is_ongoing,
        "peak_celsius": finding.peak_celsius,
        "duration_seconds": finding.duration_seconds,
    }


def _apply(plan: _Plan, numbers: list[str], outcome: EvaluationOutcome) -> None:
    if not (plan.updates or plan.creates or plan.withdrawals):
        return  # a rule that started again and found nothing: nothing to write
    system = system_account()  # the platform found (or withdrew) these excursions by itself
    for excursion, finding in plan.updates:
        changes = {
            name: value
            for name, value in _finding_fields(finding).items()
            if getattr(excursion, name) != value
        }
        if changes:
            update_with_reason(
                excursion,
                actor=system,
                reason=f"{SYSTEM_REASON}: the excursion goes on or was measured more fully",
                changes=changes,
                editable=set(changes),
            )
            outcome.updated += 1
    if plan.creates:
        shipment = Shipment.objects.select_related("order").get(pk=plan.shipment_id)
        rule = ExcursionRule.objects.get(pk=plan.rule.pk)
    for finding in plan.creates:
        excursion = create_with_reason(
            Excursion,
            actor=system,
            reason=f"{SYSTEM_REASON}: rule {rule.name!r} ({rule.get_kind_display()})",
            number=numbers.pop(0),
            shipment=shipment,
            logger_id=plan.logger_id,
            rule=rule,
            kind=finding.kind,
            **_finding_fields(finding),
        )
        outcome.opened += 1
        if finding.is_ongoing:
            plan.current = excursion
        _announce(excursion, "excursion.opened")
    for excursion in plan.withdrawals:
        update_with_reason(
            excursion,
            actor=system,
            reason=(f"{SYSTEM_REASON}: readings that arrived late no longer show this excursion"),
            changes={"status": ExcursionStatus.WITHDRAWN, "is_ongoing": False},
            editable={"status", "is_ongoing"},
        )
        outcome.withdrawn += 1
        _announce(excursion, "excursion.closed")


def evaluation_pending(*, shipment_ids: Iterable[int] | None = None) -> list[tuple[int, int]]:
    """(shipment, logger) pairs for the periodic sweep: every trip in transit, and every trip
    whose logger's silence is still an ongoing data-gap excursion (after the receipt, the sweep
    ends it at the end of the trip)."""
    assignments = LoggerAssignment.objects.filter(
        shipment__status__in=[ShipmentStatus.DISPATCHED, ShipmentStatus.DELIVERED]
    )
    silent = EvaluationState.objects.filter(
        rule__kind=RuleKind.DATA_GAP, open_excursion__is_ongoing=True
    )
    if shipment_ids is not None:
        assignments = assignments.filter(shipment_id__in=list(shipment_ids))
        silent = silent.filter(shipment_id__in=list(shipment_ids))
    pairs = set(assignments.values_list("shipment_id", "logger_id"))
    pairs.update(silent.values_list("shipment_id", "logger_id"))
    return sorted(pairs)


def evaluation_sweep(*, now: datetime.datetime | None = None) -> int:
    """The periodic sweep (``coldchain.evaluate_in_transit``): evaluate every pending trip from
    where it stands — catching up an evaluation whose task was lost — and look for loggers gone
    silent. Returns the number of trips looked at."""
    pairs = evaluation_pending()
    readings_evaluate(
        ((shipment_id, logger_id, None) for shipment_id, logger_id in pairs),
        now=now or clock.now(),
    )
    return len(pairs)


# --- QA's decisions ------------------------------------------------------------------------


def _require_qa_of_the_trade(actor: User, excursion: Excursion) -> None:
    """The seller's or the buyer's QA officer decides on an excursion of their shipment."""
    if actor is None or not actor.is_active:
        raise NotPermitted("an active QA officer decides on an excursion")
    if actor.role != Role.QA_OFFICER:
        raise NotPermitted(
            f"an excursion is decided by a QA officer; you are {actor.role}",
            code="role_not_permitted",
        )
    order = excursion.shipment.order
    if actor.partner_id not in (order.seller_id, order.buyer_id):
        raise NotPermitted(
            f"excursion {excursion.number} is decided by the seller's or the buyer's QA",
            code="not_your_organisation",
        )


def _check_transition(excursion: Excursion, to_status: str) -> None:
    if to_status not in EXCURSION_TRANSITIONS.get(excursion.status, frozenset()):
        raise RuleViolation(
            f"excursion {excursion.number} is {excursion.status}: it cannot be {to_status}",
            code="invalid_status_transition",
        )


@transaction.atomic
def excursion_acknowledge(*, excursion: Excursion, actor: User, comment: str) -> Excursion:
    """QA has seen the excursion and says what is being done (the lots stay held)."""
    comment = (comment or "").strip()
    if not comment:
        raise InvalidInput("an acknowledgement needs a comment", code="comment_required")
    locked = (
        Excursion.objects.select_for_update().select_related("shipment__order").get(pk=excursion.pk)
    )
    _require_qa_of_the_trade(actor, locked)
    _check_transition(locked, ExcursionStatus.ACKNOWLEDGED)
    return update_with_reason(
        locked,
        actor=actor,
        reason=comment,
        changes={
            "status": ExcursionStatus.ACKNOWLEDGED,
            "acknowledged_by": actor,
            "acknowledged_at": timezone.now(),
            "acknowledgement": comment,
        },
        editable={"status", "acknowledged_by", "acknowledged_at", "acknowledgement"},
    )


@dataclass(frozen=True)
class ExcursionDecision:
    excursion: Excursion
    signature: Signature


def excursion_close(
    *,
    excursion: Excursion,
    disposition: str,
    signer: User,
    password: str,
    reason: str,
    request: HttpRequest | None = None,
) -> ExcursionDecision:
    """Close an excursion with QA's disposition of the stock (accept or reject), signed
    electronically (21 CFR 11.50/11.70): the status change and the signature bound to the new
    version commit together; a wrong password writes nothing and counts towards the lockout.
    Accepting releases the excursion's hold on the lots; rejecting keeps nothing held here —
    the lots go on to QA's ordinary rejection, which the notification asks for."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a QA disposition needs a reason", code="reason_required")
    if disposition not in ExcursionDisposition.values:
        raise InvalidInput(
            f"disposition is one of {', '.join(ExcursionDisposition.values)}",
            code="invalid_disposition",
        )
    current = Excursion.objects.select_related("shipment__order").get(pk=excursion.pk)
    _require_qa_of_the_trade(signer, current)
    _check_transition(current, ExcursionStatus.CLOSED)
    # Checked before the transaction: a refusal must not roll back the failed attempt's count.
    verified = signature_verify_password(signer=signer, password=password, request=request)
    with transaction.atomic():
        locked = (
            Excursion.objects.select_for_update()
            .select_related("shipment__order")
            .get(pk=excursion.pk)
        )
        _require_qa_of_the_trade(signer, locked)
        _check_transition(locked, ExcursionStatus.CLOSED)
        update_with_reason(
            locked,
            actor=signer,
            reason=reason,
            changes={
                "status": ExcursionStatus.CLOSED,
                "disposition": disposition,
                "closed_by": signer,
                "closed_at": timezone.now(),
            },
            editable={"status", "disposition", "closed_by", "closed_at"},
        )
        signature = signature_apply(
            verified=verified,
            meaning=SignatureMeaning.EXCURSION_DISPOSITION,
            reason=reason,
            record=locked,
        )
        _announce(locked, "excursion.closed")
    return ExcursionDecision(excursion=locked, signature=signature)


# --- notifications -------------------------------------------------------------------------


def _announce(excursion: Excursion, event: str) -> None:
    order = excursion.shipment.order
    payload = {
        "number": excursion.number,
        "shipment": excursion.shipment.number,
        "order": order.number,
        "kind": excursion.kind,
        "status": excursion.status,
        "disposition": excursion.disposition,
        "starts_at": excursion.starts_at,
        "ends_at": excursion.ends_at,
        "peak_celsius": excursion.peak_celsius,
        "duration_seconds": excursion.duration_seconds,
        "logger": excursion.logger.device_id,
    }
    announce(event, payload=payload, partner_ids=[order.seller_id, order.buyer_id])
    transaction.on_commit(partial(_schedule_qa_notice, excursion.pk, event))


def _schedule_qa_notice(excursion_id: int, event: str) -> None:
    """Hand the QA officers' e-mail to Celery once committed, never raising (the excursion is
    recorded; a mail server or broker away must not undo or fail the evaluation)."""
    from .tasks import notify_qa_officers

    try:
        notify_qa_officers.delay(excursion_id, event)
    except Exception:
        logger.exception("QA notice of %s for excursion #%s was not sent", event, excursion_id)


QA_NOTICE_SUBJECTS = {
    "excursion.opened": "Temperature excursion {number} on shipment {shipment}: lots held",
    "excursion.closed": "Temperature excursion {number} on shipment {shipment}: {status}",
}


def excursion_qa_recipients(excursion: Excursion) -> list[User]:
    """The active QA officers of the shipment's seller and buyer who have an e-mail address."""
    order = excursion.shipment.order
    return list(
        User.objects.filter(
            partner_id__in=[order.seller_id, order.buyer_id],
            role=Role.QA_OFFICER,
            is_active=True,
        )
        .exclude(email="")
        .select_related("partner")
        .order_by("partner_id", "username")
    )


def excursion_notify_qa(*, excursion_id: int, event: str) -> int:
    """E-mail each QA officer of the seller and of the buyer about an excursion opened or
    closed (EU GDP 9.2: excursions are reported to the distributor and the recipient); one
    message each, so that no partner sees the other's addresses. Returns how many were sent."""
    from django.core.mail import get_connection, send_mass_mail

    excursion = (
        Excursion.objects.select_related("shipment__order", "logger", "rule", "closed_by")
        .filter(pk=excursion_id)
        .first()
    )
    if excursion is None or event not in QA_NOTICE_SUBJECTS:
        return 0
    shipment = excursion.shipment
    subject = "PharmaDMS: " + QA_NOTICE_SUBJECTS[event].format(
        number=excursion.number,
        shipment=shipment.number,
        status=excursion.get_status_display().lower(),
    )
    lots = ", ".join(
        sorted(
            {
                f"{lot} ({product})"
                for lot, product in shipment.lines.values_list(
                    "batch__lot_number", "batch__product__name"
                )
            }
        )
    )
    lines = [
        f"Excursion: {excursion.number} ({excursion.get_kind_display()}), rule "
        f"{excursion.rule.name!r}",
        f"Status: {excursion.get_status_display()}",
        f"Shipment: {shipment.number} of order {shipment.order.number}",
        f"Logger: {excursion.logger.device_id}",
        f"From {excursion.starts_at:%Y-%m-%d %H:%M} to {excursion.ends_at:%Y-%m-%d %H:%M} UTC"
        + (" (still going on)" if excursion.is_ongoing else ""),
        f"Time out of range: {excursion.duration_seconds // 60} min",
    ]
    if excursion.peak_celsius is not None:
        lines.append(f"Peak: {excursion.peak_celsius} °C")
    lines.append(f"Lots on the shipment: {lots or 'none'}")
    if excursion.status == ExcursionStatus.CLOSED:
        lines.append(
            f"QA disposition: {excursion.get_disposition_display()} by "
            f"{excursion.closed_by.get_full_name() or excursion.closed_by.username}"
        )
    elif excursion.status == ExcursionStatus.WITHDRAWN:
        lines.append("Readings that arrived late no longer show this excursion.")
    else:
        lines.append(
            "The lots stay held at the buyer's until QA closes the excursion with a signed "
            "disposition."
        )
    messages = [
        (
            subject,
            f"Hello {user.get_full_name() or user.username},\n\n" + "\n".join(lines) + "\n\n"
            "Sign in to PharmaDMS for the temperature record. You receive this message as a "
            f"QA officer of {user.partner.name}.\n",
            None,
            [user.email],
        )
        for user in excursion_qa_recipients(excursion)
    ]
    if not messages:
        return 0
    return send_mass_mail(messages, connection=get_connection())
