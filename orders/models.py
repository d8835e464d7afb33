"""Distribution agreements (territory, price list, targets) and the orders placed under them."""

from __future__ import annotations

import datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

from audit.history import HistoricalRecords, RegulatedModel, RegulatedQuerySet
from batches.models import Product
from partners.models import Partner, Site
from pharmadms import clock
from pharmadms.numbering import YearCounter

currency_validator = RegexValidator(
    r"^[A-Z]{3}$", "an ISO 4217 currency code: three capital letters", code="invalid_currency"
)


class AgreementStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    ENDED = "ended", "Ended"


# An ended agreement is final; a suspended one may be resumed.
AGREEMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    AgreementStatus.ACTIVE: frozenset({AgreementStatus.SUSPENDED, AgreementStatus.ENDED}),
    AgreementStatus.SUSPENDED: frozenset({AgreementStatus.ACTIVE, AgreementStatus.ENDED}),
    AgreementStatus.ENDED: frozenset(),
}


class Agreement(RegulatedModel):
    """A supplier's agreement to supply a customer: where, at what price, with how much shelf life.

    ``territory`` lists region codes; a code covers the region equal to it and its subdivisions
    ("DE" covers "DE-BY").
    """

    supplier = models.ForeignKey(
        Partner, on_delete=models.PROTECT, related_name="agreements_as_supplier"
    )
    customer = models.ForeignKey(
        Partner, on_delete=models.PROTECT, related_name="agreements_as_customer"
    )
    territory = models.JSONField(
        default=list, blank=True, help_text='region codes, e.g. ["DE-BY", "AT"]'
    )
    min_remaining_shelf_life_days = models.PositiveIntegerField(
        default=0, help_text="the least shelf life, in days, a lot must keep when allocated"
    )
    valid_from = models.DateField()
    valid_until = models.DateField()
    status = models.CharField(
        max_length=10, choices=AgreementStatus.choices, default=AgreementStatus.ACTIVE
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["supplier__name", "customer__name", "valid_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_until__gte=F("valid_from")),
                name="agreement_valid_until_after_from",
                violation_error_code="invalid_period",
                violation_error_message="an agreement cannot end before it starts",
            ),
            models.CheckConstraint(
                condition=~Q(supplier=F("customer")),
                name="agreement_between_two_partners",
                violation_error_code="same_partner",
                violation_error_message="supplier and customer must be two partners",
            ),
            models.CheckConstraint(
                condition=Q(min_remaining_shelf_life_days__gte=0),
                name="agreement_shelf_life_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.supplier.name} → {self.customer.name} ({self.valid_from}–{self.valid_until})"

    def clean(self) -> None:
        territory = self.territory
        if (
            not isinstance(territory, list)
            or not territory
            or not all(isinstance(code, str) and code.strip() for code in territory)
        ):
            raise ValidationError(
                {"territory": ValidationError("a list of region codes", code="invalid_territory")}
            )
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValidationError(
                {
                    "valid_until": ValidationError(
                        "an agreement cannot end before it starts", code="invalid_period"
                    )
                }
            )

    def is_in_force_on(self, day: datetime.date) -> bool:
        return self.status == AgreementStatus.ACTIVE and self.valid_from <= day <= self.valid_until

    def covers_region(self, region: str) -> bool:
        return any(region == code or region.startswith(f"{code}-") for code in self.territory)


class AgreementPrice(RegulatedModel):
    """The unit price of one product under one agreement (one currency per agreement)."""

    agreement = models.ForeignKey(Agreement, on_delete=models.PROTECT, related_name="prices")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="agreement_prices")
    unit_price = models.DecimalField(
        max_digits=12, decimal_places=4, validators=[MinValueValidator(Decimal("0.0001"))]
    )
    currency = models.CharField(max_length=3, validators=[currency_validator])
    history = HistoricalRecords()

    class Meta:
        ordering = ["agreement", "product__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["agreement", "product"],
                name="agreement_price_unique_per_product",
                violation_error_code="duplicate_price",
                violation_error_message="this agreement already prices this product",
            ),
            models.CheckConstraint(condition=Q(unit_price__gt=0), name="agreement_price_positive"),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="agreement_price_currency_iso"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product.name}: {self.unit_price} {self.currency}"


class SalesTarget(RegulatedModel):
    """What the parties aim to sell under an agreement in a period: units and/or value."""

    agreement = models.ForeignKey(Agreement, on_delete=models.PROTECT, related_name="targets")
    period_start = models.DateField()
    period_end = models.DateField()
    product = models.ForeignKey(
        Product, on_delete=models.PROTECT, null=True, blank=True, related_name="sales_targets"
    )
    target_quantity = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )
    target_value = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01"))],
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["agreement", "period_start"]
        constraints = [
            models.CheckConstraint(
                condition=Q(period_end__gte=F("period_start")),
                name="sales_target_period_ordered",
                violation_error_code="invalid_period",
                violation_error_message="a target period cannot end before it starts",
            ),
            models.CheckConstraint(
                condition=Q(target_quantity__isnull=False) | Q(target_value__isnull=False),
                name="sales_target_has_a_target",
                violation_error_code="target_required",
                violation_error_message="a target needs a quantity, a value or both",
            ),
            models.CheckConstraint(
                condition=Q(target_quantity__isnull=True) | Q(target_quantity__gt=0),
                name="sales_target_quantity_positive",
            ),
            models.CheckConstraint(
                condition=Q(target_value__isnull=True) | Q(target_value__gt=0),
                name="sales_target_value_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"target {self.period_start}–{self.period_end} of {self.agreement}"


class OrderStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    CONFIRMED = "confirmed", "Confirmed"
    ALLOCATED = "allocated", "Allocated"
    PICKING = "picking", "Picking"
    SHIPPED = "shipped", "Shipped"
    DELIVERED = "delivered", "Delivered"
    CLOSED = "closed", "Closed"
    CANCELLED = "cancelled", "Cancelled"


# The order lifecycle in one table. "allocated" means allocation has run: lines may still carry
# backorders, and allocating again (allocated → allocated) tries to fill them.
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.DRAFT: frozenset({OrderStatus.SUBMITTED, OrderStatus.CANCELLED}),
    OrderStatus.SUBMITTED: frozenset({OrderStatus.CONFIRMED, OrderStatus.CANCELLED}),
    OrderStatus.CONFIRMED: frozenset({OrderStatus.ALLOCATED, OrderStatus.CANCELLED}),
    # Allocation runs again only from "allocated" (never while a shipment is being picked).
    # Cancelling the backorder of a partly shipped order closes it out as its shipments
    # dictate: shipped, or delivered once every shipment is received.
    OrderStatus.ALLOCATED: frozenset(
        {
            OrderStatus.ALLOCATED,
            OrderStatus.PICKING,
            OrderStatus.SHIPPED,
            OrderStatus.DELIVERED,
            OrderStatus.CANCELLED,
        }
    ),
    # A dispatch that leaves backorders (or short-picked units) returns the order to
    # "allocated" (only a dispatch does): the rest is allocated again when stock arrives and
    # goes on a further shipment.
    OrderStatus.PICKING: frozenset(
        {OrderStatus.SHIPPED, OrderStatus.ALLOCATED, OrderStatus.CANCELLED}
    ),
    OrderStatus.SHIPPED: frozenset({OrderStatus.DELIVERED}),
    OrderStatus.DELIVERED: frozenset({OrderStatus.CLOSED}),
    OrderStatus.CLOSED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


class OrderNumberCounter(YearCounter):
    """The last order number issued in a year (see pharmadms.numbering)."""


class Order(RegulatedModel):
    """An order from a buyer to a seller, shipped to one of the buyer's sites."""

    number = models.CharField(max_length=20, unique=True, help_text="e.g. SO-2026-000123")
    buyer = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="orders_placed")
    seller = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="orders_received")
    ship_to = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=10, choices=OrderStatus.choices, default=OrderStatus.DRAFT)
    agreement = models.ForeignKey(
        Agreement,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="orders",
        help_text="the agreement in force at submission, whose prices the lines carry",
    )
    customer_reference = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(
        default=clock.now, editable=False, help_text="the order date (the business clock)"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(buyer=F("seller")),
                name="order_between_two_partners",
                violation_error_code="same_partner",
                violation_error_message="buyer and seller must be two partners",
            ),
            models.CheckConstraint(
                condition=Q(number__regex=r"^SO-[0-9]{4}-[0-9]{6,}$"), name="order_number_format"
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.number} ({self.buyer.name} → {self.seller.name})"

    @property
    def has_backorders(self) -> bool:
        return any(line.quantity_backordered for line in self.lines.all())


class OrderLine(RegulatedModel):
    """One product of an order; its price comes from the agreement in force at submission."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="order_lines")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    unit_price = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    quantity_allocated = models.PositiveIntegerField(default=0)
    quantity_backordered = models.PositiveIntegerField(default=0)
    quantity_shipped = models.PositiveIntegerField(
        default=0, help_text="units dispatched to the buyer, over all of the order's shipments"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["order", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "product"],
                name="order_line_product_once",
                violation_error_code="duplicate_product",
                violation_error_message="this order already has a line for this product",
            ),
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="order_line_quantity_positive"
            ),
            models.CheckConstraint(
                condition=Q(unit_price__isnull=True) | Q(unit_price__gt=0),
                name="order_line_price_positive",
            ),
            models.CheckConstraint(
                condition=Q(quantity_allocated__gte=0)
                & Q(quantity_backordered__gte=0)
                & Q(
                    quantity__gte=F("quantity_allocated") + F("quantity_backordered"),
                ),
                name="order_line_allocated_within_quantity",
            ),
            models.CheckConstraint(
                condition=Q(quantity_shipped__gte=0)
                & Q(quantity_shipped__lte=F("quantity_allocated")),
                name="order_line_shipped_within_allocated",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.product.name} ({self.order.number})"

    @property
    def quantity_open(self) -> int:
        """Units still to ship: allocated and waiting for a shipment, or backordered."""
        return self.quantity_allocated - self.quantity_shipped + self.quantity_backordered

    @property
    def allocation_reference(self) -> str:
        """The reference of this line's stock allocations: the link from the ledger back here."""
        return f"order-line:{self.pk}"

    @property
    def line_total(self) -> Decimal | None:
        return None if self.unit_price is None else self.unit_price * self.quantity


# --- shipments -----------------------------------------------------------------------------


class ShipmentStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    PICKED = "picked", "Picked"
    DISPATCHED = "dispatched", "Dispatched"
    DELIVERED = "delivered", "Delivered (by the carrier)"
    RECEIVED = "received", "Received (checked in by the buyer)"


# The shipment lifecycle in one table. A receipt checks the goods in, so a dispatched shipment
# may be received without a separate delivery step.
SHIPMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    ShipmentStatus.PLANNED: frozenset({ShipmentStatus.PICKED, ShipmentStatus.DISPATCHED}),
    ShipmentStatus.PICKED: frozenset({ShipmentStatus.DISPATCHED}),
    ShipmentStatus.DISPATCHED: frozenset({ShipmentStatus.DELIVERED, ShipmentStatus.RECEIVED}),
    ShipmentStatus.DELIVERED: frozenset({ShipmentStatus.RECEIVED}),
    ShipmentStatus.RECEIVED: frozenset(),
}


class ShipmentNumberCounter(YearCounter):
    """The last shipment number issued in a year (see pharmadms.numbering)."""


class Shipment(RegulatedModel):
    """Goods of one order on their way from a site of the seller to the buyer's ship-to site."""

    number = models.CharField(max_length=20, unique=True, help_text="e.g. SH-2026-000001")
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="shipments")
    from_site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="shipments_out")
    to_site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="shipments_in")
    in_transit_location = models.ForeignKey(
        "partners.Location",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="the seller's in-transit location the goods sit in between dispatch and receipt",
    )
    carrier = models.CharField(max_length=100, blank=True)
    carrier_partner = models.ForeignKey(
        Partner,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="shipments_carried",
        help_text="the logistics provider carrying the goods; its users confirm delivery",
    )
    tracking_number = models.CharField(max_length=100, blank=True)
    status = models.CharField(
        max_length=10, choices=ShipmentStatus.choices, default=ShipmentStatus.PLANNED
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=clock.now, editable=False)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(
        null=True, blank=True, help_text="when the carrier confirmed delivery"
    )
    received_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(number__regex=r"^SH-[0-9]{4}-[0-9]{6,}$"),
                name="shipment_number_format",
            ),
            models.CheckConstraint(
                condition=~Q(from_site=F("to_site")), name="shipment_between_two_sites"
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.number} ({self.order.number})"


class Discrepancy(models.TextChoices):
    NONE = "none", "None"
    SHORT = "short", "Short (fewer units arrived)"
    OVER = "over", "Over (more units arrived)"
    DAMAGED = "damaged", "Damaged"


# A shipment has sent its goods in these states.
SHIPMENT_SENT_STATUSES = (
    ShipmentStatus.DISPATCHED,
    ShipmentStatus.DELIVERED,
    ShipmentStatus.RECEIVED,
)
# A shipment being prepared: its lines hold their allocations until it is dispatched.
SHIPMENT_OPEN_STATUSES = (ShipmentStatus.PLANNED, ShipmentStatus.PICKED)


class ShipmentLineQuerySet(RegulatedQuerySet):
    def shipped(self) -> ShipmentLineQuerySet:
        """Lines whose units actually left: of a dispatched (delivered, received) shipment and
        with a quantity above zero. A line of which nothing was picked keeps quantity 0 after
        dispatch: it shipped nothing, so no reader (transaction information, previous owners,
        EPCIS, events, sales, returns) may take it for a shipment of its lot.

        The one place that decides what "shipped" means for a shipment line.
        """
        return self.filter(quantity__gt=0, shipment__status__in=SHIPMENT_SENT_STATUSES)


class ShipmentLine(RegulatedModel):
    """Units of one lot sent on a shipment: an edge of the trace graph (which lot went from whom
    to whom), linked to the allocation it consumes and to the order line it fills.

    Read the edges with ``ShipmentLine.objects.shipped()`` (or ``shipment.lines.shipped()``):
    a planned line has not shipped yet, and a line of which nothing was picked never did.
    """

    objects = models.Manager.from_queryset(ShipmentLineQuerySet)()

    shipment = models.ForeignKey(Shipment, on_delete=models.PROTECT, related_name="lines")
    order_line = models.ForeignKey(
        OrderLine, on_delete=models.PROTECT, related_name="shipment_lines"
    )
    batch = models.ForeignKey(
        "batches.Batch", on_delete=models.PROTECT, related_name="shipment_lines"
    )
    quantity = models.PositiveIntegerField(
        help_text="units planned; once dispatched, units shipped (the picked units when the "
        "shipment was picked; 0 for a planned line of which nothing was picked)"
    )
    picked_quantity = models.PositiveIntegerField(
        default=0, help_text="units confirmed picked (scanned) for this line"
    )
    serials = models.JSONField(
        default=list, blank=True, help_text="serial numbers (GS1 AI 21) of the units picked"
    )
    from_location = models.ForeignKey(
        "partners.Location", on_delete=models.PROTECT, related_name="shipment_lines_out"
    )
    allocation = models.ForeignKey(
        "batches.StockAllocation", on_delete=models.PROTECT, related_name="shipment_lines"
    )
    received_quantity = models.PositiveIntegerField(
        null=True, blank=True, help_text="sound units checked in; empty until received"
    )
    damaged_quantity = models.PositiveIntegerField(default=0)
    discrepancy = models.CharField(
        max_length=8, choices=Discrepancy.choices, default=Discrepancy.NONE
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["shipment", "id"]
        constraints = [
            # Only a line of which nothing was picked may ship nothing.
            models.CheckConstraint(
                condition=Q(quantity__gt=0) | Q(picked_quantity=0),
                name="shipment_line_quantity_positive",
            ),
            models.CheckConstraint(
                condition=Q(picked_quantity__lte=F("quantity")),
                name="shipment_line_picked_within_quantity",
            ),
            models.UniqueConstraint(
                fields=["shipment", "allocation"], name="shipment_line_allocation_once"
            ),
            models.CheckConstraint(
                condition=Q(received_quantity__isnull=True)
                | Q(quantity__gte=F("received_quantity") + F("damaged_quantity")),
                name="shipment_line_received_within_shipped",
            ),
        ]
        indexes = [models.Index(fields=["batch", "shipment"])]

    def __str__(self) -> str:
        return f"{self.quantity} × lot #{self.batch_id} on {self.shipment.number}"

    @property
    def short_quantity(self) -> int:
        if self.received_quantity is None:
            return 0
        return self.quantity - self.received_quantity - self.damaged_quantity


# --- packages (SSCC) ------------------------------------------------------------------------


sscc_validator = RegexValidator(r"^[0-9]{18}$", "an SSCC is 18 digits", code="invalid_sscc")


class SsccCounter(models.Model):
    """The last serial reference issued under a GS1 company prefix; locked while the next one
    is taken.

    Not regulated: the codes it hands out are recorded in each package's own history.
    """

    company_prefix = models.CharField(max_length=12, primary_key=True)
    last_serial = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.company_prefix}: {self.last_serial}"


class PackageStatus(models.TextChoices):
    PACKED = "packed", "Packed"
    UNPACKED = "unpacked", "Unpacked (void: its units count in no package)"


class ShipmentPackage(RegulatedModel):
    """A logistic unit (case, pallet) of a shipment, labelled with its SSCC (GS1 AI 00).

    A package emptied before dispatch is marked ``unpacked``, never deleted: its SSCC stays
    issued (it is never handed out again) and its contents stay on record, but they count in
    no package any more.
    """

    shipment = models.ForeignKey(Shipment, on_delete=models.PROTECT, related_name="packages")
    sscc = models.CharField(max_length=18, unique=True, validators=[sscc_validator])
    status = models.CharField(
        max_length=8, choices=PackageStatus.choices, default=PackageStatus.PACKED
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=clock.now, editable=False)
    unpacked_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["shipment", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(sscc__regex=r"^[0-9]{18}$"), name="shipment_package_sscc_format"
            ),
            models.CheckConstraint(
                condition=Q(status=PackageStatus.PACKED, unpacked_at__isnull=True)
                | Q(status=PackageStatus.UNPACKED, unpacked_at__isnull=False),
                name="shipment_package_unpacked_when",
            ),
        ]

    def __str__(self) -> str:
        return f"SSCC {self.sscc} on {self.shipment.number}"


class ShipmentPackageLine(RegulatedModel):
    """Units of one shipment line packed in a package."""

    package = models.ForeignKey(ShipmentPackage, on_delete=models.PROTECT, related_name="lines")
    shipment_line = models.ForeignKey(
        ShipmentLine, on_delete=models.PROTECT, related_name="package_lines"
    )
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    history = HistoricalRecords()

    class Meta:
        ordering = ["package", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="shipment_package_line_quantity_positive"
            ),
            models.UniqueConstraint(
                fields=["package", "shipment_line"], name="shipment_package_line_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} of line #{self.shipment_line_id} in {self.package.sscc}"


# --- returns -------------------------------------------------------------------------------


class ReturnReason(models.TextChoices):
    DAMAGED = "damaged", "Damaged"
    EXPIRED = "expired", "Expired"
    WRONG_ITEM = "wrong_item", "Wrong item"
    OVERSTOCK = "overstock", "Overstock"
    RECALL = "recall", "Recall"


# Reasons whose units never go back to saleable stock (EU GDP 6.3: only goods in their
# unopened, undamaged packaging, not expired and not recalled, may be resold).
NEVER_RESTOCKED = frozenset({ReturnReason.DAMAGED, ReturnReason.EXPIRED, ReturnReason.RECALL})


class ReturnStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    AUTHORISED = "authorised", "Authorised (RMA issued)"
    RECEIVED = "received", "Received (held in returns)"
    DISPOSED = "disposed", "Disposed (restocked or destroyed)"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


# The return lifecycle in one table: the seller authorises or rejects a request, the customer
# may withdraw it until the goods are back; received goods wait in returns for QA.
RETURN_TRANSITIONS: dict[str, frozenset[str]] = {
    ReturnStatus.REQUESTED: frozenset(
        {ReturnStatus.AUTHORISED, ReturnStatus.REJECTED, ReturnStatus.CANCELLED}
    ),
    ReturnStatus.AUTHORISED: frozenset({ReturnStatus.RECEIVED, ReturnStatus.CANCELLED}),
    ReturnStatus.RECEIVED: frozenset({ReturnStatus.DISPOSED}),
    ReturnStatus.DISPOSED: frozenset(),
    ReturnStatus.REJECTED: frozenset(),
    ReturnStatus.CANCELLED: frozenset(),
}

# A return in one of these states holds its units against the shipment line's returnable rest.
RETURN_ACTIVE_STATUSES = frozenset(
    {
        ReturnStatus.REQUESTED,
        ReturnStatus.AUTHORISED,
        ReturnStatus.RECEIVED,
        ReturnStatus.DISPOSED,
    }
)


class ReturnDisposition(models.TextChoices):
    RESTOCK = "restock", "Restock (back to saleable storage)"
    DESTROY = "destroy", "Destroy"


class ReturnNumberCounter(YearCounter):
    """The last return number issued in a year (see pharmadms.numbering)."""


class ReturnRequest(RegulatedModel):
    """A customer's request to send goods of one received shipment back to its seller.

    Units come back only against the shipment's lines (saleable-returns verification), into the
    seller's returns (or quarantine) location, and leave it only by a QA-signed disposition.
    """

    number = models.CharField(max_length=20, unique=True, help_text="e.g. RT-2026-000001")
    customer = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="returns_sent")
    seller = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="returns_received")
    shipment = models.ForeignKey(Shipment, on_delete=models.PROTECT, related_name="returns")
    status = models.CharField(
        max_length=10, choices=ReturnStatus.choices, default=ReturnStatus.REQUESTED
    )
    rma_number = models.CharField(
        max_length=40, blank=True, help_text="the seller's return authorisation number"
    )
    temperature_evidence = models.CharField(
        max_length=500,
        blank=True,
        help_text="for cold-chain goods: the reference of the storage temperature evidence",
    )
    returns_location = models.ForeignKey(
        "partners.Location",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="the seller's returns (or quarantine) location the goods were received into",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=clock.now, editable=False)
    authorised_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    disposed_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(number__regex=r"^RT-[0-9]{4}-[0-9]{6,}$"),
                name="return_number_format",
            ),
            models.CheckConstraint(
                condition=~Q(customer=F("seller")),
                name="return_between_two_partners",
                violation_error_code="same_partner",
                violation_error_message="customer and seller must be two partners",
            ),
            models.UniqueConstraint(
                fields=["seller", "rma_number"],
                condition=~Q(rma_number=""),
                name="return_rma_number_unique_per_seller",
                violation_error_code="duplicate_rma_number",
                violation_error_message="this seller already issued this RMA number",
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.number} ({self.customer.name} → {self.seller.name})"


class ReturnLine(RegulatedModel):
    """Units of one shipment line sent back, with why; what QA decided for them."""

    return_request = models.ForeignKey(
        ReturnRequest, on_delete=models.PROTECT, related_name="lines"
    )
    shipment_line = models.ForeignKey(
        ShipmentLine, on_delete=models.PROTECT, related_name="return_lines"
    )
    batch = models.ForeignKey("batches.Batch", on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    reason_code = models.CharField(max_length=12, choices=ReturnReason.choices)
    from_location = models.ForeignKey(
        "partners.Location",
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the customer's location the units leave from",
    )
    disposition = models.CharField(max_length=8, choices=ReturnDisposition.choices, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["return_request", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="return_line_quantity_positive"
            ),
            models.UniqueConstraint(
                fields=["return_request", "shipment_line"],
                name="return_line_shipment_line_once",
                violation_error_code="duplicate_line",
                violation_error_message="this return already has a line for this shipment line",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × lot #{self.batch_id} on {self.return_request.number}"
