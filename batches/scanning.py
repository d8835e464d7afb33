"""The scan workflow: read a code, identify the pack, check the lot, act, and record it all.

One scan is one call of :func:`scan_submit`. It reads the code (batches.gs1), identifies the
product, the lot and the serialised pack, checks the lot for the action (expired, quarantined,
rejected, recalled, any hold registered in batches.hooks, a serial already shipped or
decommissioned), and, when nothing stands against it, performs the action through the
services. Every scan, accepted or refused, leaves one sealed ScanRecord; a refused scan leaves
nothing else (an action that refuses is undone with its whole transaction, and the refusal is
recorded alone). A scan sent again with the same ``scan_id`` answers its first record and
changes nothing: the record's unique (user, scan_id) refuses the second record, which undoes
everything the second attempt did, and the first record is answered.

A scan is on the warehouse's critical path (a scan station waits for each answer), so the hot
path — a verify scan of a known pack — is two statements and builds no query: one read (the
location with the partner's membership, product, lot and pack, and every hold gate of
batches.hooks: :func:`_read`, queries built once by pharmadms.prepared), then the record with its
audit seal in one statement of its own, outside any transaction (:func:`scan_record_create`).
A hold check registered without a gate adds its own query. tests/batches/test_scan_queries.py
holds that count; bench/scan.py measures the time.

The lot-level actions live here (put-away, count, verify); the shipment-level ones (receive,
pick, ship) need shipments and live in orders.scanning, which hands them to
:func:`scan_submit` — ``batches`` never imports ``orders``.

Which checks apply to which action:

- every action: the code is read (gs1 problems), a Digital Link's host is trusted, the GTIN is
  known, the lot is known for it, the expiry in the code is the lot's;
- receive, putaway, pick, ship, verify: the lot is not expired, and (except at receipt) not
  quarantined, rejected or recalled, and under no hold. At receipt a lot that is not released
  or is held is accepted with a warning: the receipt puts it into quarantine (orders.services);
- count: identity only — expired or blocked stock is counted like any other;
- serial checks per action (see :func:`serial_reasons`).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.db.models import FilteredRelation, Q
from django.utils import timezone

from audit import chain
from audit.models import AuditAction
from partners.models import Location, LocationKind, Role, User
from pharmadms import clock
from pharmadms.exceptions import ApplicationError, InvalidInput, NotFound, RuleViolation
from pharmadms.permissions import require_role
from pharmadms.prepared import OneRow, PreparedQuery
from pharmadms.quantities import whole_number

from . import gs1, hooks, services
from .models import (
    Batch,
    BatchStatus,
    MoveKind,
    Product,
    ScanAction,
    ScanRecord,
    ScanVerdict,
    Serial,
    SerialState,
    StockBalance,
)

# Who scans for what (a regulator never scans; the API refuses its writes before this).
SCAN_ROLES: dict[str, tuple[str, ...]] = {
    ScanAction.RECEIVE: (Role.WAREHOUSE_OPERATOR, Role.PARTNER_USER, Role.ADMIN),
    ScanAction.PUTAWAY: (Role.WAREHOUSE_OPERATOR, Role.QA_OFFICER, Role.ADMIN),
    ScanAction.PICK: (Role.WAREHOUSE_OPERATOR, Role.ADMIN),
    ScanAction.SHIP: (Role.WAREHOUSE_OPERATOR, Role.ADMIN),
    ScanAction.COUNT: (Role.WAREHOUSE_OPERATOR, Role.QA_OFFICER, Role.ADMIN),
    ScanAction.VERIFY: (
        Role.WAREHOUSE_OPERATOR,
        Role.PARTNER_USER,
        Role.QA_OFFICER,
        Role.ADMIN,
    ),
}
DECOMMISSION_CHOICES = ("dispensed",)
MAX_SCAN_QUANTITY = 1_000_000
STATUS_REASONS = {
    BatchStatus.QUARANTINE: "lot_quarantined",
    BatchStatus.REJECTED: "lot_rejected",
    BatchStatus.RECALLED: "lot_recalled",
}


@dataclass(frozen=True)
class Reason:
    """One reason a scan was refused (or a warning on an accepted one)."""

    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}


class ScanRefused(RuleViolation):
    """An action found reasons to refuse the scan (all of them, not only the first)."""

    default_code = "scan_refused"

    def __init__(self, *reasons: Reason):
        super().__init__(reasons[0].detail, code=reasons[0].code)
        self.reasons = list(reasons)


@dataclass
class ScanContext:
    """Everything one scan knows: the request, the reading and what it identified."""

    actor: User
    location: Location
    action: str
    reference: str
    requested_quantity: int | None
    decommission: str
    reading: gs1.Reading
    today: datetime.date
    scan_id: str = ""
    # What the scan's one read found (see _read): the lot the code names, with its product and
    # the scanned pack, and what the hold gates found for it.
    scanned_lot: Batch | None = None
    gates_read: dict[hooks.HoldCheck, bool] | None = None
    product: Product | None = None
    batch: Batch | None = None
    serial: Serial | None = None
    warnings: list[Reason] = field(default_factory=list)

    @property
    def serial_number(self) -> str | None:
        return self.reading.serial

    @property
    def writes(self) -> bool:
        """Whether the action writes more than the scan's record: every action but a verify
        that decommissions nothing."""
        return self.action != ScanAction.VERIFY or bool(self.decommission)

    @property
    def units(self) -> int:
        """Units the scan stands for: the request's quantity, else the code's count, else 1."""
        if self.requested_quantity is not None:
            return self.requested_quantity
        return self.reading.count or 1

    def reason_text(self, what: str) -> str:
        """The audit reason of what the scan writes."""
        scan = f" (scan {self.scan_id})" if self.scan_id else ""
        return f"{what}: {self.action} scan at {self.location.code}{scan}"


Handler = Callable[[ScanContext], dict[str, Any]]


class _ActionRefused(Exception):  # noqa: N818  (internal: carries the refusal out of the transaction)
    def __init__(self, reasons: list[Reason]):
        super().__init__(reasons[0].code)
        self.reasons = reasons


class ScanAnswer(NamedTuple):
    """The record of a scan, and whether it is the first answer to a repeated ``scan_id``."""

    record: ScanRecord
    replayed: bool


# --- identifying and checking --------------------------------------------------------------


def identify(ctx: ScanContext) -> list[Reason]:
    """Find the product, lot and serial the code names; reasons when it names none."""
    reading = ctx.reading
    if reading.problem is not None:
        return [Reason(reading.problem.code, reading.problem.detail)]
    if reading.host is not None and not reading.host_trusted:
        return [
            Reason(
                "untrusted_digital_link_host",
                f"a Digital Link to {gs1.escape_code(reading.host, 100)} is not a resolver this "
                "site trusts: scan the pack's GS1 DataMatrix",
            )
        ]
    if reading.sscc and not reading.gtin:
        if ctx.action == ScanAction.RECEIVE:
            return []  # a logistic unit: the receipt finds its content (orders.scanning)
        return [
            Reason(
                "sscc_not_accepted",
                f"an SSCC identifies a case or pallet, scanned at receipt; {ctx.action} scans "
                "the pack",
            )
        ]
    if not reading.gtin:
        return [Reason("no_trade_item", "the code names no trade item (GTIN, AI 01)")]
    batch = ctx.scanned_lot if reading.lot else None
    product = batch.product if batch is not None else _product(reading.gtin)
    if product is None:
        return [Reason("unknown_gtin", f"no product has GTIN {reading.gtin}")]
    ctx.product = product
    if not reading.lot:
        return [Reason("lot_missing", "the code names no lot (AI 10): scan the pack's DataMatrix")]
    if batch is None:
        detail = f"{product.name} ({product.gtin}) has no lot {reading.lot}"
        if reading.notes:
            detail += f"; {reading.notes[0]}"
        return [Reason("lot_unknown", detail)]
    ctx.batch = batch
    reasons = []
    if reading.expiry is not None and reading.expiry != batch.expires_on:
        reasons.append(
            Reason(
                "expiry_mismatch",
                f"the code says expiry {reading.expiry}, lot {batch.lot_number} expires "
                f"{batch.expires_on}",
            )
        )
    stated = reading.count
    if (
        ctx.requested_quantity is not None
        and stated is not None
        and stated != ctx.requested_quantity
    ):
        reasons.append(
            Reason(
                "quantity_mismatch",
                f"the code states {stated} units; {ctx.requested_quantity} were entered",
            )
        )
    if reading.serial:
        ctx.serial = batch.scanned_pack
    return reasons


# The scan's reads, built once (pharmadms.prepared): on the scan path, building a query with
# the ORM cost several times what running it does.
_LOT = PreparedQuery(
    lambda gtin, lot: (
        Batch.objects.select_related("product")
        .filter(product__gtin=gtin, lot_number=lot)
        .order_by()[:1]
    ),  # one at most: (product, lot) is unique
    gtin=str,
    lot=str,
)
_LOT_AND_PACK = PreparedQuery(
    lambda gtin, lot, serial: (
        Batch.objects.select_related("product")
        .filter(product__gtin=gtin, lot_number=lot)
        .annotate(
            scanned_pack=FilteredRelation("serials", condition=Q(serials__serial_number=serial))
        )
        .select_related("scanned_pack")
        .order_by()[:1]
    ),
    gtin=str,
    lot=str,
    serial=str,
)
_PRODUCT = PreparedQuery(lambda gtin: Product.objects.filter(gtin=gtin).order_by()[:1], gtin=str)
_LOCATION = PreparedQuery(
    lambda location_id: (
        Location.objects.select_related("site").filter(pk=location_id, is_active=True).order_by()
    ),
    location_id=int,
)
_PARTNER_LOCATION = PreparedQuery(
    lambda location_id, partner_id: (
        Location.objects.select_related("site")
        .filter(pk=location_id, is_active=True, site__partner_id=partner_id)
        .order_by()
    ),
    location_id=int,
    partner_id=int,
)


def _names_a_lot(reading: gs1.Reading) -> bool:
    """Whether identify() looks the code's lot up (see there)."""
    return (
        reading.problem is None
        and (reading.host is None or reading.host_trusted)
        and bool(reading.gtin)
        and bool(reading.lot)
    )


def _read(
    actor: User, location_id: Any, reading: gs1.Reading, *, holds: bool
) -> tuple[Location, Batch | None, dict[hooks.HoldCheck, bool] | None]:
    """The scan's location (among the actor's partner's: another partner's is not found) and,
    when the code names a lot, the lot with its product and the scanned pack (``scanned_pack``:
    the serial, or None) and, when ``holds``, what the hold gates find for it: one statement."""
    if isinstance(location_id, Location):
        location_id = location_id.pk
    if type(location_id) is not int or not (actor.is_superuser or actor.partner_id):
        raise NotFound("no such location", code="unknown_location")
    read = OneRow()
    if actor.is_superuser:
        read.query(_LOCATION, location_id=location_id)
    else:
        read.query(_PARTNER_LOCATION, location_id=location_id, partner_id=actor.partner_id)
    gated: list[tuple[hooks.HoldCheck, int]] = []
    if _names_a_lot(reading):
        if reading.serial:
            lot = read.query(
                _LOT_AND_PACK, gtin=reading.gtin, lot=reading.lot, serial=reading.serial
            )
        else:
            lot = read.query(_LOT, gtin=reading.gtin, lot=reading.lot)
        if holds:
            lot_id = read.column(lot, "id")
            gated = [
                (check, read.exists(gate, batch_id=lot_id))
                for check, gate in hooks.prepared_gates()
            ]
    (location, *found), tests = read.run()
    if location is None:
        raise NotFound("no such location", code="unknown_location")
    batch = found[0] if found else None
    if batch is not None:
        # The outer join sets no attribute when the lot has no such pack.
        batch.scanned_pack = getattr(batch, "scanned_pack", None) if reading.serial else None
    gates = {check: tests[index] for check, index in gated} if batch is not None and holds else None
    return location, batch, gates


def _product(gtin: str) -> Product | None:
    return _PRODUCT.first(gtin=gtin)


def lot_reasons(ctx: ScanContext) -> list[Reason]:
    """Why this lot may not take part in this action here (warnings at receipt, see above)."""
    batch = ctx.batch
    if batch is None or ctx.action == ScanAction.COUNT:
        return []
    if batch.is_expired_on(ctx.today):
        return [Reason("lot_expired", f"lot {batch.lot_number} expired on {batch.expires_on}")]
    blocking: dict[str, Reason] = {}
    if batch.status in STATUS_REASONS:
        code = STATUS_REASONS[batch.status]
        blocking[code] = Reason(code, f"lot {batch.lot_number} is {batch.status}")
    for hold in hooks.lot_holds(batch, ctx.location, gates_read=ctx.gates_read):
        # A recall hold names the recall: it says more than the lot status alone.
        blocking[hold.code] = Reason(hold.code, hold.detail)
    if ctx.action == ScanAction.RECEIVE:
        ctx.warnings.extend(
            Reason(reason.code, f"{reason.detail}: the units are received into quarantine")
            for reason in blocking.values()
        )
        return []
    return list(blocking.values())


def serial_reasons(ctx: ScanContext) -> list[Reason]:
    """Why this serialised pack may not take part in this action."""
    number = ctx.serial_number
    if not number or ctx.batch is None:
        if ctx.action == ScanAction.VERIFY and ctx.batch is not None:
            ctx.warnings.append(
                Reason("no_serial", "the code carries no serial number: only the lot is verified")
            )
        return []
    if ctx.units != 1 and ctx.action != ScanAction.COUNT:
        return [Reason("invalid_quantity", f"serial {number} is one pack; {ctx.units} asked")]
    serial = ctx.serial
    if serial is None:
        manufacturer_picks = (
            ctx.action == ScanAction.PICK
            and ctx.product is not None
            and ctx.actor.partner_id == ctx.product.manufacturer_id
        )
        if manufacturer_picks or ctx.action == ScanAction.COUNT:
            return []  # the manufacturer's first pick commissions it (see orders.scanning)
        return [
            Reason(
                "serial_unknown",
                f"serial {number} of lot {ctx.batch.lot_number} was never commissioned: "
                "a suspect pack, set it aside",
            )
        ]
    if ctx.action == ScanAction.COUNT:
        return []
    if serial.state in (SerialState.DISPENSED, SerialState.DECOMMISSIONED):
        return [Reason(*services.serial_refusal(serial, SerialState.SHIPPED))]
    if ctx.action in (ScanAction.PICK, ScanAction.SHIP):
        refusal = services.serial_refusal(serial, SerialState.SHIPPED)
        if refusal is not None:
            return [Reason(*refusal)]
        if serial.shipment_reference and serial.shipment_reference != ctx.reference:
            return [
                Reason(
                    "serial_already_picked",
                    f"serial {number} is picked for {serial.shipment_reference}",
                )
            ]
    if (
        ctx.action == ScanAction.RECEIVE
        and serial.state == SerialState.RECEIVED
        and serial.holder_id == ctx.location.site.partner_id
    ):
        return [Reason(*services.serial_refusal(serial, SerialState.RECEIVED))]
    if ctx.action == ScanAction.VERIFY and serial.state == SerialState.SHIPPED:
        ctx.warnings.append(
            Reason("serial_in_transit", f"serial {number} is shipped and not yet received")
        )
    return []


# --- the lot-level actions -----------------------------------------------------------------


def putaway(ctx: ScanContext) -> dict[str, Any]:
    """Move the scanned units into the scanned storage location, from the site's receiving or
    quarantine location (``reference`` names the source location's code when there are several)."""
    target, batch = ctx.location, ctx.batch
    if target.kind != LocationKind.STORAGE:
        raise ScanRefused(
            Reason(
                "not_a_storage_location",
                f"{target.code} is a {target.kind} location: put away into storage",
            )
        )
    source = _putaway_source(ctx)
    move = services.stock_transfer(
        batch=batch,
        from_location=source,
        to_location=target,
        quantity=ctx.units,
        actor=ctx.actor,
        reason=ctx.reason_text(f"put away lot {batch.lot_number}"),
        reference=f"putaway:{source.code}",
    )
    return {"from": source.code, "to": target.code, "moved": move.quantity, "move": move.pk}


def _putaway_source(ctx: ScanContext) -> Location:
    target, batch = ctx.location, ctx.batch
    places = Location.objects.filter(site_id=target.site_id, is_active=True).exclude(pk=target.pk)
    if ctx.reference:
        source = places.filter(code=ctx.reference).first()
        if source is None:
            raise ScanRefused(
                Reason("unknown_location", f"this site has no other location {ctx.reference!r}")
            )
        return source
    holding = list(
        places.exclude(kind__in=[LocationKind.STORAGE, LocationKind.IN_TRANSIT]).filter(
            pk__in=StockBalance.objects.filter(batch=batch, on_hand__gt=0).values("location_id")
        )
    )
    if not holding:
        raise ScanRefused(
            Reason(
                "nothing_to_put_away",
                f"no receiving or quarantine location of this site holds lot {batch.lot_number}",
            )
        )
    if len(holding) > 1:
        codes = ", ".join(sorted(location.code for location in holding))
        raise ScanRefused(
            Reason(
                "source_location_ambiguous",
                f"lot {batch.lot_number} lies in {codes}: name the source as the reference",
            )
        )
    return holding[0]


def count(ctx: ScanContext) -> dict[str, Any]:
    """Record a cycle count of the lot at the location; a difference awaits QA."""
    batch = ctx.batch
    expected, discrepancy = services.count_record(
        batch=batch,
        location=ctx.location,
        counted=ctx.units,
        actor=ctx.actor,
        reason=ctx.reason_text(f"cycle count of lot {batch.lot_number}"),
    )
    if discrepancy is not None:
        ctx.warnings.append(
            Reason(
                "count_discrepancy",
                f"counted {discrepancy.counted}, the ledger holds {expected}: "
                "an adjustment awaits QA",
            )
        )
    return {
        "counted": ctx.units,
        "on_hand": expected,
        "discrepancy": discrepancy.pk if discrepancy else None,
    }


def verify(ctx: ScanContext) -> dict[str, Any]:
    """Verify a pack (serial known, its state, the lot's status: checked before this runs) and,
    when asked, decommission it as dispensed: one unit leaves the location."""
    serial = ctx.serial
    outcome: dict[str, Any] = {
        "verified": True,
        "serial": serial.serial_number if serial else None,
        "state": serial.state if serial else None,
    }
    if not ctx.decommission:
        return outcome
    if serial is None:
        raise ScanRefused(
            Reason("serial_missing", "only a serialised pack is decommissioned: scan its code")
        )
    move = services.stock_post_move(
        batch=ctx.batch,
        quantity=1,
        kind=MoveKind.DISPENSING,
        actor=ctx.actor,
        reason=ctx.reason_text(f"dispensed serial {serial.serial_number}"),
        from_location=ctx.location,
        reference=f"serial:{serial.serial_number}",
    )
    serial = services.serial_transition(
        serial=serial,
        to_state=SerialState.DISPENSED,
        actor=ctx.actor,
        reason=ctx.reason_text("dispensed"),
        holder=ctx.location.site.partner,
        shipment_reference="",
    )
    ctx.serial = serial
    outcome.update(state=serial.state, move=move.pk)
    return outcome


ACTIONS = frozenset(ScanAction.values)

LOT_HANDLERS: dict[str, Handler] = {
    ScanAction.PUTAWAY: putaway,
    ScanAction.COUNT: count,
    ScanAction.VERIFY: verify,
}


# --- one scan ------------------------------------------------------------------------------


def scan_submit(
    *,
    actor: User,
    code: str,
    action: str,
    location: Location,
    reference: str = "",
    scan_id: str = "",
    quantity: int | None = None,
    decommission: str = "",
    handlers: Mapping[str, Handler] | None = None,
) -> ScanAnswer:
    """Read, check and act on one scan; record it whatever the verdict (see the module doc).

    A malformed request (unknown action, a location not the actor's, a role that may not scan
    for this action, a count without its quantity) raises and records nothing; a scan that was
    read answers a record, accepted or refused.
    """
    handlers = {**LOT_HANDLERS, **(handlers or {})}
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action {action!r}", code="unknown_action")
    require_role(actor, *SCAN_ROLES[action])
    reading = gs1.parse(code)
    location, lot, gates_read = _read(actor, location, reading, holds=action != ScanAction.COUNT)
    _check_request(action=action, reference=reference, quantity=quantity, decommission=decommission)
    ctx = ScanContext(
        actor=actor,
        location=location,
        action=action,
        reference=reference,
        requested_quantity=quantity,
        decommission=decommission,
        reading=reading,
        today=clock.localdate(),
        scan_id=scan_id,
        scanned_lot=lot,
        gates_read=gates_read,
    )
    try:
        return ScanAnswer(_scan(ctx, code, handlers.get(action)), replayed=False)
    except IntegrityError:
        # The scan_id was answered before (or at this instant, by a handheld retrying): its
        # record refused this one, undoing everything this attempt did; answer the first. (No
        # look-up ahead: a repeat is rare, and the unique record decides even when two race.)
        first = (
            _first_answer(actor, scan_id, code=code, action=action, location=location)
            if scan_id
            else None
        )
        if first is None:
            raise
        return ScanAnswer(first, replayed=True)


def _check_request(*, action: str, reference: str, quantity: int | None, decommission: str) -> None:
    if action in (ScanAction.PICK, ScanAction.SHIP) and not reference:
        raise InvalidInput(
            f"a {action} scan names its shipment (e.g. SH-2026-000001) as the reference",
            code="reference_required",
        )
    if quantity is not None:
        whole_number(quantity, "quantity", most=MAX_SCAN_QUANTITY)
    if action == ScanAction.COUNT and quantity is None:
        raise InvalidInput("a count scan states the counted quantity", code="quantity_required")
    if action != ScanAction.COUNT and quantity == 0:
        raise InvalidInput("a scan moves at least one unit", code="invalid_quantity")
    if decommission and (action != ScanAction.VERIFY or decommission not in DECOMMISSION_CHOICES):
        raise InvalidInput(
            "decommission is 'dispensed', with the verify action only", code="invalid_decommission"
        )


def _first_answer(
    actor: User, scan_id: str, *, code: str, action: str, location: Location
) -> ScanRecord | None:
    first = (
        ScanRecord.objects.select_related("user", "location", "product", "batch", "serial")
        .filter(user=actor, scan_id=scan_id)
        .first()
    )
    if first is None:
        return None
    if (first.raw_sha256, first.action, first.location_id) != (
        _sha256(code),
        action,
        location.pk,
    ):
        raise RuleViolation(
            f"scan_id {scan_id!r} was used for another scan (record #{first.pk})",
            code="scan_id_reused",
        )
    return first


def _scan(ctx: ScanContext, code: str, handler: Handler | None) -> ScanRecord:
    """Check, act and record. The checks only read. A scan they refuse, or whose action writes
    nothing (a verify that decommissions nothing), writes its record alone: one statement on
    PostgreSQL, with no transaction around it. An action that writes runs in one transaction
    with its record; when it refuses, the transaction undoes everything it wrote (no savepoint
    around the action: the accepted scan, by far the most frequent, pays none) and the refusal
    is recorded alone."""
    reasons = identify(ctx)
    if not reasons:
        reasons = lot_reasons(ctx) + serial_reasons(ctx)
    if not reasons and handler is None:
        reasons = [Reason("action_unavailable", f"{ctx.action} scans are not available here")]
    if reasons:
        with _alone():
            return scan_record_create(ctx, code=code, reasons=reasons, outcome={})
    warnings_before, serial_before = len(ctx.warnings), ctx.serial
    try:
        with transaction.atomic() if ctx.writes else _alone():
            try:
                outcome = handler(ctx)
            except ScanRefused as refusal:
                raise _ActionRefused(refusal.reasons) from refusal
            except ApplicationError as error:
                raise _ActionRefused([Reason(error.code, error.detail)]) from error
            return scan_record_create(ctx, code=code, reasons=[], outcome=outcome)
    except _ActionRefused as refused:
        # What the undone action said or wrote no longer holds.
        del ctx.warnings[warnings_before:]
        ctx.serial = serial_before
        with _alone():
            return scan_record_create(ctx, code=code, reasons=refused.reasons, outcome={})


def _alone():
    """Where a scan writes its record alone: bare, outside a transaction (the record is one
    statement); in a savepoint inside a caller's transaction, so that a repeated scan_id
    refused by the record's unique key undoes only the scan."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()


def _sha256(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def scan_record_create(
    ctx: ScanContext, *, code: str, reasons: list[Reason], outcome: dict[str, Any]
) -> ScanRecord:
    """Write the scan's append-only record and seal it into the audit chain (on PostgreSQL in
    one statement: outside a transaction, one round trip)."""
    verdict = ScanVerdict.REFUSED if reasons else ScanVerdict.ACCEPTED
    now = timezone.now()
    record = ScanRecord(
        user=ctx.actor,
        partner_id=ctx.location.site.partner_id,
        location=ctx.location,
        created_at=now,
        scan_id=ctx.scan_id,
        action=ctx.action,
        reference=ctx.reference,
        quantity=None if ctx.reading.problem else ctx.units,
        raw_code=gs1.escape_code(code, limit=600),
        raw_length=len(code),
        raw_sha256=_sha256(code),
        verdict=verdict,
        reasons=[reason.as_dict() for reason in reasons],
        warnings=[] if reasons else [warning.as_dict() for warning in ctx.warnings],
        parsed=ctx.reading.as_dict(),
        outcome=outcome,
        product=ctx.product,
        batch=ctx.batch,
        serial=ctx.serial,
    )
    summary = reasons[0].code if reasons else "accepted"
    chain.insert_sealed_row(
        record,
        action=AuditAction.CREATED,
        user=ctx.actor,
        occurred_at=now,
        reason=f"{ctx.action} scan at {ctx.location.code}: {summary}",
    )
    return record
