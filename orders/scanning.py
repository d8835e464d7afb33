"""The shipment half of a scan: receive, pick and ship, handed to batches.scanning.

``batches.scanning.scan_submit`` reads the code, identifies the pack, checks the lot and
records the scan; the actions that need shipments live here (``orders`` sits above
``batches``) and reach the ledger only through orders.services:

- **pick** (the seller's shelf): ``shipment_pick`` for the shipment named in ``reference``;
  refused ``not_allocated_lot``, ``wrong_location``, ``quantity_exceeds_expected``. A
  serialised pack is reserved for the shipment; the manufacturer's first pick of a pack it
  never registered commissions it (it labels its own packs).
- **ship** (the dock): confirms units of a picked lot as loaded on the shipment, never more than
  were picked; a serialised pack becomes ``shipped`` — a pack is never shipped twice. The
  dispatch ships the picked packs that were not scanned at the dock (orders.services).
- **receive** (the buyer's dock): a pack scan counts units of a lot against the expected
  shipment named in ``reference``; an SSCC scan counts everything packed under it
  (``package_by_sscc``). Never more than was shipped (``quantity_exceeds_expected``). When the
  whole shipment is counted, the receipt is posted through ``shipment_receive`` in the same
  transaction, and its serialised packs become ``received`` in the buyer's custody. A shipment
  found short is received through the shipment's receipt (``POST /api/v1/shipments/<id>/receive/``),
  which receives the packs of every line that arrived whole; those of a short or damaged line
  stay ``shipped`` until a receive scan at the buyer's site identifies them, one by one.

:class:`ScanViewSet` is the scan API (batches.scan_api) bound to these actions; it is the one
registered in pharmadms/api.py.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from batches import scan_api
from batches import services as stock
from batches.models import ScanAction, ScanRecord, ScanVerdict, Serial, SerialState
from batches.scanning import Handler, Reason, ScanContext, ScanRefused
from pharmadms.exceptions import NotFound

from . import services
from .models import Shipment, ShipmentLine, ShipmentStatus

RECEIVABLE = frozenset({ShipmentStatus.DISPATCHED, ShipmentStatus.DELIVERED})
SHIPPABLE = frozenset({ShipmentStatus.PLANNED, ShipmentStatus.PICKED, ShipmentStatus.DISPATCHED})


def _shipment(ctx: ScanContext, *, side: str) -> Shipment:
    """The shipment named in ``reference``, if the scanning partner is its seller or buyer."""
    if not ctx.reference:
        raise ScanRefused(
            Reason("reference_required", "name the shipment (e.g. SH-2026-000001) as reference")
        )
    partner_id = ctx.location.site.partner_id
    party = {"seller": "order__seller_id", "buyer": "order__buyer_id"}[side]
    shipment = Shipment.objects.filter(number=ctx.reference, **{party: partner_id}).first()
    if shipment is None:
        raise ScanRefused(
            Reason("unknown_shipment", f"no shipment {ctx.reference} of yours to {ctx.action}")
        )
    return shipment


def _lock(shipment: Shipment) -> Shipment:
    """Lock the shipment row: scans of one shipment are counted one after the other."""
    return Shipment.objects.select_for_update(of=("self",)).get(pk=shipment.pk)


def _lot_lines(shipment: Shipment, ctx: ScanContext) -> list[ShipmentLine]:
    lines = list(shipment.lines.filter(batch=ctx.batch).order_by("id"))
    if not lines:
        raise ScanRefused(
            Reason(
                "not_allocated_lot",
                f"lot {ctx.batch.lot_number} is not on shipment {shipment.number}",
            )
        )
    return lines


def _scanned(partner_id: int, action: str, shipment: Shipment) -> list[ScanRecord]:
    return list(
        ScanRecord.objects.filter(
            partner_id=partner_id,
            action=action,
            verdict=ScanVerdict.ACCEPTED,
            outcome__shipment=shipment.number,
        ).only("quantity", "batch_id", "outcome")
    )


# --- pick ----------------------------------------------------------------------------------


def pick(ctx: ScanContext) -> dict[str, Any]:
    shipment = _shipment(ctx, side="seller")
    serial_numbers = [ctx.serial_number] if ctx.serial_number else []
    services.shipment_pick(
        shipment=shipment,
        batch=ctx.batch,
        quantity=ctx.units,
        location=ctx.location,
        actor=ctx.actor,
        reason=ctx.reason_text(f"picked lot {ctx.batch.lot_number} for {shipment.number}"),
        serials=serial_numbers,
    )
    if ctx.serial_number:
        serial = ctx.serial
        if serial is None:  # the manufacturer labels its own packs: the first pick registers it
            (serial,) = stock.serial_commission(
                batch=ctx.batch,
                serial_numbers=serial_numbers,
                actor=ctx.actor,
                reason=ctx.reason_text("commissioned at its first pick"),
            )
        ctx.serial = stock.serial_reserve(
            serial=serial,
            shipment_reference=shipment.number,
            actor=ctx.actor,
            reason=ctx.reason_text(f"picked for {shipment.number}"),
        )
    lines = list(shipment.lines.filter(batch=ctx.batch))
    shipment.refresh_from_db(fields=["status"])
    return {
        "shipment": shipment.number,
        "shipment_status": shipment.status,
        "picked": sum(line.picked_quantity for line in lines),
        "of": sum(line.quantity for line in lines),
    }


# --- ship ----------------------------------------------------------------------------------


def ship(ctx: ScanContext) -> dict[str, Any]:
    shipment = _lock(_shipment(ctx, side="seller"))
    if shipment.status not in SHIPPABLE:
        raise ScanRefused(
            Reason(
                "invalid_transition",
                f"shipment {shipment.number} is {shipment.status}: nothing is loaded on it now",
            )
        )
    lines = _lot_lines(shipment, ctx)
    dispatched = shipment.status == ShipmentStatus.DISPATCHED
    expected = sum(line.quantity if dispatched else line.picked_quantity for line in lines)
    if not expected:
        raise ScanRefused(
            Reason(
                "not_picked",
                f"lot {ctx.batch.lot_number} is not picked for {shipment.number} yet",
            )
        )
    confirmed = sum(
        record.quantity or 0
        for record in _scanned(ctx.location.site.partner_id, ScanAction.SHIP, shipment)
        if record.batch_id == ctx.batch.pk
    )
    if confirmed + ctx.units > expected:
        raise ScanRefused(
            Reason(
                "quantity_exceeds_expected",
                f"lot {ctx.batch.lot_number}: {confirmed} of {expected} units are loaded on "
                f"{shipment.number} already; {ctx.units} more is too many",
            )
        )
    if ctx.serial is not None:
        picked = {number for line in lines for number in line.serials}
        if picked and ctx.serial.serial_number not in picked:
            raise ScanRefused(
                Reason(
                    "serial_not_picked",
                    f"serial {ctx.serial.serial_number} was not picked for {shipment.number}",
                )
            )
        ctx.serial = stock.serial_transition(
            serial=ctx.serial,
            to_state=SerialState.SHIPPED,
            actor=ctx.actor,
            reason=ctx.reason_text(f"shipped on {shipment.number}"),
            shipment_reference=shipment.number,
        )
    return {
        "shipment": shipment.number,
        "shipment_status": shipment.status,
        "confirmed": confirmed + ctx.units,
        "of": expected,
    }


# --- receive -------------------------------------------------------------------------------


def receive(ctx: ScanContext) -> dict[str, Any]:
    package = None
    if ctx.reading.sscc and not ctx.reading.gtin:
        shipment, package = _package_shipment(ctx)
    else:
        shipment = _shipment(ctx, side="buyer")
    shipment = _lock(shipment)
    if shipment.status == ShipmentStatus.RECEIVED:
        if _left_in_transit(ctx, shipment):
            return _identify_after_receipt(ctx, shipment)
        raise ScanRefused(
            Reason("already_received", f"shipment {shipment.number} was received already")
        )
    if shipment.status not in RECEIVABLE:
        raise ScanRefused(
            Reason(
                "not_dispatched",
                f"shipment {shipment.number} is {shipment.status}: it has not been dispatched",
            )
        )
    _require_destination(ctx, shipment)
    # The shipment was dispatched (checked above): its shipped lines are those with units.
    lines = list(shipment.lines.shipped().select_related("batch").order_by("id"))
    expected: dict[int, int] = defaultdict(int)
    for line in lines:
        expected[line.batch_id] += line.quantity
    received: dict[int, int] = defaultdict(int)
    partner_id = ctx.location.site.partner_id
    earlier = _scanned(partner_id, ScanAction.RECEIVE, shipment)
    for record in earlier:
        for batch_id, units in record.outcome.get("units", {}).items():
            received[int(batch_id)] += units
    units = _units(ctx, package, expected, earlier)
    for batch_id, quantity in units.items():
        if received[batch_id] + quantity > expected[batch_id]:
            lot = next(line.batch for line in lines if line.batch_id == batch_id)
            raise ScanRefused(
                Reason(
                    "quantity_exceeds_expected",
                    f"lot {lot.lot_number}: {received[batch_id]} of {expected[batch_id]} units "
                    f"of {shipment.number} are received already; {quantity} more is too many",
                )
            )
        received[batch_id] += quantity
    complete = all(received[batch_id] == total for batch_id, total in expected.items())
    buyer = shipment.order.buyer
    if complete:
        # First, before any other write: the receipt locks every balance it moves.
        services.shipment_receive(
            shipment=shipment,
            lines=[
                {"line": line.pk, "received_quantity": line.quantity, "damaged_quantity": 0}
                for line in lines
            ],
            actor=ctx.actor,
            reason=ctx.reason_text(f"every unit of {shipment.number} scanned in"),
        )
    if ctx.serial is not None:
        if ctx.serial.shipment_reference != shipment.number:
            raise ScanRefused(
                Reason(
                    "serial_not_on_shipment",
                    f"serial {ctx.serial.serial_number} did not travel on {shipment.number}",
                )
            )
        ctx.serial = _receive_serial(ctx, ctx.serial, shipment)
    if complete:
        for serial in Serial.objects.filter(shipment_reference=shipment.number).order_by("pk"):
            _receive_serial(ctx, serial, shipment)
    return {
        "shipment": shipment.number,
        "sscc": package.sscc if package else None,
        "units": {str(batch_id): quantity for batch_id, quantity in units.items()},
        "received": {str(batch_id): received[batch_id] for batch_id in expected},
        "expected": {str(batch_id): total for batch_id, total in expected.items()},
        "complete": complete,
        "receipt_posted": complete,
        "buyer": buyer.pk,
    }


def _package_shipment(ctx: ScanContext):
    sscc = ctx.reading.sscc
    try:
        package = services.package_by_sscc(sscc)
    except NotFound:
        package = None
    partner_id = ctx.location.site.partner_id
    if package is None or package.shipment.order.buyer_id != partner_id:
        raise ScanRefused(Reason("unknown_sscc", f"no package SSCC {sscc} is on its way to you"))
    if ctx.reference and ctx.reference != package.shipment.number:
        raise ScanRefused(
            Reason(
                "package_not_on_shipment",
                f"SSCC {sscc} belongs to {package.shipment.number}, not to {ctx.reference}",
            )
        )
    return package.shipment, package


def _units(ctx, package, expected: dict[int, int], earlier: list[ScanRecord]) -> dict[int, int]:
    """Units this scan receives, per lot: a package's contents, or the scanned pack's units."""
    if package is None:
        if ctx.batch.pk not in expected:
            raise ScanRefused(
                Reason(
                    "lot_not_expected",
                    f"lot {ctx.batch.lot_number} is not on shipment {ctx.reference}",
                )
            )
        return {ctx.batch.pk: ctx.units}
    if any(record.outcome.get("sscc") == package.sscc for record in earlier):
        raise ScanRefused(
            Reason("package_already_received", f"SSCC {package.sscc} was received already")
        )
    units: dict[int, int] = defaultdict(int)
    for package_line in package.lines.select_related("shipment_line"):
        units[package_line.shipment_line.batch_id] += package_line.quantity
    total = sum(units.values())
    if ctx.requested_quantity is not None and ctx.requested_quantity != total:
        raise ScanRefused(
            Reason(
                "quantity_mismatch",
                f"SSCC {package.sscc} holds {total} units; {ctx.requested_quantity} stated",
            )
        )
    return dict(units)


def _require_destination(ctx: ScanContext, shipment: Shipment) -> None:
    if ctx.location.site_id != shipment.to_site_id:
        raise ScanRefused(
            Reason(
                "wrong_location",
                f"shipment {shipment.number} is delivered to {shipment.to_site.name}, "
                f"not to {ctx.location}",
            )
        )


def _left_in_transit(ctx: ScanContext, shipment: Shipment) -> bool:
    """A pack of this shipment still ``shipped`` after its receipt: its line arrived short or
    damaged, and the receipt could not say which packs came (orders.services)."""
    serial = ctx.serial
    return (
        serial is not None
        and serial.state == SerialState.SHIPPED
        and serial.shipment_reference == shipment.number
    )


def _identify_after_receipt(ctx: ScanContext, shipment: Shipment) -> dict[str, Any]:
    """Scanned at the buyer's site, the pack is there: it passes into the buyer's custody. Its
    unit was booked by the receipt already (sound or damaged); nothing moves in the ledger."""
    _require_destination(ctx, shipment)
    ctx.serial = _receive_serial(ctx, ctx.serial, shipment)
    return {
        "shipment": shipment.number,
        "serial": ctx.serial.serial_number,
        "identified_after_receipt": True,
        "receipt_posted": False,
    }


def _receive_serial(ctx: ScanContext, serial: Serial, shipment: Shipment) -> Serial:
    """The pack is in the buyer's custody now (shipped first, if it left without a ship scan)."""
    serial = Serial.objects.get(pk=serial.pk)  # the receipt just posted may have received it
    if serial.state == SerialState.RECEIVED and serial.holder_id == shipment.order.buyer_id:
        return serial
    if serial.state != SerialState.SHIPPED:
        serial = stock.serial_transition(
            serial=serial,
            to_state=SerialState.SHIPPED,
            actor=ctx.actor,
            reason=ctx.reason_text(f"left on {shipment.number} (not scanned at the dock)"),
        )
    return stock.serial_transition(
        serial=serial,
        to_state=SerialState.RECEIVED,
        actor=ctx.actor,
        reason=ctx.reason_text(f"received from {shipment.number}"),
        holder=shipment.order.buyer,
        shipment_reference="",
    )


SHIPMENT_HANDLERS: dict[str, Handler] = {
    ScanAction.RECEIVE: receive,
    ScanAction.PICK: pick,
    ScanAction.SHIP: ship,
}


class ScanViewSet(scan_api.ScanViewSet):
    """``/api/v1/scans/``: every scan action, the shipment ones included."""

    handlers = SHIPMENT_HANDLERS
