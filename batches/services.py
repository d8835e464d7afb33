"""Every state change of products, lots and stock: the ledger lives here.

Stock changes only through :func:`stock_post_move`, which writes the append-only move and the
balances it touches in one transaction, under row locks taken in primary-key order (so two
transactions never wait on each other in a cycle). The database's CHECKs are the last line:
a balance can never go negative nor allocate more than it holds.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from audit import chain
from audit.history import (
    bulk_create_with_reason,
    check_editable,
    create_with_reason,
    invalid_input_from,
    save_with_reason,
    update_with_reason,
)
from audit.models import AuditAction, Signature, SignatureMeaning
from audit.services import signature_apply, signature_verify_password
from partners.models import Location, LocationKind, Partner, Role, User
from pharmadms.exceptions import InvalidInput, NotPermitted, RuleViolation
from pharmadms.permissions import require_role
from pharmadms.quantities import whole_number

from .hooks import lot_holds
from .models import (
    BATCH_TRANSITIONS,
    SERIAL_TRANSITIONS,
    AllocationStatus,
    Batch,
    BatchStatus,
    CountDiscrepancy,
    CountStatus,
    MoveKind,
    Product,
    Serial,
    SerialState,
    StockAllocation,
    StockBalance,
    StockMove,
    StorageClass,
)

PRODUCT_FIELDS = {
    "gtin",
    "name",
    "category",
    "dosage_form",
    "strength",
    "pack_size",
    "storage_class",
    "controlled_schedule",
    "shelf_life_months",
    "is_active",
}


class InsufficientStock(RuleViolation):
    default_code = "insufficient_stock"


def _require_own_partner(actor: User, partner_id: int | None, what: str) -> None:
    """By the partner's id: the caller's row carries it, and reading the partner would cost a
    query (on a scan's path among others)."""
    if not actor.is_superuser and actor.partner_id != partner_id:
        raise NotPermitted(f"{what} belongs to another organisation")


# --- products and storage classes -----------------------------------------------------------


@transaction.atomic
def storage_class_create(*, actor: User, reason: str, **fields: Any) -> StorageClass:
    if not actor.is_superuser:
        raise NotPermitted("storage classes are kept by the platform operator")
    return create_with_reason(StorageClass, actor=actor, reason=reason, **fields)


@transaction.atomic
def product_create(*, manufacturer: Partner, actor: User, reason: str, **fields: Any) -> Product:
    require_role(actor, Role.ADMIN, Role.QA_OFFICER)
    _require_own_partner(actor, manufacturer.pk, "the manufacturer")
    if manufacturer.kind != "manufacturer":
        raise RuleViolation("only a manufacturer owns products", code="not_a_manufacturer")
    check_editable(fields, PRODUCT_FIELDS)
    return create_with_reason(
        Product, actor=actor, reason=reason, manufacturer=manufacturer, **fields
    )


@transaction.atomic
def product_update(*, product: Product, actor: User, reason: str, **changes: Any) -> Product:
    require_role(actor, Role.ADMIN, Role.QA_OFFICER)
    _require_own_partner(actor, product.manufacturer_id, "the product")
    if "gtin" in changes and changes["gtin"] != product.gtin:
        raise RuleViolation(
            "a product's GTIN never changes: register a new product", code="gtin_immutable"
        )
    return update_with_reason(
        product, actor=actor, reason=reason, changes=changes, editable=PRODUCT_FIELDS
    )


# --- lots ----------------------------------------------------------------------------------


@transaction.atomic
def batch_create(
    *,
    product: Product,
    lot_number: str,
    manufactured_on: datetime.date,
    expires_on: datetime.date,
    actor: User,
    reason: str,
) -> Batch:
    """Register a new lot; it starts in quarantine until QA releases it."""
    require_role(actor, Role.ADMIN, Role.QA_OFFICER)
    _require_own_partner(actor, product.manufacturer_id, "the product")
    _check_dates(product, manufactured_on, expires_on)
    try:
        with transaction.atomic():
            return create_with_reason(
                Batch,
                actor=actor,
                reason=reason,
                product=product,
                lot_number=lot_number,
                manufactured_on=manufactured_on,
                expires_on=expires_on,
                status=BatchStatus.QUARANTINE,
            )
    except IntegrityError as error:  # a concurrent insert of the same lot won the race
        raise RuleViolation(
            f"{product.gtin} already has lot {lot_number}", code="duplicate_lot"
        ) from error


def _check_dates(product: Product, manufactured_on: datetime.date, expires_on: datetime.date):
    if manufactured_on > timezone.localdate():
        raise InvalidInput(
            "a lot cannot be manufactured in the future", code="manufacture_in_future"
        )
    if expires_on <= manufactured_on:
        raise InvalidInput("expiry must come after manufacture", code="expiry_before_manufacture")
    # Expiry is usually printed as a month: allow the rest of the last month of shelf life.
    latest = _add_months(manufactured_on, product.shelf_life_months + 1)
    if expires_on > latest:
        raise InvalidInput(
            f"expiry {expires_on} exceeds the shelf life of {product.shelf_life_months} months",
            code="expiry_beyond_shelf_life",
        )


def _add_months(day: datetime.date, months: int) -> datetime.date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return datetime.date(year, month, 1)


@transaction.atomic
def batch_update_dates(
    *,
    batch: Batch,
    actor: User,
    reason: str,
    manufactured_on: datetime.date | None = None,
    expires_on: datetime.date | None = None,
) -> Batch:
    """Correct a lot's dates; only while it is in quarantine, never once released."""
    require_role(actor, Role.ADMIN, Role.QA_OFFICER)
    _require_own_partner(actor, batch.product.manufacturer_id, "the lot")
    batch = Batch.objects.select_for_update().get(pk=batch.pk)
    if batch.status != BatchStatus.QUARANTINE:
        raise RuleViolation(
            f"lot {batch.lot_number} is {batch.status}: its dates can no longer change",
            code="batch_dates_locked",
        )
    batch.manufactured_on = manufactured_on or batch.manufactured_on
    batch.expires_on = expires_on or batch.expires_on
    _check_dates(batch.product, batch.manufactured_on, batch.expires_on)
    return save_with_reason(
        batch, actor=actor, reason=reason, update_fields=["manufactured_on", "expires_on"]
    )


# Decisions that need the QA officer's electronic signature (batch_release, batch_reject).
SIGNED_DECISIONS = {
    BatchStatus.RELEASED: SignatureMeaning.RELEASED,
    BatchStatus.REJECTED: SignatureMeaning.REJECTED,
}


@transaction.atomic
def batch_change_status(*, batch: Batch, to_status: str, actor: User, reason: str) -> Batch:
    """Move a lot along its unsigned QA transitions: a quarantine hold, a recall.

    Release and rejection need an electronic signature: :func:`batch_release`,
    :func:`batch_reject`.
    """
    require_role(actor, Role.QA_OFFICER)
    if to_status in SIGNED_DECISIONS:
        raise NotPermitted(
            f"a lot is {to_status} only with a QA officer's electronic signature",
            code="signature_required",
        )
    batch = Batch.objects.select_for_update().get(pk=batch.pk)
    if to_status not in BATCH_TRANSITIONS.get(batch.status, frozenset()):
        raise RuleViolation(
            f"lot {batch.lot_number} cannot go from {batch.status} to {to_status}",
            code="invalid_status_transition",
        )
    batch.status = to_status
    return save_with_reason(batch, actor=actor, reason=reason, update_fields=["status"])


class BatchDecision(NamedTuple):
    """A lot after a signed QA decision, and the signature that made it."""

    batch: Batch
    signature: Signature


def _check_decision(batch: Batch, signer: User, to_status: str) -> None:
    """Only a QA officer of the lot's manufacturer decides, and only on a quarantined lot."""
    if signer is None or not signer.is_active:
        raise NotPermitted("an active QA officer signs this decision")
    # No superuser shortcut: the release of a lot is the manufacturer's QA decision.
    if signer.role != Role.QA_OFFICER:
        raise NotPermitted(
            f"a lot is {to_status} by a QA officer; you are {signer.role}",
            code="role_not_permitted",
        )
    if signer.partner_id != batch.product.manufacturer_id:
        raise NotPermitted(
            f"lot {batch.lot_number} is decided by its manufacturer's QA, not your organisation",
            code="not_your_organisation",
        )
    if to_status not in BATCH_TRANSITIONS.get(batch.status, frozenset()):
        raise RuleViolation(
            f"lot {batch.lot_number} is {batch.status}: it cannot be {to_status}",
            code="invalid_status_transition",
        )


def _batch_decide(
    *, batch: Batch, to_status: str, signer: User, password: str, reason: str, request
) -> BatchDecision:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a QA decision needs a reason", code="reason_required")
    _check_decision(Batch.objects.select_related("product").get(pk=batch.pk), signer, to_status)
    # The password is checked before the transaction opens, not inside it: a wrong password
    # refuses the decision, and a refusal rolls its transaction back, which would also undo
    # django-axes' count of the failed attempt and its audit entry. Nothing is written here.
    verified = signature_verify_password(signer=signer, password=password, request=request)
    with transaction.atomic():
        locked = Batch.objects.select_for_update().get(pk=batch.pk)
        # Decided again under the lock: another QA officer may have decided in the meantime.
        _check_decision(locked, signer, to_status)
        locked.status = to_status
        save_with_reason(locked, actor=signer, reason=reason, update_fields=["status"])
        signature = signature_apply(
            verified=verified, meaning=SIGNED_DECISIONS[to_status], reason=reason, record=locked
        )
    return BatchDecision(batch=locked, signature=signature)


def batch_release(
    *, batch: Batch, signer: User, password: str, reason: str, request=None
) -> BatchDecision:
    """Release a quarantined lot for sale under the QA officer's electronic signature.

    The signer re-enters their password (a wrong one counts towards the lockout and writes
    nothing); the status change and the signature bound to the new version commit together.
    """
    return _batch_decide(
        batch=batch,
        to_status=BatchStatus.RELEASED,
        signer=signer,
        password=password,
        reason=reason,
        request=request,
    )


def batch_reject(
    *, batch: Batch, signer: User, password: str, reason: str, request=None
) -> BatchDecision:
    """Reject a quarantined lot under the QA officer's electronic signature (final)."""
    return _batch_decide(
        batch=batch,
        to_status=BatchStatus.REJECTED,
        signer=signer,
        password=password,
        reason=reason,
        request=request,
    )


# --- the ledger ----------------------------------------------------------------------------


# No single move or allocation is larger than this; balances are 64-bit, so they never overflow.
MAX_QUANTITY = 1_000_000_000


def _positive_quantity(quantity: Any) -> int:
    return whole_number(quantity, "quantity", least=1, most=MAX_QUANTITY)


# The ledger's hot path speaks SQL directly: building these few fixed statements through the
# ORM cost more than the database work itself (bench/ledger.py measures it). Balance rows are
# locked in primary-key order, then written with values computed from the locked rows.
_BALANCES = StockBalance._meta.db_table
_MOVES = StockMove._meta.db_table
_MOVE_COLUMNS = (
    "batch_id",
    "quantity",
    "from_location_id",
    "to_location_id",
    "kind",
    "reference",
    "reason",
    "user_id",
    "created_at",
)


@dataclass
class _Balance:
    """One locked balance row, as read under its lock."""

    pk: int
    location_id: int
    on_hand: int
    allocated: int


def _select_locked(cursor, batch_id: int, location_ids: list[int]) -> list[_Balance]:
    placeholders = ", ".join(["%s"] * len(location_ids))
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    cursor.execute(
        f"SELECT id, location_id, on_hand, allocated FROM {_BALANCES}"  # noqa: S608 - fixed names
        f" WHERE batch_id = %s AND location_id IN ({placeholders}) ORDER BY id{lock}",
        [batch_id, *location_ids],
    )
    return [_Balance(*row) for row in cursor.fetchall()]


def _locked_balances(batch: Batch, locations: Iterable[Location]) -> dict[int, _Balance]:
    """Lock (creating if missing) the balance rows of ``batch`` at ``locations``, in pk order."""
    location_ids = sorted({loc.pk for loc in locations})
    with connection.cursor() as cursor:
        rows = {row.location_id: row for row in _select_locked(cursor, batch.pk, location_ids)}
        missing = [lid for lid in location_ids if lid not in rows]
        if missing:
            StockBalance.objects.bulk_create(
                [StockBalance(batch=batch, location_id=lid) for lid in missing],
                ignore_conflicts=True,
            )
            rows.update({row.location_id: row for row in _select_locked(cursor, batch.pk, missing)})
    return rows


def _balance_update(rows: list[_Balance], now) -> tuple[str, list]:
    """One UPDATE for the locked rows (already locked, so it takes no new lock)."""
    cases_on_hand = " ".join("WHEN %s THEN %s" for _ in rows)
    cases_allocated = " ".join("WHEN %s THEN %s" for _ in rows)
    params: list = []
    for row in rows:
        params += [row.pk, row.on_hand]
    for row in rows:
        params += [row.pk, row.allocated]
    params += [now, *(row.pk for row in rows)]
    sql = (
        f"UPDATE {_BALANCES} SET on_hand = CASE id {cases_on_hand} END,"  # noqa: S608
        f" allocated = CASE id {cases_allocated} END, updated_at = %s"
        f" WHERE id IN ({', '.join(['%s'] * len(rows))})"
    )
    return sql, params


def _write_balances(cursor, rows: list[_Balance], now) -> None:
    sql, params = _balance_update(rows, now)
    cursor.execute(sql, params)


@transaction.atomic
def stock_post_move(
    *,
    batch: Batch,
    quantity: int,
    kind: str,
    actor: User,
    reason: str,
    from_location: Location | None = None,
    to_location: Location | None = None,
    reference: str = "",
    consume_allocation: StockAllocation | None = None,
) -> StockMove:
    """Post one move and update the balances it touches, atomically.

    Units leave ``from_location`` only from what is available there (on hand less allocated),
    unless the move consumes ``consume_allocation``, whose units it then takes.
    """
    quantity = _positive_quantity(quantity)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("every stock move needs a reason", code="reason_required")
    if from_location is None and to_location is None:
        raise InvalidInput("a move needs a from or a to location", code="invalid_move")
    if from_location is not None and to_location is not None and from_location.pk == to_location.pk:
        raise InvalidInput("a move needs two different locations", code="invalid_move")
    if kind not in MoveKind.values:
        raise InvalidInput(f"unknown move kind {kind!r}", code="invalid_move")

    rows = _locked_balances(batch, [loc for loc in (from_location, to_location) if loc])
    now = timezone.now()
    changed: list[_Balance] = []
    if from_location is not None:
        source = rows[from_location.pk]
        if consume_allocation is not None:
            _consume(consume_allocation, source, quantity, actor=actor, reason=reason)
            source.allocated -= quantity
        elif source.on_hand - source.allocated < quantity:
            raise InsufficientStock(
                f"{from_location} holds {source.on_hand - source.allocated} available units of lot "
                f"{batch.lot_number}; {quantity} asked",
                extra={"available": source.on_hand - source.allocated},
            )
        source.on_hand -= quantity
        changed.append(source)
    if to_location is not None:
        target = rows[to_location.pk]
        target.on_hand += quantity
        changed.append(target)

    # Ids, not instances: the ledger's hot path skips the related-object descriptors.
    move = StockMove(
        batch_id=batch.pk,
        quantity=quantity,
        kind=kind,
        from_location_id=from_location.pk if from_location else None,
        to_location_id=to_location.pk if to_location else None,
        reference=reference,
        reason=reason,
        user_id=actor.pk,
        created_at=now,
    )
    values = [
        batch.pk,
        quantity,
        move.from_location_id,
        move.to_location_id,
        kind,
        reference,
        reason,
        actor.pk,
        connection.ops.adapt_datetimefield_value(now),
    ]
    balances_sql, balances_params = _balance_update(changed, values[-1])
    insert_sql = (
        f"INSERT INTO {_MOVES} ({', '.join(_MOVE_COLUMNS)})"  # noqa: S608 - fixed names
        f" VALUES ({', '.join(['%s'] * len(values))}) RETURNING id"
    )
    head = None
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One round trip: both balances, the move, and the chain head for its seal.
            cursor.execute(
                f"WITH balances AS ({balances_sql} RETURNING 1), move AS ({insert_sql}),"  # noqa: S608 - fixed names
                f" head AS ({chain.ADVANCE_HEAD})"
                " SELECT (SELECT id FROM move), head.sequence, head.head_hash"
                " FROM (SELECT count(*) FROM balances) AS written LEFT JOIN head ON true",
                [*balances_params, *values],
            )
            move.pk, sequence, previous_hash = cursor.fetchone()
            head = (sequence, previous_hash) if sequence is not None else None
        else:
            cursor.execute(balances_sql, balances_params)
            cursor.execute(insert_sql, values)
            move.pk = cursor.fetchone()[0]
    move._state.adding = False
    move._state.db = connection.alias
    chain.seal_row(
        move, action=AuditAction.MOVED, user=actor, occurred_at=now, reason=reason, head=head
    )
    return move


def _consume(
    allocation: StockAllocation, source: _Balance, quantity: int, *, actor: User, reason: str
) -> None:
    allocation = StockAllocation.objects.select_for_update().get(pk=allocation.pk)
    if allocation.status != AllocationStatus.ACTIVE or allocation.location_id != source.location_id:
        raise RuleViolation(
            "the allocation is not active at this location", code="allocation_not_active"
        )
    if allocation.quantity != quantity:
        raise RuleViolation(
            f"the allocation holds {allocation.quantity} units; {quantity} would be moved",
            code="allocation_quantity_mismatch",
        )
    allocation.status = AllocationStatus.CONSUMED
    save_with_reason(allocation, actor=actor, reason=reason, update_fields=["status"])


def stock_receive(
    *, batch: Batch, location: Location, quantity: int, actor: User, reason: str, reference=""
) -> StockMove:
    """Stock entering the network at ``location`` (a manufacturer's production output)."""
    require_role(actor, Role.WAREHOUSE_OPERATOR, Role.QA_OFFICER, Role.ADMIN)
    _require_own_partner(actor, location.site.partner_id, "the location")
    return stock_post_move(
        batch=batch,
        quantity=quantity,
        kind=MoveKind.RECEIPT,
        actor=actor,
        reason=reason,
        to_location=location,
        reference=reference,
    )


def stock_transfer(
    *,
    batch: Batch,
    from_location: Location,
    to_location: Location,
    quantity: int,
    actor: User,
    reason: str,
    reference: str = "",
) -> StockMove:
    """Move stock between two locations of the same partner (put-away, to quarantine, …)."""
    require_role(actor, Role.WAREHOUSE_OPERATOR, Role.QA_OFFICER, Role.ADMIN)
    _require_own_partner(actor, from_location.site.partner_id, "the source location")
    if from_location.site.partner_id != to_location.site.partner_id:
        raise RuleViolation(
            "a transfer stays within one organisation; ship instead",
            code="transfer_across_partners",
        )
    if to_location.kind == LocationKind.STORAGE and batch.status != BatchStatus.RELEASED:
        raise RuleViolation(
            f"lot {batch.lot_number} is {batch.status}: it cannot enter saleable storage",
            code="batch_not_released",
        )
    return stock_post_move(
        batch=batch,
        quantity=quantity,
        kind=MoveKind.TRANSFER,
        actor=actor,
        reason=reason,
        from_location=from_location,
        to_location=to_location,
        reference=reference,
    )


def stock_adjust(
    *,
    batch: Batch,
    location: Location,
    quantity_change: int,
    actor: User,
    reason: str,
    reference: str = "",
) -> StockMove:
    """A QA correction of a count: a new move into or out of ``location``, never an edit."""
    require_role(actor, Role.QA_OFFICER)
    _require_own_partner(actor, location.site.partner_id, "the location")
    if (
        isinstance(quantity_change, bool)
        or not isinstance(quantity_change, int)
        or not quantity_change
    ):
        raise InvalidInput(
            "the change must be a whole number other than zero", code="invalid_quantity"
        )
    if quantity_change > 0:
        return stock_post_move(
            batch=batch,
            quantity=quantity_change,
            kind=MoveKind.ADJUSTMENT,
            actor=actor,
            reason=reason,
            to_location=location,
            reference=reference,
        )
    return stock_post_move(
        batch=batch,
        quantity=-quantity_change,
        kind=MoveKind.ADJUSTMENT,
        actor=actor,
        reason=reason,
        from_location=location,
        reference=reference,
    )


# --- allocation (FEFO) ---------------------------------------------------------------------


@transaction.atomic
def stock_allocate(
    *,
    product: Product,
    quantity: int,
    locations: Iterable[Location],
    reference: str,
    actor: User,
    reason: str,
    min_remaining_shelf_life_days: int = 0,
    on: datetime.date | None = None,
    allow_partial: bool = False,
) -> list[StockAllocation]:
    """Reserve ``quantity`` units of ``product`` at ``locations``, earliest expiry first.

    Only released lots that are not expired and keep at least ``min_remaining_shelf_life_days``
    of shelf life are taken, and only from storage locations. Without ``allow_partial`` it is
    all or nothing: a shortfall refuses and reserves nothing.
    """
    quantity = _positive_quantity(quantity)
    if min_remaining_shelf_life_days < 0:
        raise InvalidInput("minimum remaining shelf life cannot be negative", code="invalid_input")
    today = on or timezone.localdate()
    earliest_expiry = today + datetime.timedelta(days=min_remaining_shelf_life_days)
    location_ids = [loc.pk for loc in locations]
    # Lock candidates in pk order (the ledger's order), then take them in FEFO order.
    candidates = list(
        StockBalance.objects.select_for_update(of=("self",))
        .select_related("batch", "location")
        .filter(
            batch__product=product,
            batch__status=BatchStatus.RELEASED,
            batch__expires_on__gte=earliest_expiry,
            location_id__in=location_ids,
            location__kind=LocationKind.STORAGE,
            on_hand__gt=F("allocated"),
        )
        .order_by("pk")
    )
    # Stock under a hold (an open recall of its lot, a temperature excursion at its location:
    # batches.hooks) is never allocated.
    candidates = [row for row in candidates if not lot_holds(row.batch, row.location)]
    candidates.sort(key=lambda row: (row.batch.expires_on, row.batch_id, row.location_id))
    available = sum(row.on_hand - row.allocated for row in candidates)
    if available < quantity and not allow_partial:
        raise InsufficientStock(
            f"{available} units of {product.name} can be allocated under these conditions; "
            f"{quantity} asked",
            extra={"available": available},
        )
    allocations, remaining = [], quantity
    for row in candidates:
        if remaining == 0:
            break
        take = min(remaining, row.on_hand - row.allocated)
        StockBalance.objects.filter(pk=row.pk).update(
            allocated=F("allocated") + take, updated_at=timezone.now()
        )
        allocations.append(
            create_with_reason(
                StockAllocation,
                actor=actor,
                reason=reason,
                batch=row.batch,
                location_id=row.location_id,
                quantity=take,
                reference=reference,
                created_by=actor,
            )
        )
        remaining -= take
    return allocations


@transaction.atomic
def stock_deallocate(*, allocation: StockAllocation, actor: User, reason: str) -> StockAllocation:
    """Give the units of an active allocation back to available stock."""
    allocation = StockAllocation.objects.select_for_update().get(pk=allocation.pk)
    if allocation.status != AllocationStatus.ACTIVE:
        raise RuleViolation("the allocation is no longer active", code="allocation_not_active")
    row = _locked_balances(allocation.batch, [allocation.location])[allocation.location_id]
    row.allocated -= allocation.quantity
    with connection.cursor() as cursor:
        _write_balances(cursor, [row], connection.ops.adapt_datetimefield_value(timezone.now()))
    allocation.status = AllocationStatus.RELEASED
    return save_with_reason(allocation, actor=actor, reason=reason, update_fields=["status"])


# --- serial numbers ------------------------------------------------------------------------

SERIAL_COMMISSION_ROLES = (Role.WAREHOUSE_OPERATOR, Role.QA_OFFICER, Role.ADMIN)
SERIAL_EDITABLE = {"state", "holder", "shipment_reference", "decommission_reason"}


def serial_refusal(serial: Serial, to_state: str) -> tuple[str, str] | None:
    """Why ``serial`` cannot go to ``to_state`` (code, detail), or None when it can."""
    if to_state in SERIAL_TRANSITIONS.get(serial.state, frozenset()):
        return None
    number = serial.serial_number
    if serial.state == SerialState.DISPENSED:
        return "serial_decommissioned", f"serial {number} was dispensed: the pack is out of trade"
    if serial.state == SerialState.DECOMMISSIONED:
        why = f" ({serial.decommission_reason})" if serial.decommission_reason else ""
        return "serial_decommissioned", f"serial {number} is decommissioned{why}"
    if serial.state == SerialState.SHIPPED:
        where = f" on {serial.shipment_reference}" if serial.shipment_reference else ""
        return "serial_already_shipped", f"serial {number} is already shipped{where}"
    if serial.state == SerialState.RECEIVED and to_state == SerialState.RECEIVED:
        return "serial_already_received", f"serial {number} was received already"
    return (
        "invalid_transition",
        f"serial {number} is {serial.state}: it cannot become {to_state}",
    )


@transaction.atomic
def serial_commission(
    *, batch: Batch, serial_numbers: Iterable[str], actor: User, reason: str
) -> list[Serial]:
    """The lot's manufacturer registers serialised packs: commissioned, in its custody."""
    require_role(actor, *SERIAL_COMMISSION_ROLES)
    manufacturer = batch.product.manufacturer
    _require_own_partner(actor, manufacturer.pk, "the lot")
    numbers = list(dict.fromkeys(serial_numbers))
    if not numbers:
        raise InvalidInput("name at least one serial number", code="invalid_input")
    taken = sorted(
        Serial.objects.filter(batch=batch, serial_number__in=numbers).values_list(
            "serial_number", flat=True
        )
    )
    if taken:
        raise RuleViolation(
            f"lot {batch.lot_number} already has serial {', '.join(taken[:5])}",
            code="duplicate_serial",
        )
    serials = [
        Serial(
            batch=batch, serial_number=number, state=SerialState.COMMISSIONED, holder=manufacturer
        )
        for number in numbers
    ]
    # Each validated as create_with_reason would, but for what was read above: the lot and its
    # manufacturer exist, and the numbers are new (the database keeps them unique).
    for serial in serials:
        try:
            serial.full_clean(
                exclude=["batch", "holder"], validate_unique=False, validate_constraints=False
            )
        except ValidationError as error:
            raise invalid_input_from(error) from error
    try:
        # A production lot's packs at once: the statements do not grow with their number.
        serials = bulk_create_with_reason(serials, actor=actor, reason=reason)
    except IntegrityError as error:  # a concurrent commissioning of the same pack won
        raise RuleViolation(
            f"lot {batch.lot_number} already has one of these serials", code="duplicate_serial"
        ) from error
    return serials


@transaction.atomic
def serial_transition(
    *,
    serial: Serial,
    to_state: str,
    actor: User,
    reason: str,
    holder: Partner | None = None,
    shipment_reference: str | None = None,
    decommission_reason: str = "",
) -> Serial:
    """Move a pack along its life (SERIAL_TRANSITIONS), under a row lock, with its reason."""
    serial = Serial.objects.select_for_update().get(pk=serial.pk)
    refusal = serial_refusal(serial, to_state)
    if refusal is not None:
        raise RuleViolation(refusal[1], code=refusal[0])
    changes: dict[str, Any] = {"state": to_state}
    if holder is not None:
        changes["holder"] = holder
    if shipment_reference is not None:
        changes["shipment_reference"] = shipment_reference
    if to_state == SerialState.DECOMMISSIONED:
        changes["decommission_reason"] = decommission_reason or "decommissioned"
    return update_with_reason(
        serial, actor=actor, reason=reason, changes=changes, editable=SERIAL_EDITABLE
    )


SERIAL_DECOMMISSION_ROLES = (Role.QA_OFFICER, Role.ADMIN)
# Why a pack leaves trade for good outside a pharmacy's dispensing (DSCSA, EU FMD).
DECOMMISSION_CAUSES = ("lost", "stolen", "destroyed", "damaged", "sample", "expired")


@transaction.atomic
def serial_decommission(*, serial: Serial, cause: str, actor: User, reason: str) -> Serial:
    """Take a pack out of trade for good, as the partner holding it: lost or stolen (a pack of
    a short delivery that never arrived stays with its sender until then), destroyed, damaged,
    a sample, expired. Its identifier is dead afterwards: a scan of it is refused."""
    require_role(actor, *SERIAL_DECOMMISSION_ROLES)
    # The holder as it is under the lock (serial_transition takes the same lock again, in this
    # transaction): a pack handed on meanwhile is no longer this partner's to decommission.
    serial = Serial.objects.select_for_update().get(pk=serial.pk)
    _require_own_partner(actor, serial.holder_id, "the pack")
    if cause not in DECOMMISSION_CAUSES:
        raise InvalidInput(
            f"a pack is decommissioned as {', '.join(DECOMMISSION_CAUSES)}",
            code="invalid_decommission",
        )
    return serial_transition(
        serial=serial,
        to_state=SerialState.DECOMMISSIONED,
        actor=actor,
        reason=reason,
        decommission_reason=cause,
    )


@transaction.atomic
def serial_reserve(*, serial: Serial, shipment_reference: str, actor: User, reason: str) -> Serial:
    """Mark a pack as picked for a shipment, so no other shipment takes it."""
    serial = Serial.objects.select_for_update().get(pk=serial.pk)
    refusal = serial_refusal(serial, SerialState.SHIPPED)
    if refusal is not None:
        raise RuleViolation(refusal[1], code=refusal[0])
    if serial.shipment_reference and serial.shipment_reference != shipment_reference:
        raise RuleViolation(
            f"serial {serial.serial_number} is picked for {serial.shipment_reference}",
            code="serial_already_picked",
        )
    if serial.shipment_reference == shipment_reference:
        return serial
    return update_with_reason(
        serial,
        actor=actor,
        reason=reason,
        changes={"shipment_reference": shipment_reference},
        editable=SERIAL_EDITABLE,
    )


# --- cycle counts --------------------------------------------------------------------------

COUNT_ROLES = (Role.WAREHOUSE_OPERATOR, Role.QA_OFFICER, Role.ADMIN)


def _count_quantity(value: Any) -> int:
    return whole_number(value, "a count", most=MAX_QUANTITY)


@transaction.atomic
def count_record(
    *, batch: Batch, location: Location, counted: int, actor: User, reason: str
) -> tuple[int, CountDiscrepancy | None]:
    """Compare a cycle count with the ledger: returns what the ledger held and, when the count
    differs, the discrepancy that now awaits QA (nothing moves until QA approves it)."""
    require_role(actor, *COUNT_ROLES)
    _require_own_partner(actor, location.site.partner_id, "the location")
    counted = _count_quantity(counted)
    # Locked, so the expected figure is the ledger's at the moment of the count.
    expected = _locked_balances(batch, [location])[location.pk].on_hand
    if counted == expected:
        return expected, None
    if CountDiscrepancy.objects.filter(
        batch=batch, location=location, status=CountStatus.PENDING
    ).exists():
        raise RuleViolation(
            f"a count of lot {batch.lot_number} at {location.code} already awaits QA: "
            "QA decides it before a recount",
            code="count_pending_qa",
        )
    try:
        with transaction.atomic():
            discrepancy = create_with_reason(
                CountDiscrepancy,
                actor=actor,
                reason=reason,
                batch=batch,
                location=location,
                expected=expected,
                counted=counted,
                counted_by=actor,
                counted_at=timezone.now(),
            )
    except IntegrityError as error:
        raise RuleViolation(
            f"a count of lot {batch.lot_number} at {location.code} already awaits QA",
            code="count_pending_qa",
        ) from error
    return expected, discrepancy


def _decide_count(discrepancy: CountDiscrepancy, actor: User) -> CountDiscrepancy:
    require_role(actor, Role.QA_OFFICER)
    discrepancy = (
        CountDiscrepancy.objects.select_for_update(of=("self",))
        .select_related("batch", "location__site__partner")
        .get(pk=discrepancy.pk)
    )
    _require_own_partner(actor, discrepancy.location.site.partner_id, "the count")
    if discrepancy.counted_by_id == actor.pk:
        raise NotPermitted(
            "a count is approved by another person than its counter", code="self_approval"
        )
    if discrepancy.status != CountStatus.PENDING:
        raise RuleViolation(
            f"the count is already {discrepancy.status}", code="count_already_decided"
        )
    return discrepancy


@transaction.atomic
def count_discrepancy_approve(
    *, discrepancy: CountDiscrepancy, actor: User, reason: str
) -> CountDiscrepancy:
    """QA accepts a count: the ledger is adjusted by what the count found missing or extra."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a QA decision needs a reason", code="reason_required")
    discrepancy = _decide_count(discrepancy, actor)
    move = stock_adjust(
        batch=discrepancy.batch,
        location=discrepancy.location,
        quantity_change=discrepancy.difference,
        actor=actor,
        reason=f"cycle count #{discrepancy.pk} (counted {discrepancy.counted}, ledger held "
        f"{discrepancy.expected}): {reason}",
        reference=f"count:{discrepancy.pk}",
    )
    return update_with_reason(
        discrepancy,
        actor=actor,
        reason=reason,
        changes={
            "status": CountStatus.APPROVED,
            "decided_by": actor,
            "decided_at": timezone.now(),
            "adjustment": move,
        },
        editable={"status", "decided_by", "decided_at", "adjustment"},
    )


@transaction.atomic
def count_discrepancy_reject(
    *, discrepancy: CountDiscrepancy, actor: User, reason: str
) -> CountDiscrepancy:
    """QA refuses a count (a recount is due): nothing moves."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a QA decision needs a reason", code="reason_required")
    discrepancy = _decide_count(discrepancy, actor)
    return update_with_reason(
        discrepancy,
        actor=actor,
        reason=reason,
        changes={
            "status": CountStatus.REJECTED,
            "decided_by": actor,
            "decided_at": timezone.now(),
        },
        editable={"status", "decided_by", "decided_at"},
    )
