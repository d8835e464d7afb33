"""Products, lots (batches), and the stock ledger: append-only moves and the balances they drive."""

from __future__ import annotations

import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

from audit.history import HistoricalRecords, HistoryBypassRefused, RegulatedModel
from partners.models import Location, Partner, ProductCategory
from pharmadms.identifiers import validate_gtin14

# GS1 AI (10) batch/lot: up to 20 characters of GS1 character set 82 (no spaces).
lot_number_validator = RegexValidator(
    r"^[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}$",
    "a lot number is 1 to 20 GS1 characters: letters, digits and GS1 symbols, no spaces",
    code="invalid_lot_number",
)


class StorageClass(RegulatedModel):
    """A labelled storage condition (e.g. 2–8 °C) with its allowed temperature range."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    min_celsius = models.DecimalField(max_digits=5, decimal_places=2)
    max_celsius = models.DecimalField(max_digits=5, decimal_places=2)
    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "storage classes"
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_celsius__gt=F("min_celsius")), name="storage_class_range_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.min_celsius}–{self.max_celsius} °C)"


class ControlledSchedule(models.TextChoices):
    NONE = "", "Not controlled"
    CII = "CII", "Schedule II"
    CIII = "CIII", "Schedule III"
    CIV = "CIV", "Schedule IV"
    CV = "CV", "Schedule V"


class Product(RegulatedModel):
    """A trade item: one GTIN-14, one pack, made by one manufacturer."""

    gtin = models.CharField("GTIN", max_length=14, unique=True, validators=[validate_gtin14])
    name = models.CharField(max_length=200)
    manufacturer = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="products")
    category = models.CharField(max_length=20, choices=ProductCategory.choices)
    dosage_form = models.CharField(max_length=60)
    strength = models.CharField(max_length=60)
    pack_size = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    storage_class = models.ForeignKey(StorageClass, on_delete=models.PROTECT)
    controlled_schedule = models.CharField(
        max_length=4,
        choices=ControlledSchedule.choices,
        default=ControlledSchedule.NONE,
        blank=True,
    )
    shelf_life_months = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(240)]
    )
    is_active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(gtin__regex=r"^[0-9]{14}$"), name="product_gtin_14_digits"
            ),
            models.CheckConstraint(condition=Q(pack_size__gte=1), name="product_pack_size_1"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.strength} ({self.gtin})"

    @property
    def is_controlled(self) -> bool:
        return bool(self.controlled_schedule)


class BatchStatus(models.TextChoices):
    QUARANTINE = "quarantine", "Quarantine"
    RELEASED = "released", "Released"
    REJECTED = "rejected", "Rejected"
    RECALLED = "recalled", "Recalled"


# Allowed QA status transitions; expiry is derived from expires_on, never a status.
BATCH_TRANSITIONS: dict[str, frozenset[str]] = {
    BatchStatus.QUARANTINE: frozenset(
        {BatchStatus.RELEASED, BatchStatus.REJECTED, BatchStatus.RECALLED}
    ),
    BatchStatus.RELEASED: frozenset({BatchStatus.QUARANTINE, BatchStatus.RECALLED}),
    BatchStatus.REJECTED: frozenset(),
    BatchStatus.RECALLED: frozenset(),
}


class Batch(RegulatedModel):
    """A lot of one product, with its QA status. Expired is a date fact, not a status."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="batches")
    lot_number = models.CharField(max_length=20, validators=[lot_number_validator])
    manufactured_on = models.DateField()
    expires_on = models.DateField()
    status = models.CharField(
        max_length=12, choices=BatchStatus.choices, default=BatchStatus.QUARANTINE
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name = "batch (lot)"
        verbose_name_plural = "batches (lots)"
        ordering = ["product__name", "expires_on", "lot_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["product", "lot_number"],
                name="batch_lot_unique",
                violation_error_code="duplicate_lot",
                violation_error_message="this product already has a lot with this number",
            ),
            models.CheckConstraint(
                condition=Q(expires_on__gt=F("manufactured_on")),
                name="batch_expires_after_manufacture",
                violation_error_code="expiry_before_manufacture",
                violation_error_message="expiry must come after manufacture",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product.name} lot {self.lot_number}"

    def clean(self) -> None:
        if self.manufactured_on and self.expires_on and self.expires_on <= self.manufactured_on:
            raise ValidationError(
                {
                    "expires_on": ValidationError(
                        "expiry must come after manufacture", code="expiry_before_manufacture"
                    )
                }
            )

    def is_expired_on(self, day: datetime.date) -> bool:
        return self.expires_on < day

    def remaining_shelf_life_days(self, day: datetime.date) -> int:
        return (self.expires_on - day).days


class MoveKind(models.TextChoices):
    RECEIPT = "receipt", "Receipt"
    TRANSFER = "transfer", "Transfer"
    SHIPMENT = "shipment", "Shipment (dispatch)"
    DELIVERY = "delivery", "Delivery (receipt by customer)"
    RETURN = "return", "Return"
    ADJUSTMENT = "adjustment", "Adjustment"
    DESTRUCTION = "destruction", "Destruction"
    DISPENSING = "dispensing", "Dispensing (a verified pack handed to a patient)"


class AppendOnlyQuerySet(models.QuerySet):
    """Ledger rows are written one by one through the ledger service and never changed."""

    def update(self, **kwargs):
        raise HistoryBypassRefused(f"{self.model._meta.label} rows are append-only")

    def delete(self):
        raise HistoryBypassRefused(f"{self.model._meta.label} rows are append-only")

    delete.queryset_only = True

    def bulk_update(self, *args, **kwargs):
        raise HistoryBypassRefused(f"{self.model._meta.label} rows are append-only")

    def bulk_create(self, *args, **kwargs):
        raise HistoryBypassRefused(
            f"{self.model._meta.label} rows are posted through batches.services, one by one"
        )


class StockMove(models.Model):
    """One movement of units of a lot between two locations; append-only, corrected by new moves.

    ``from_location`` is empty for stock entering the network (production receipt, positive
    adjustment); ``to_location`` is empty for stock leaving it (destruction, negative adjustment,
    dispensing).
    """

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="moves")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    from_location = models.ForeignKey(
        Location, on_delete=models.PROTECT, null=True, blank=True, related_name="moves_out"
    )
    to_location = models.ForeignKey(
        Location, on_delete=models.PROTECT, null=True, blank=True, related_name="moves_in"
    )
    kind = models.CharField(max_length=12, choices=MoveKind.choices)
    reference = models.CharField(max_length=100, blank=True)
    reason = models.TextField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(db_index=True)

    APPEND_ONLY = True  # the database refuses UPDATE and DELETE (audit.append_only)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="move_quantity_positive"),
            models.CheckConstraint(
                condition=Q(from_location__isnull=False) | Q(to_location__isnull=False),
                name="move_has_a_location",
            ),
            models.CheckConstraint(
                condition=~Q(from_location=F("to_location")), name="move_between_two_locations"
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="move_has_a_reason"),
        ]
        indexes = [models.Index(fields=["batch", "created_at"])]

    def __str__(self) -> str:
        source, target = self.from_location_id or "outside", self.to_location_id or "outside"
        return f"{self.kind} {self.quantity} × lot #{self.batch_id}: {source} → {target}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise HistoryBypassRefused("stock moves are append-only: post a correcting move")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise HistoryBypassRefused("stock moves are append-only: post a correcting move")


class StockBalance(models.Model):
    """Units of a lot at a location: a projection of the moves, changed only with a move.

    Updated by batches.services under row locks; the CHECKs make the database itself refuse a
    negative balance or an over-allocation.
    """

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="balances")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="balances")
    on_hand = models.BigIntegerField(default=0)
    allocated = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["batch", "location"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "location"], name="balance_unique"),
            models.CheckConstraint(
                condition=Q(on_hand__gte=0), name="balance_on_hand_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(allocated__gte=0) & Q(allocated__lte=F("on_hand")),
                name="balance_allocated_within_on_hand",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.batch} @ {self.location}: {self.on_hand} ({self.allocated} allocated)"

    @property
    def available(self) -> int:
        return self.on_hand - self.allocated


class AllocationStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    RELEASED = "released", "Released"
    CONSUMED = "consumed", "Consumed by a shipment"


class StockAllocation(RegulatedModel):
    """Units of a lot at a location reserved for a reference (an order line), FEFO-chosen."""

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="allocations")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="allocations")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    reference = models.CharField(max_length=100)
    status = models.CharField(
        max_length=10, choices=AllocationStatus.choices, default=AllocationStatus.ACTIVE
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="allocation_quantity_positive"
            ),
        ]
        indexes = [models.Index(fields=["reference", "status"])]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.batch} @ {self.location} for {self.reference}"


# --- serial numbers (GS1 AI 21) ------------------------------------------------------------

# GS1 AI (21) serial number: up to 20 characters of GS1 character set 82.
serial_number_validator = RegexValidator(
    r"^[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}$",
    "a serial number is 1 to 20 GS1 characters: letters, digits and GS1 symbols, no spaces",
    code="invalid_serial_number",
)


class SerialState(models.TextChoices):
    COMMISSIONED = "commissioned", "Commissioned (labelled by its manufacturer)"
    SHIPPED = "shipped", "Shipped (on its way to a customer)"
    RECEIVED = "received", "Received (checked in by a customer)"
    DISPENSED = "dispensed", "Dispensed (decommissioned at the pharmacy)"
    DECOMMISSIONED = "decommissioned", "Decommissioned (destroyed, stolen, sample, …)"


# A pack is shipped from where it was commissioned or received, never while already shipped;
# dispensed and decommissioned are final (DSCSA / EU FMD: a decommissioned identifier is dead).
SERIAL_TRANSITIONS: dict[str, frozenset[str]] = {
    SerialState.COMMISSIONED: frozenset(
        {SerialState.SHIPPED, SerialState.DISPENSED, SerialState.DECOMMISSIONED}
    ),
    SerialState.SHIPPED: frozenset({SerialState.RECEIVED, SerialState.DECOMMISSIONED}),
    SerialState.RECEIVED: frozenset(
        {SerialState.SHIPPED, SerialState.DISPENSED, SerialState.DECOMMISSIONED}
    ),
    SerialState.DISPENSED: frozenset(),
    SerialState.DECOMMISSIONED: frozenset(),
}
SERIAL_FINAL_STATES = frozenset({SerialState.DISPENSED, SerialState.DECOMMISSIONED})


class Serial(RegulatedModel):
    """One serialised pack of a lot (GS1 AI 21) and where it stands in its life.

    Changed only through batches.services (serial_*): each change is a history row naming who,
    when and why, so the pack's path — commissioned, shipped, received, dispensed — is its
    history.
    """

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="serials")
    serial_number = models.CharField(max_length=20, validators=[serial_number_validator])
    state = models.CharField(
        max_length=16, choices=SerialState.choices, default=SerialState.COMMISSIONED
    )
    holder = models.ForeignKey(
        Partner,
        on_delete=models.PROTECT,
        related_name="serials_held",
        help_text="the partner in whose custody the pack is",
    )
    shipment_reference = models.CharField(
        max_length=100,
        blank=True,
        help_text="the shipment the pack is picked for or travelling on (e.g. SH-2026-000001)",
    )
    decommission_reason = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["batch", "serial_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "serial_number"],
                name="serial_unique_per_lot",
                violation_error_code="duplicate_serial",
                violation_error_message="this lot already has a pack with this serial number",
            ),
        ]
        indexes = [models.Index(fields=["shipment_reference"])]

    def __str__(self) -> str:
        return f"{self.batch} serial {self.serial_number} ({self.state})"


# --- scans ---------------------------------------------------------------------------------


class ScanAction(models.TextChoices):
    RECEIVE = "receive", "Receive"
    PUTAWAY = "putaway", "Put away"
    PICK = "pick", "Pick"
    SHIP = "ship", "Ship"
    COUNT = "count", "Count"
    VERIFY = "verify", "Verify"


class ScanVerdict(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    REFUSED = "refused", "Refused"


class ScanRecord(models.Model):
    """One barcode scan as read and answered: who, where, when, the raw code, the verdict.

    Append-only and sealed into the audit chain, like a stock move. The raw code is kept
    escaped (control characters as ``\\xNN``) and bounded; its length and SHA-256 identify the
    original exactly. ``scan_id`` (the client's) makes a retried scan return its first answer.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="scans")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="scans")
    created_at = models.DateTimeField(db_index=True)
    scan_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=8, choices=ScanAction.choices)
    reference = models.CharField(max_length=100, blank=True)
    quantity = models.PositiveIntegerField(null=True, blank=True)
    raw_code = models.CharField(max_length=600, help_text="the code as scanned, escaped")
    raw_length = models.PositiveIntegerField()
    raw_sha256 = models.CharField(max_length=64)
    verdict = models.CharField(max_length=8, choices=ScanVerdict.choices)
    reasons = models.JSONField(default=list, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    parsed = models.JSONField(default=dict, blank=True)
    outcome = models.JSONField(default=dict, blank=True)
    product = models.ForeignKey(
        Product, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    batch = models.ForeignKey(
        Batch, on_delete=models.PROTECT, null=True, blank=True, related_name="scans"
    )
    serial = models.ForeignKey(
        Serial, on_delete=models.PROTECT, null=True, blank=True, related_name="scans"
    )

    APPEND_ONLY = True  # the database refuses UPDATE and DELETE (audit.append_only)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "scan_id"],
                condition=~Q(scan_id=""),
                name="scan_id_once_per_user",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "created_at"]),
            models.Index(fields=["partner", "verdict", "created_at"]),
            models.Index(fields=["reference", "action"]),
        ]

    def __str__(self) -> str:
        return f"{self.action} scan #{self.pk}: {self.verdict}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise HistoryBypassRefused("scan records are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise HistoryBypassRefused("scan records are append-only")


# --- cycle counts --------------------------------------------------------------------------


class CountStatus(models.TextChoices):
    PENDING = "pending", "Awaiting QA"
    APPROVED = "approved", "Approved (adjustment posted)"
    REJECTED = "rejected", "Rejected (recount)"


class CountDiscrepancy(RegulatedModel):
    """A cycle count that found other than the ledger holds: an adjustment awaiting QA.

    ``expected`` is what the ledger held when the count was taken; approving posts an
    adjustment of ``counted - expected`` through the ledger (stock_adjust), so units that moved
    after the count are not counted twice.
    """

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="count_discrepancies")
    location = models.ForeignKey(
        Location, on_delete=models.PROTECT, related_name="count_discrepancies"
    )
    expected = models.BigIntegerField()
    counted = models.BigIntegerField(validators=[MinValueValidator(0)])
    status = models.CharField(
        max_length=10, choices=CountStatus.choices, default=CountStatus.PENDING
    )
    counted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    counted_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    adjustment = models.ForeignKey(
        StockMove, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "count discrepancies"
        ordering = ["-counted_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "location"],
                condition=Q(status="pending"),
                name="count_one_pending_per_place",
            ),
            models.CheckConstraint(condition=~Q(expected=F("counted")), name="count_differs"),
            models.CheckConstraint(condition=Q(counted__gte=0), name="count_not_negative"),
        ]

    def __str__(self) -> str:
        return f"count of {self.batch} @ {self.location}: {self.counted} vs {self.expected}"

    @property
    def difference(self) -> int:
        return self.counted - self.expected
