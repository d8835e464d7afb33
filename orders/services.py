"""Every state change of agreements and orders: one function per business action.

Lock order (see docs/architecture.md, "The audit chain"): the chain head row is locked by the
first sealed write of a transaction and held until commit. A transaction must therefore lock
every row another writer may hold while it waits for the chain head (stock balances, stock
allocations, the order-number counter) *before* its first regulated write, or two transactions
can wait on each other in a cycle.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from django.db import transaction
from django.db.models import Q, Sum
from django.http import HttpRequest

from audit.history import check_editable, create_with_reason, save_with_reason, update_with_reason
from audit.models import Signature, SignatureMeaning
from audit.services import signature_apply, signature_verify_password
from batches import hooks
from batches import services as stock
from batches.models import (
    AllocationStatus,
    Batch,
    BatchStatus,
    MoveKind,
    Product,
    Serial,
    SerialState,
    StockAllocation,
    StockBalance,
)
from partners.models import Location, LocationKind, Partner, PartnerKind, Role, Site, User
from pharmadms import clock
from pharmadms.exceptions import InvalidInput, NotFound, NotPermitted, RuleViolation
from pharmadms.lifecycle import require_transition
from pharmadms.numbering import next_number
from pharmadms.permissions import require_role
from pharmadms.quantities import whole_number

from .models import (
    AGREEMENT_TRANSITIONS,
    NEVER_RESTOCKED,
    ORDER_TRANSITIONS,
    RETURN_ACTIVE_STATUSES,
    RETURN_TRANSITIONS,
    SHIPMENT_OPEN_STATUSES,
    SHIPMENT_TRANSITIONS,
    Agreement,
    AgreementPrice,
    AgreementStatus,
    Discrepancy,
    Order,
    OrderLine,
    OrderNumberCounter,
    OrderStatus,
    PackageStatus,
    ReturnDisposition,
    ReturnLine,
    ReturnNumberCounter,
    ReturnReason,
    ReturnRequest,
    ReturnStatus,
    SalesTarget,
    Shipment,
    ShipmentLine,
    ShipmentNumberCounter,
    ShipmentPackage,
    ShipmentPackageLine,
    ShipmentStatus,
    SsccCounter,
)
from .selectors import agreements_overlapping, check_order_rules
from .signals import announce

AGREEMENT_ROLES = (Role.ADMIN, Role.ORDER_DESK)
BUYER_ROLES = (Role.PARTNER_USER, Role.ORDER_DESK, Role.ADMIN)
SELLER_ROLES = (Role.ORDER_DESK, Role.ADMIN)
ALLOCATION_ROLES = (Role.ORDER_DESK, Role.WAREHOUSE_OPERATOR, Role.ADMIN)
AGREEMENT_FIELDS = {
    "territory",
    "min_remaining_shelf_life_days",
    "valid_from",
    "valid_until",
    "status",
}
TRADING_KINDS = {
    PartnerKind.MANUFACTURER,
    PartnerKind.WHOLESALER,
    PartnerKind.PHARMACY,
    PartnerKind.HOSPITAL,
}
MAX_LINES = 500
MAX_LINE_QUANTITY = 1_000_000


def _require_member(actor: User, partner: Partner, what: str) -> None:
    if not actor.is_superuser and actor.partner_id != partner.pk:
        raise NotPermitted(f"only {what} may do this", code="not_a_party")


def _lock(model, pk: int):
    return model.objects.select_for_update().get(pk=pk)


def _order_payload(order: Order) -> dict[str, Any]:
    """What an order event tells the partners' systems (JSON-ready)."""
    return {
        "number": order.number,
        "id": order.pk,
        "status": order.status,
        "buyer_gln": order.buyer.gln,
        "seller_gln": order.seller.gln,
        "lines": [
            {
                "id": line.pk,
                "gtin": line.product.gtin,
                "quantity": line.quantity,
                "quantity_allocated": line.quantity_allocated,
                "quantity_backordered": line.quantity_backordered,
            }
            for line in order.lines.select_related("product").order_by("id")
        ],
    }


def _announce_order(event: str, order: Order) -> None:
    announce(event, payload=_order_payload(order), partner_ids=[order.buyer_id, order.seller_id])


# --- agreements ----------------------------------------------------------------------------


def _check_no_overlap(agreement: Agreement) -> None:
    if agreement.status == AgreementStatus.ENDED:
        return
    clash = agreements_overlapping(
        supplier=agreement.supplier,
        customer=agreement.customer,
        valid_from=agreement.valid_from,
        valid_until=agreement.valid_until,
        exclude_pk=agreement.pk,
    ).first()
    if clash is not None:
        raise RuleViolation(
            f"an agreement of {agreement.supplier.name} with {agreement.customer.name} already "
            f"covers {clash.valid_from}–{clash.valid_until}",
            code="overlapping_agreement",
        )


@transaction.atomic
def agreement_create(
    *,
    supplier: Partner,
    customer: Partner,
    territory: list[str],
    valid_from: datetime.date,
    valid_until: datetime.date,
    actor: User,
    reason: str,
    min_remaining_shelf_life_days: int = 0,
) -> Agreement:
    """Agree to supply ``customer`` in ``territory`` for a period (the supplier's admin or desk)."""
    require_role(actor, *AGREEMENT_ROLES)
    _require_member(actor, supplier, "the supplier")
    for party in (supplier, customer):
        if party.kind not in TRADING_KINDS:
            raise RuleViolation(
                f"a {party.get_kind_display()} is no party to a supply agreement",
                code="not_a_trading_partner",
            )
    # Serialise agreements of one supplier, so two overlapping ones cannot both pass the check.
    _lock(Partner, supplier.pk)
    agreement = Agreement(
        supplier=supplier,
        customer=customer,
        territory=territory,
        min_remaining_shelf_life_days=min_remaining_shelf_life_days,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    if valid_from and valid_until and valid_until >= valid_from:
        _check_no_overlap(agreement)
    return save_with_reason(agreement, actor=actor, reason=reason)


@transaction.atomic
def agreement_update(
    *, agreement: Agreement, actor: User, reason: str, **changes: Any
) -> Agreement:
    """Correct an agreement's terms or change its status (active ↔ suspended → ended)."""
    require_role(actor, *AGREEMENT_ROLES)
    _require_member(actor, agreement.supplier, "the supplier")
    check_editable(changes, AGREEMENT_FIELDS)
    _lock(Partner, agreement.supplier_id)
    agreement = _lock(Agreement, agreement.pk)
    if agreement.status == AgreementStatus.ENDED:
        raise RuleViolation("an ended agreement is final", code="agreement_ended")
    new_status = changes.get("status", agreement.status)
    if new_status != agreement.status and new_status not in AGREEMENT_TRANSITIONS.get(
        agreement.status, frozenset()
    ):
        raise RuleViolation(
            f"an agreement cannot go from {agreement.status} to {new_status}",
            code="invalid_transition",
        )
    for name, value in changes.items():
        setattr(agreement, name, value)
    if (
        agreement.valid_from
        and agreement.valid_until
        and agreement.valid_until >= agreement.valid_from
    ):
        _check_no_overlap(agreement)
    return save_with_reason(agreement, actor=actor, reason=reason, update_fields=list(changes))


def _price(value: Any) -> Decimal:
    try:
        price = Decimal(str(value))
    except (InvalidOperation, ValueError) as error:
        raise InvalidInput("a unit price is a decimal number", code="invalid_price") from error
    if not price.is_finite() or price <= 0:
        raise InvalidInput("a unit price must be above zero", code="invalid_price")
    if price != price.quantize(Decimal("0.0001")) or price >= Decimal("1e8"):
        raise InvalidInput(
            "a unit price has at most 8 digits before and 4 after the point", code="invalid_price"
        )
    return price


@transaction.atomic
def agreement_set_price(
    *,
    agreement: Agreement,
    product: Product,
    unit_price: Decimal,
    currency: str,
    actor: User,
    reason: str,
) -> AgreementPrice:
    """Set (or change) the unit price of ``product`` under ``agreement``."""
    require_role(actor, *AGREEMENT_ROLES)
    _require_member(actor, agreement.supplier, "the supplier")
    agreement = _lock(Agreement, agreement.pk)
    if agreement.status == AgreementStatus.ENDED:
        raise RuleViolation("an ended agreement is final", code="agreement_ended")
    unit_price = _price(unit_price)
    others = AgreementPrice.objects.filter(agreement=agreement).exclude(product=product)
    other_currency = others.exclude(currency=currency).values_list("currency", flat=True).first()
    if other_currency:
        raise RuleViolation(
            f"this agreement prices in {other_currency}; one agreement, one currency",
            code="currency_mismatch",
        )
    existing = AgreementPrice.objects.filter(agreement=agreement, product=product).first()
    if existing is None:
        return create_with_reason(
            AgreementPrice,
            actor=actor,
            reason=reason,
            agreement=agreement,
            product=product,
            unit_price=unit_price,
            currency=currency,
        )
    return update_with_reason(
        existing,
        actor=actor,
        reason=reason,
        changes={"unit_price": unit_price, "currency": currency},
        editable={"unit_price", "currency"},
    )


@transaction.atomic
def sales_target_set(
    *,
    agreement: Agreement,
    period_start: datetime.date,
    period_end: datetime.date,
    actor: User,
    reason: str,
    product: Product | None = None,
    target_quantity: int | None = None,
    target_value: Decimal | None = None,
) -> SalesTarget:
    """Set the target of a period (for one product, or the whole agreement when none)."""
    require_role(actor, *AGREEMENT_ROLES)
    _require_member(actor, agreement.supplier, "the supplier")
    agreement = _lock(Agreement, agreement.pk)
    if target_quantity is None and target_value is None:
        raise InvalidInput("a target needs a quantity, a value or both", code="target_required")
    existing = SalesTarget.objects.filter(
        agreement=agreement, period_start=period_start, period_end=period_end, product=product
    ).first()
    if existing is None:
        return create_with_reason(
            SalesTarget,
            actor=actor,
            reason=reason,
            agreement=agreement,
            period_start=period_start,
            period_end=period_end,
            product=product,
            target_quantity=target_quantity,
            target_value=target_value,
        )
    return update_with_reason(
        existing,
        actor=actor,
        reason=reason,
        changes={"target_quantity": target_quantity, "target_value": target_value},
        editable={"target_quantity", "target_value"},
    )


# --- orders --------------------------------------------------------------------------------


def _next_number(counter_model, prefix: str, today: datetime.date) -> str:
    """The next document number of the year, e.g. SO-2026-000123 (pharmadms.numbering)."""
    return next_number(counter_model, prefix, today, digits=6)


def _line_quantity(value: Any) -> int:
    return whole_number(value, "a line's quantity", least=1, most=MAX_LINE_QUANTITY)


def _transition(order: Order, target: str) -> None:
    require_transition(f"order {order.number}", order.status, target, ORDER_TRANSITIONS)


@transaction.atomic
def order_create(
    *,
    buyer: Partner,
    seller: Partner,
    ship_to: Site,
    lines: Iterable[Mapping[str, Any]],
    actor: User,
    reason: str,
    customer_reference: str = "",
) -> Order:
    """Create a draft order of ``buyer`` to ``seller``; ``lines`` are ``{product, quantity}``."""
    require_role(actor, *BUYER_ROLES)
    _require_member(actor, buyer, "a member of the buyer")
    lines = list(lines)
    if not lines:
        raise InvalidInput("an order needs at least one line", code="empty_order")
    if len(lines) > MAX_LINES:
        raise InvalidInput(f"an order has at most {MAX_LINES} lines", code="too_many_lines")
    if buyer.pk == seller.pk:
        raise InvalidInput("buyer and seller must be two partners", code="same_partner")
    if seller.kind not in TRADING_KINDS or not seller.is_active:
        raise RuleViolation(f"{seller.name} does not sell", code="not_a_trading_partner")
    if ship_to.partner_id != buyer.pk or not ship_to.is_active:
        raise InvalidInput("ship to an active site of the buyer", code="invalid_ship_to")
    seen: set[int] = set()
    for line in lines:
        product = line.get("product")
        if not isinstance(product, Product):
            raise InvalidInput("each line names a product", code="invalid_product")
        _line_quantity(line.get("quantity"))
        if product.pk in seen:
            raise InvalidInput(
                f"{product.name} appears on two lines; order it once", code="duplicate_product"
            )
        if not product.is_active:
            raise RuleViolation(f"{product.name} is no longer sold", code="product_inactive")
        seen.add(product.pk)

    number = _next_number(
        OrderNumberCounter, "SO", clock.localdate()
    )  # a lock, taken before the first seal
    order = create_with_reason(
        Order,
        actor=actor,
        reason=reason,
        number=number,
        buyer=buyer,
        seller=seller,
        ship_to=ship_to,
        customer_reference=customer_reference,
        created_by=actor,
    )
    for line in lines:
        create_with_reason(
            OrderLine,
            actor=actor,
            reason=reason,
            order=order,
            product=line["product"],
            quantity=line["quantity"],
        )
    return order


@transaction.atomic
def order_submit(
    *, order: Order, actor: User, reason: str, on: datetime.date | None = None
) -> Order:
    """Send a draft to the seller, once every rule holds; the lines take the agreement's prices."""
    require_role(actor, *BUYER_ROLES)
    _require_member(actor, order.buyer, "a member of the buyer")
    order = _lock(Order, order.pk)
    _transition(order, OrderStatus.SUBMITTED)
    decision = check_order_rules(order, on=on or clock.localdate())
    if not decision.allowed:
        raise RuleViolation(
            decision.detail, code=decision.code, extra={"product": decision.product_id}
        )
    for line in order.lines.order_by("id"):
        price = decision.prices[line.product_id]
        update_with_reason(
            line,
            actor=actor,
            reason=reason,
            changes={"unit_price": price.unit_price, "currency": price.currency},
            editable={"unit_price", "currency"},
        )
    order = update_with_reason(
        order,
        actor=actor,
        reason=reason,
        changes={
            "status": OrderStatus.SUBMITTED,
            "agreement": decision.agreement,
            "submitted_at": clock.now(),
        },
        editable={"status", "agreement", "submitted_at"},
    )
    _announce_order("order.submitted", order)
    return order


@transaction.atomic
def order_confirm(*, order: Order, actor: User, reason: str) -> Order:
    """The seller accepts a submitted order."""
    require_role(actor, *SELLER_ROLES)
    _require_member(actor, order.seller, "a member of the seller")
    order = _lock(Order, order.pk)
    _transition(order, OrderStatus.CONFIRMED)
    order = update_with_reason(
        order,
        actor=actor,
        reason=reason,
        changes={"status": OrderStatus.CONFIRMED},
        editable={"status"},
    )
    _announce_order("order.confirmed", order)
    return order


def _seller_storage(order: Order) -> list[Location]:
    return list(
        Location.objects.filter(
            site__partner_id=order.seller_id,
            site__is_active=True,
            kind=LocationKind.STORAGE,
            is_active=True,
        ).order_by("pk")
    )


def _lock_balances(*, product_ids: Iterable[int], location_ids: Iterable[int]) -> None:
    """Lock every balance row of these products at these locations, in primary-key order
    (the ledger's order), so no later step of this transaction waits for a balance."""
    list(
        StockBalance.objects.select_for_update(of=("self",))
        .filter(batch__product_id__in=list(product_ids), location_id__in=list(location_ids))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


ALLOCATE_FROM = frozenset({OrderStatus.CONFIRMED, OrderStatus.ALLOCATED})


@transaction.atomic
def order_allocate(
    *, order: Order, actor: User, reason: str, on: datetime.date | None = None
) -> Order:
    """Reserve stock for a confirmed order, FEFO, from the seller's storage locations.

    Each line takes what is there, honouring the agreement's minimum remaining shelf life; what
    cannot be allocated stays on the line as a backorder. The order is then ``allocated``;
    allocating an allocated order again tries to fill its backorders.

    Only a confirmed or allocated order is allocated: while a shipment is being picked
    (``picking``) its allocations belong to that shipment, and the backorder waits until the
    dispatch returns the order to ``allocated``.
    """
    require_role(actor, *ALLOCATION_ROLES)
    _require_member(actor, order.seller, "a member of the seller")
    order = _lock(Order, order.pk)
    if order.status not in ALLOCATE_FROM:
        raise RuleViolation(
            f"order {order.number} is {order.status}: only a confirmed or allocated order is "
            "allocated"
            + (
                "; its shipment is being picked — allocate the rest once it is dispatched"
                if order.status == OrderStatus.PICKING
                else ""
            ),
            code="invalid_transition",
        )
    _transition(order, OrderStatus.ALLOCATED)
    if order.status == OrderStatus.ALLOCATED and not order.has_backorders:
        raise RuleViolation(f"order {order.number} is fully allocated", code="nothing_to_allocate")
    lines = [
        line
        for line in order.lines.select_related("product").order_by("id")
        if line.quantity_allocated < line.quantity
    ]
    locations = _seller_storage(order)
    min_days = order.agreement.min_remaining_shelf_life_days if order.agreement else 0
    today = on or clock.localdate()

    # Lock order: every balance this allocation may touch is locked here, before the first
    # sealed write (stock_allocate's first StockAllocation). The chain head is then taken last
    # and held to commit, so no other transaction can hold a balance we wait for while it
    # waits for the chain head.
    _lock_balances(
        product_ids={line.product_id for line in lines},
        location_ids=[location.pk for location in locations],
    )
    taken: dict[int, int] = {}
    for line in lines:
        allocations = stock.stock_allocate(
            product=line.product,
            quantity=line.quantity - line.quantity_allocated,
            locations=locations,
            reference=line.allocation_reference,
            actor=actor,
            reason=reason,
            min_remaining_shelf_life_days=min_days,
            on=today,
            allow_partial=True,
        )
        taken[line.pk] = sum(allocation.quantity for allocation in allocations)

    # Only now the order's own rows change (each a sealed write).
    for line in lines:
        allocated = line.quantity_allocated + taken[line.pk]
        backordered = line.quantity - allocated
        if (allocated, backordered) != (line.quantity_allocated, line.quantity_backordered):
            update_with_reason(
                line,
                actor=actor,
                reason=reason,
                changes={"quantity_allocated": allocated, "quantity_backordered": backordered},
                editable={"quantity_allocated", "quantity_backordered"},
            )
    if order.status != OrderStatus.ALLOCATED:
        update_with_reason(
            order,
            actor=actor,
            reason=reason,
            changes={"status": OrderStatus.ALLOCATED},
            editable={"status"},
        )
    _announce_order("order.allocated", order)
    return order


# The buyer may withdraw an order until the seller confirms it; the seller may cancel any
# order it can see until it ships.
BUYER_CANCELS = frozenset({OrderStatus.DRAFT, OrderStatus.SUBMITTED})
SELLER_CANCELS = frozenset(
    {OrderStatus.SUBMITTED, OrderStatus.CONFIRMED, OrderStatus.ALLOCATED, OrderStatus.PICKING}
)


def _lock_for_release(allocations: list[StockAllocation]) -> None:
    """Lock what releasing ``allocations`` touches: their balances first (pk order, as the
    ledger does), then the allocations, all before the transaction's first sealed write."""
    if not allocations:
        return
    places = Q()
    for allocation in allocations:
        places |= Q(batch_id=allocation.batch_id, location_id=allocation.location_id)
    list(
        StockBalance.objects.select_for_update()
        .filter(places)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    list(
        StockAllocation.objects.select_for_update()
        .filter(pk__in=[allocation.pk for allocation in allocations])
        .order_by("pk")
        .values_list("pk", flat=True)
    )


@transaction.atomic
def order_cancel(*, order: Order, actor: User, reason: str) -> Order:
    """Cancel an order and give every unit allocated to it back to available stock."""
    order = _lock(Order, order.pk)
    is_buyer = actor.is_superuser or actor.partner_id == order.buyer_id
    is_seller = actor.is_superuser or actor.partner_id == order.seller_id
    if not (is_buyer or is_seller):
        raise NotFound("no such order")
    require_role(actor, *(BUYER_ROLES if is_buyer else SELLER_ROLES))
    _transition(order, OrderStatus.CANCELLED)
    allowed = (BUYER_CANCELS if is_buyer else frozenset()) | (
        SELLER_CANCELS if is_seller else frozenset()
    )
    if order.status not in allowed:
        who = "the seller" if is_seller else "the buyer"
        raise RuleViolation(
            f"order {order.number} is {order.status}: {who} can no longer cancel it",
            code="cancel_not_allowed",
        )
    lines = list(order.lines.order_by("id"))
    if any(line.quantity_shipped for line in lines):
        raise RuleViolation(
            f"order {order.number} has shipped in part: what shipped cannot be cancelled; "
            "cancel its backorder instead",
            code="partly_shipped",
        )
    allocations = list(
        StockAllocation.objects.filter(
            reference__in=[line.allocation_reference for line in lines],
            status=AllocationStatus.ACTIVE,
        )
        .select_related("batch", "location")
        .order_by("pk")
    )
    _lock_for_release(allocations)
    for allocation in allocations:
        stock.stock_deallocate(allocation=allocation, actor=actor, reason=reason)
    for line in lines:
        if line.quantity_allocated or line.quantity_backordered:
            update_with_reason(
                line,
                actor=actor,
                reason=reason,
                changes={"quantity_allocated": 0, "quantity_backordered": 0},
                editable={"quantity_allocated", "quantity_backordered"},
            )
    order = update_with_reason(
        order,
        actor=actor,
        reason=reason,
        changes={"status": OrderStatus.CANCELLED},
        editable={"status"},
    )
    _announce_order("order.cancelled", order)
    return order


BACKORDER_CANCELS = frozenset({OrderStatus.ALLOCATED, OrderStatus.PICKING})


@transaction.atomic
def order_cancel_backorder(*, order: Order, actor: User, reason: str) -> Order:
    """The seller gives up what an order still waits for: every backordered unit, and every
    unit allocated but on no shipment (those allocations go back to available stock). What is
    on a shipment stays on it.

    The order is then what its shipments make it: still ``picking`` while a shipment is
    planned or picked (its dispatch leaves nothing open, so the order is shipped then);
    otherwise ``delivered`` when every shipment is received, else ``shipped``. An order that
    has no shipment at all is cancelled instead (``nothing_shipped``).
    """
    require_role(actor, *SELLER_ROLES)
    _require_member(actor, order.seller, "a member of the seller")
    order = _lock(Order, order.pk)
    if order.status not in BACKORDER_CANCELS:
        raise RuleViolation(
            f"order {order.number} is {order.status}: only an allocated or picking order has "
            "a backorder to cancel",
            code="invalid_transition",
        )
    shipment_statuses = list(
        Shipment.objects.filter(order_id=order.pk).values_list("status", flat=True)
    )
    if not shipment_statuses:
        raise RuleViolation(
            f"order {order.number} has no shipment: nothing of it is on its way, so cancel "
            "the order instead",
            code="nothing_shipped",
        )
    lines = list(order.lines.order_by("id"))
    references = {line.allocation_reference: line for line in lines}
    # Allocations not on any shipment (those on a planned or picked shipment stay with it).
    allocations = list(
        StockAllocation.objects.filter(
            reference__in=list(references),
            status=AllocationStatus.ACTIVE,
            shipment_lines__isnull=True,
        )
        .select_related("batch", "location")
        .order_by("pk")
    )
    if not allocations and not any(line.quantity_backordered for line in lines):
        raise RuleViolation(
            f"order {order.number} has no backorder and nothing allocated off its shipments",
            code="nothing_to_cancel",
        )
    _lock_for_release(allocations)

    released: dict[int, int] = {}
    for allocation in allocations:
        stock.stock_deallocate(allocation=allocation, actor=actor, reason=reason)
        line = references[allocation.reference]
        released[line.pk] = released.get(line.pk, 0) + allocation.quantity
    for line in lines:
        freed = released.get(line.pk, 0)
        if freed or line.quantity_backordered:
            update_with_reason(
                line,
                actor=actor,
                reason=reason,
                changes={
                    "quantity_allocated": line.quantity_allocated - freed,
                    "quantity_backordered": 0,
                },
                editable={"quantity_allocated", "quantity_backordered"},
            )
    if not any(status in SHIPMENT_OPEN_STATUSES for status in shipment_statuses):
        everything_in = all(status == ShipmentStatus.RECEIVED for status in shipment_statuses)
        target = OrderStatus.DELIVERED if everything_in else OrderStatus.SHIPPED
        _transition(order, target)
        order = update_with_reason(
            order,
            actor=actor,
            reason=reason,
            changes={"status": target},
            editable={"status"},
        )
    _announce_order("order.backorder_cancelled", order)
    return order


# --- shipments -----------------------------------------------------------------------------

SHIPMENT_CREATE_ROLES = (Role.ORDER_DESK, Role.WAREHOUSE_OPERATOR, Role.ADMIN)
DISPATCH_ROLES = (Role.WAREHOUSE_OPERATOR, Role.ADMIN)
RECEIVE_ROLES = (Role.WAREHOUSE_OPERATOR, Role.PARTNER_USER, Role.ADMIN)


def _shipment_transition(shipment: Shipment, target: str) -> None:
    require_transition(f"shipment {shipment.number}", shipment.status, target, SHIPMENT_TRANSITIONS)


def _lock_shipment(shipment: Shipment) -> Shipment:
    shipment = Shipment.objects.select_for_update(of=("self",)).get(pk=shipment.pk)
    # Read the parties without locking them (a lock on the order is taken separately).
    shipment.order = Order.objects.select_related("buyer", "seller").get(pk=shipment.order_id)
    return shipment


def _site_location(site_id: int, kind: str) -> Location | None:
    return (
        Location.objects.filter(site_id=site_id, kind=kind, is_active=True)
        .select_related("site")
        .order_by("pk")
        .first()
    )


def _lock_places(places: Iterable[tuple[int, int]]) -> None:
    """Create any missing balance row of these (lot, location) pairs and lock them all, in
    primary-key order (the ledger's order), before the transaction's first sealed write.

    ``stock_post_move`` locks its two rows itself; locking every row of a multi-line move up
    front means no later step waits for a balance while this transaction holds the chain head.
    """
    places = sorted(set(places))
    if not places:
        return
    for batch_id, location_id in places:
        # An empty projection row: not regulated, no history (its history is the moves).
        StockBalance.objects.get_or_create(batch_id=batch_id, location_id=location_id)
    where = Q()
    for batch_id, location_id in places:
        where |= Q(batch_id=batch_id, location_id=location_id)
    list(
        StockBalance.objects.select_for_update(of=("self",))
        .filter(where)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _lock_allocations(allocation_ids: Iterable[int]) -> dict[int, StockAllocation]:
    return {
        allocation.pk: allocation
        for allocation in StockAllocation.objects.select_for_update(of=("self",))
        .filter(pk__in=list(allocation_ids))
        .order_by("pk")
    }


def shipment_payload(shipment: Shipment) -> dict[str, Any]:
    """What a shipment event tells the partners' systems (JSON-ready)."""
    order = shipment.order
    return {
        "number": shipment.number,
        "id": shipment.pk,
        "status": shipment.status,
        "order": order.number,
        "order_id": order.pk,
        "buyer_gln": order.buyer.gln,
        "seller_gln": order.seller.gln,
        "from_site_gln": shipment.from_site.gln,
        "to_site_gln": shipment.to_site.gln,
        "carrier": shipment.carrier,
        "tracking_number": shipment.tracking_number,
        "dispatched_at": shipment.dispatched_at.isoformat() if shipment.dispatched_at else None,
        "received_at": shipment.received_at.isoformat() if shipment.received_at else None,
        "lines": [
            {
                "id": line.pk,
                "gtin": line.batch.product.gtin,
                "lot": line.batch.lot_number,
                "expires_on": line.batch.expires_on.isoformat(),
                "quantity": line.quantity,
                "received_quantity": line.received_quantity,
                "damaged_quantity": line.damaged_quantity,
                "discrepancy": line.discrepancy,
            }
            # What left: a line of which nothing was picked shipped nothing.
            for line in shipment.lines.shipped().select_related("batch__product").order_by("id")
        ],
    }


def _announce_shipment(event: str, shipment: Shipment) -> None:
    shipment = Shipment.objects.select_related(
        "order__buyer", "order__seller", "from_site", "to_site"
    ).get(pk=shipment.pk)
    announce(
        event,
        payload=shipment_payload(shipment),
        partner_ids=[shipment.order.buyer_id, shipment.order.seller_id],
    )


@transaction.atomic
def shipment_create_from_order(
    *,
    order: Order,
    actor: User,
    reason: str,
    carrier: str = "",
    tracking_number: str = "",
    carrier_partner: Partner | None = None,
) -> Shipment:
    """Plan the shipment of an allocated order: one line per active allocation of its lines
    that is on no shipment yet.

    The order moves to ``picking``; backorders left on its lines are not shipped with it (they
    go on a further shipment once allocated). One shipment is prepared at a time: while one is
    planned or picked, no other is planned (``shipment_in_progress``), and an allocation never
    goes on two shipments. ``carrier_partner`` is the logistics provider whose users may
    confirm the delivery.
    """
    require_role(actor, *SHIPMENT_CREATE_ROLES)
    _require_member(actor, order.seller, "a member of the seller")
    if carrier_partner is not None and (
        carrier_partner.kind != PartnerKind.LOGISTICS or not carrier_partner.is_active
    ):
        raise InvalidInput(
            f"{carrier_partner.name} is no active logistics provider", code="invalid_carrier"
        )
    order = _lock(Order, order.pk)
    if order.status != OrderStatus.ALLOCATED:
        raise RuleViolation(
            f"order {order.number} is {order.status}: only an allocated order is shipped",
            code="invalid_transition",
        )
    in_progress = (
        Shipment.objects.filter(order_id=order.pk, status__in=SHIPMENT_OPEN_STATUSES)
        .order_by("pk")
        .first()
    )
    if in_progress is not None:
        raise RuleViolation(
            f"shipment {in_progress.number} of order {order.number} is {in_progress.status}: "
            "dispatch it before planning another",
            code="shipment_in_progress",
            extra={"shipment": in_progress.pk},
        )
    lines = {line.allocation_reference: line for line in order.lines.order_by("id")}
    allocation_ids = list(
        StockAllocation.objects.filter(
            reference__in=list(lines),
            status=AllocationStatus.ACTIVE,
            shipment_lines__isnull=True,  # never an allocation already on a shipment
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not allocation_ids:
        raise RuleViolation(
            f"order {order.number} has no allocated stock to ship", code="nothing_allocated"
        )
    # Lock order: the allocations (a cancellation would release them), then the number counter,
    # all before the first sealed write.
    allocations = list(_lock_allocations(allocation_ids).values())
    locations = {
        location.pk: location
        for location in Location.objects.select_related("site").filter(
            pk__in={allocation.location_id for allocation in allocations}
        )
    }
    sites = {locations[allocation.location_id].site for allocation in allocations}
    if len(sites) != 1:
        raise RuleViolation(
            "the allocated stock lies at more than one site; ship each site's part separately",
            code="allocations_across_sites",
        )
    (from_site,) = sites
    number = _next_number(ShipmentNumberCounter, "SH", clock.localdate())
    shipment = create_with_reason(
        Shipment,
        actor=actor,
        reason=reason,
        number=number,
        order=order,
        from_site=from_site,
        to_site=order.ship_to,
        carrier=carrier or (carrier_partner.name if carrier_partner else ""),
        carrier_partner=carrier_partner,
        tracking_number=tracking_number,
        created_by=actor,
    )
    for allocation in allocations:
        create_with_reason(
            ShipmentLine,
            actor=actor,
            reason=reason,
            shipment=shipment,
            order_line=lines[allocation.reference],
            batch_id=allocation.batch_id,
            quantity=allocation.quantity,
            from_location=locations[allocation.location_id],
            allocation=allocation,
        )
    update_with_reason(
        order,
        actor=actor,
        reason=reason,
        changes={"status": OrderStatus.PICKING},
        editable={"status"},
    )
    return shipment


def _check_allocated(
    shipment: Shipment, lines: list[ShipmentLine], allocations: Mapping[int, StockAllocation]
) -> None:
    """Refuse (``shipment_not_allocated``) unless every line still holds its allocation, whole
    and where the line takes it from."""
    for line in lines:
        allocation = allocations[line.allocation_id]
        if (
            allocation.status != AllocationStatus.ACTIVE
            or allocation.quantity != line.quantity
            or allocation.location_id != line.from_location_id
        ):
            raise RuleViolation(
                f"lot {line.batch.lot_number} on shipment {shipment.number} is no longer "
                "allocated; plan the shipment again",
                code="shipment_not_allocated",
            )


def _holds(batch: Batch, location: Location | None) -> list[hooks.Hold]:
    return hooks.lot_holds(batch, location)


def _refuse_held(batch: Batch, location: Location | None) -> None:
    """Refuse with the first hold on ``batch`` (a recall, an excursion), as the hooks name it."""
    holds = _holds(batch, location)
    if holds:
        hold = holds[0]
        raise RuleViolation(hold.detail, code=hold.code, extra={"reference": hold.reference})


def _picking_started(lines: Iterable[ShipmentLine]) -> bool:
    return any(line.picked_quantity for line in lines)


@transaction.atomic
def shipment_pick(
    *,
    shipment: Shipment,
    batch: Batch,
    quantity: int,
    location: Location,
    actor: User,
    reason: str,
    serials: Iterable[str] = (),
) -> ShipmentLine:
    """Confirm ``quantity`` units of ``batch`` picked from ``location`` for a planned shipment
    (a scan at the seller's shelf). Stock does not move here: it moves at dispatch.

    Refused when the lot is not on the shipment (``not_allocated_lot``), is allocated elsewhere
    (``wrong_location``), would be picked beyond what its lines still need
    (``quantity_exceeds_expected``), is held (the hold's own code) or when the shipment is no
    longer planned (``invalid_transition``). When every line is fully picked the shipment is
    ``picked``. ``serials`` are the units' serial numbers (GS1 AI 21), one per unit, if scanned.
    """
    require_role(actor, *DISPATCH_ROLES)
    shipment = _lock_shipment(shipment)
    _require_member(actor, shipment.order.seller, "a member of the seller")
    if shipment.status != ShipmentStatus.PLANNED:
        raise RuleViolation(
            f"shipment {shipment.number} is {shipment.status}: only a planned shipment is picked",
            code="invalid_transition",
        )
    quantity = _line_quantity(quantity)
    serials = [str(serial).strip() for serial in serials]
    if serials and (len(serials) != quantity or not all(serials)):
        raise InvalidInput(
            f"{len(serials)} serial numbers for {quantity} units: give one per unit, or none",
            code="serials_mismatch",
        )
    if len(set(serials)) != len(serials):
        raise InvalidInput("a serial number appears twice", code="duplicate_serial")
    lines = list(shipment.lines.select_related("batch", "from_location").order_by("id"))
    # The allocations the lines hold (locked before the first sealed write): a shipment whose
    # order was cancelled, or whose stock was released, is not picked.
    _check_allocated(shipment, lines, _lock_allocations(line.allocation_id for line in lines))
    of_lot = [line for line in lines if line.batch_id == batch.pk]
    if not of_lot:
        raise RuleViolation(
            f"lot {batch.lot_number} is not on shipment {shipment.number}: pick the lots it "
            f"lists ({', '.join(sorted({line.batch.lot_number for line in lines}))})",
            code="not_allocated_lot",
        )
    here = [line for line in of_lot if line.from_location_id == location.pk]
    if not here:
        where = ", ".join(sorted({str(line.from_location) for line in of_lot}))
        raise RuleViolation(
            f"lot {batch.lot_number} of shipment {shipment.number} is allocated at {where}, "
            f"not at {location}",
            code="wrong_location",
        )
    needed = sum(line.quantity - line.picked_quantity for line in here)
    if quantity > needed:
        raise RuleViolation(
            f"lot {batch.lot_number}: {quantity} units picked, but shipment {shipment.number} "
            f"still needs {needed}",
            code="quantity_exceeds_expected",
            extra={"expected": needed},
        )
    lot = here[0].batch
    # A hold names its cause (the recall number, the excursion): it answers before the status.
    _refuse_held(lot, location)
    if lot.status != BatchStatus.RELEASED:
        raise RuleViolation(
            f"lot {lot.lot_number} is {lot.status}: it cannot be shipped", code="batch_not_released"
        )
    today = clock.localdate()
    if lot.is_expired_on(today):
        raise RuleViolation(
            f"lot {lot.lot_number} expired on {lot.expires_on}: it cannot be shipped",
            code="batch_expired",
        )
    known = {serial for line in lines for serial in line.serials}
    repeated = sorted(known.intersection(serials))
    if repeated:
        raise RuleViolation(
            f"serial numbers already picked on {shipment.number}: {', '.join(repeated[:5])}",
            code="duplicate_serial",
        )
    remaining, touched = quantity, here[0]
    for line in here:
        if remaining == 0:
            break
        take = min(remaining, line.quantity - line.picked_quantity)
        if not take:
            continue
        taken_serials, serials = serials[:take], serials[take:]
        touched = update_with_reason(
            line,
            actor=actor,
            reason=reason,
            changes={
                "picked_quantity": line.picked_quantity + take,
                "serials": [*line.serials, *taken_serials],
            },
            editable={"picked_quantity", "serials"},
        )
        remaining -= take
    if all(line.picked_quantity == line.quantity for line in lines):
        update_with_reason(
            shipment,
            actor=actor,
            reason=reason,
            changes={"status": ShipmentStatus.PICKED},
            editable={"status"},
        )
    return touched


# SSCC: extension digit + GS1 company prefix + serial reference = 17 digits, + check digit.
SSCC_BODY_DIGITS = 17


def _next_sscc(company_prefix: str) -> str:
    """The next SSCC under ``company_prefix``, from a counter taken under its row lock (before
    the first sealed write). The serial reference fills the digits the prefix leaves; when they
    run out, the extension digit (0–9) extends the range."""
    from biip.checksums import gs1_standard_check_digit
    from biip.sscc import Sscc

    reference_digits = SSCC_BODY_DIGITS - 1 - len(company_prefix)
    capacity = 10**reference_digits
    counter, _ = SsccCounter.objects.get_or_create(company_prefix=company_prefix)
    counter = SsccCounter.objects.select_for_update().get(pk=counter.pk)
    serial = counter.last_serial + 1
    extension, reference = divmod(serial, capacity)
    if extension > 9:
        raise RuleViolation(
            f"every SSCC under company prefix {company_prefix} has been issued",
            code="sscc_range_exhausted",
        )
    counter.last_serial = serial
    counter.save(update_fields=["last_serial"])
    body = f"{extension}{company_prefix}{reference:0{reference_digits}d}"
    sscc = body + str(gs1_standard_check_digit(body))
    Sscc.parse(sscc)  # biip checks length and check digit
    return sscc


PACK_STATUSES = frozenset({ShipmentStatus.PLANNED, ShipmentStatus.PICKED})


def _packed_units(shipment: Shipment) -> dict[int, int]:
    """Units of each line of ``shipment`` in its packages (unpacked packages hold none)."""
    return dict(
        ShipmentPackageLine.objects.filter(
            package__shipment=shipment, package__status=PackageStatus.PACKED
        )
        .values("shipment_line_id")
        .annotate(total=Sum("quantity"))
        .values_list("shipment_line_id", "total")
    )


@transaction.atomic
def shipment_pack(
    *,
    shipment: Shipment,
    contents: Iterable[tuple[ShipmentLine, int]],
    actor: User,
    reason: str,
) -> ShipmentPackage:
    """Put units of a shipment's lines into one package labelled with a new SSCC, made from the
    seller's GS1 company prefix. ``contents`` are ``(shipment line, quantity)`` pairs; no line
    is packed beyond its quantity over all of the shipment's packages."""
    require_role(actor, *DISPATCH_ROLES)
    shipment = _lock_shipment(shipment)
    seller = shipment.order.seller
    _require_member(actor, seller, "a member of the seller")
    if shipment.status not in PACK_STATUSES:
        raise RuleViolation(
            f"shipment {shipment.number} is {shipment.status}: it is packed before dispatch",
            code="invalid_transition",
        )
    if not seller.gs1_company_prefix:
        raise RuleViolation(
            f"{seller.name} has no GS1 company prefix to build an SSCC from",
            code="no_company_prefix",
        )
    lines = {line.pk: line for line in shipment.lines.order_by("id")}
    contents = list(contents)
    if not contents:
        raise InvalidInput("a package holds at least one line", code="empty_package")
    if len(contents) > MAX_LINES:
        raise InvalidInput(f"a package holds at most {MAX_LINES} lines", code="too_many_lines")
    packed = _packed_units(shipment)
    planned: list[tuple[ShipmentLine, int]] = []
    for entry in contents:
        try:
            value, quantity = entry
        except (TypeError, ValueError) as error:
            raise InvalidInput(
                "each content is a (shipment line, quantity) pair", code="invalid_line"
            ) from error
        line_id = value.pk if isinstance(value, ShipmentLine) else value
        if isinstance(line_id, bool) or not isinstance(line_id, int):
            raise InvalidInput("each content names a shipment line", code="invalid_line")
        if line_id not in lines:
            raise InvalidInput(
                f"line {line_id} is not on shipment {shipment.number}", code="unknown_line"
            )
        if any(line.pk == line_id for line, _ in planned):
            raise InvalidInput(f"line {line_id} appears twice", code="duplicate_line")
        quantity = _line_quantity(quantity)
        line = lines[line_id]
        room = line.quantity - packed.get(line_id, 0)
        if quantity > room:
            raise RuleViolation(
                f"line {line_id}: {quantity} units to pack, but only {room} of its "
                f"{line.quantity} are not packed yet",
                code="quantity_exceeds_expected",
                extra={"expected": room},
            )
        planned.append((line, quantity))
    sscc = _next_sscc(seller.gs1_company_prefix)  # a lock, taken before the first seal
    package = create_with_reason(
        ShipmentPackage,
        actor=actor,
        reason=reason,
        shipment=shipment,
        sscc=sscc,
        created_by=actor,
    )
    for line, quantity in planned:
        create_with_reason(
            ShipmentPackageLine,
            actor=actor,
            reason=reason,
            package=package,
            shipment_line=line,
            quantity=quantity,
        )
    return package


def package_by_sscc(sscc: str) -> ShipmentPackage:
    """The package labelled ``sscc`` (18 digits), with its shipment and lines. An unpacked
    package's label names no package any more: not found."""
    value = (sscc or "").strip() if isinstance(sscc, str) else ""
    package = (
        ShipmentPackage.objects.select_related("shipment__order")
        .prefetch_related("lines__shipment_line__batch")
        .filter(sscc=value, status=PackageStatus.PACKED)
        .first()
    )
    if package is None:
        raise NotFound(f"no package is labelled SSCC {value or sscc!r}", code="unknown_sscc")
    return package


@transaction.atomic
def shipment_unpack(
    *, shipment: Shipment, package: ShipmentPackage | int | str, actor: User, reason: str
) -> ShipmentPackage:
    """Empty a package of a planned or picked shipment (named by the package, its id or its
    SSCC): it is marked ``unpacked`` — kept, with its history and contents on record, its SSCC
    never issued again — and its units count in no package, so they may be packed again. The
    way out of ``packed_exceeds_shipped`` when fewer units were picked than packed."""
    require_role(actor, *DISPATCH_ROLES)
    shipment = _lock_shipment(shipment)
    _require_member(actor, shipment.order.seller, "a member of the seller")
    if isinstance(package, ShipmentPackage):
        where = Q(pk=package.pk)
    elif isinstance(package, int) and not isinstance(package, bool):
        where = Q(pk=package)
    elif isinstance(package, str) and package.strip().isascii() and package.strip().isdigit():
        where = Q(sscc=package.strip())
    else:
        where = None
    found = (
        ShipmentPackage.objects.select_for_update(of=("self",))
        .filter(where, shipment_id=shipment.pk)
        .first()
        if where is not None
        else None
    )
    if found is None:
        raise InvalidInput(
            f"no package {package!r} is on shipment {shipment.number}", code="unknown_package"
        )
    if found.status == PackageStatus.UNPACKED:
        raise RuleViolation(
            f"package SSCC {found.sscc} was unpacked already", code="already_unpacked"
        )
    if shipment.status not in PACK_STATUSES:
        raise RuleViolation(
            f"shipment {shipment.number} is {shipment.status}: a package is unpacked before "
            "dispatch",
            code="invalid_transition",
        )
    return update_with_reason(
        found,
        actor=actor,
        reason=reason,
        changes={"status": PackageStatus.UNPACKED, "unpacked_at": clock.now()},
        editable={"status", "unpacked_at"},
    )


@transaction.atomic
def shipment_dispatch(
    *, shipment: Shipment, actor: User, reason: str, on: datetime.date | None = None
) -> Shipment:
    """Send a planned or picked shipment: its units leave the seller's storage for its
    in-transit location, consuming their allocations.

    Once picking has begun (any unit picked), each line ships the units picked for it: a line
    picked short releases its allocation's rest, which goes back to the order line as a
    backorder (allocated again when stock allows, on a further shipment). The order is then
    ``shipped`` when nothing of it remains to ship, else ``allocated`` again.

    The order rules are checked again on the dispatch day: the buyer's licence may have lapsed
    since the order was submitted; and no held lot (recall, excursion) leaves. The serialised
    packs picked for the shipment are ``shipped`` (see _serials_follow).
    """
    require_role(actor, *DISPATCH_ROLES)
    shipment = _lock_shipment(shipment)
    _require_member(actor, shipment.order.seller, "a member of the seller")
    if shipment.status not in {ShipmentStatus.PLANNED, ShipmentStatus.PICKED}:
        raise RuleViolation(
            f"shipment {shipment.number} is already {shipment.status}", code="already_dispatched"
        )
    _shipment_transition(shipment, ShipmentStatus.DISPATCHED)
    order = _lock(Order, shipment.order_id)
    lines = list(shipment.lines.select_related("batch", "from_location").order_by("id"))
    if not lines:
        raise RuleViolation(f"shipment {shipment.number} has no lines", code="empty_shipment")
    picked = _picking_started(lines)
    shipped = {line.pk: line.picked_quantity if picked else line.quantity for line in lines}
    in_transit = _site_location(shipment.from_site_id, LocationKind.IN_TRANSIT)
    if in_transit is None:
        raise RuleViolation(
            f"{shipment.from_site.name} has no active in-transit location to dispatch into",
            code="no_in_transit_location",
        )
    # Lock order: every balance this dispatch touches (sources and the in-transit location),
    # then the allocations it consumes, all before the first sealed write.
    _lock_places(
        [(line.batch_id, line.from_location_id) for line in lines]
        + [(line.batch_id, in_transit.pk) for line in lines]
    )
    allocations = _lock_allocations(line.allocation_id for line in lines)
    _check_allocated(shipment, lines, allocations)
    if order.status != OrderStatus.PICKING:
        raise RuleViolation(
            f"order {order.number} is {order.status}: it cannot be shipped",
            code="invalid_transition",
        )
    decision = check_order_rules(order, on=on or clock.localdate())
    if not decision.allowed:
        raise RuleViolation(
            decision.detail, code=decision.code, extra={"product": decision.product_id}
        )
    for line in lines:
        if shipped[line.pk]:
            _refuse_held(line.batch, line.from_location)
    packed = _packed_units(shipment)
    for line in lines:
        if packed.get(line.pk, 0) > shipped[line.pk]:
            raise RuleViolation(
                f"lot {line.batch.lot_number}: {packed[line.pk]} units are packed but only "
                f"{shipped[line.pk]} were picked; unpack and repack before dispatch",
                code="packed_exceeds_shipped",
            )
    reference = f"shipment:{shipment.number}"
    sent: dict[int, int] = {}
    short: dict[int, int] = {}
    for line in lines:
        units = shipped[line.pk]
        allocation = allocations[line.allocation_id]
        sent[line.order_line_id] = sent.get(line.order_line_id, 0) + units
        if units == line.quantity:
            stock.stock_post_move(
                batch=line.batch,
                quantity=units,
                kind=MoveKind.SHIPMENT,
                actor=actor,
                reason=reason,
                from_location=line.from_location,
                to_location=in_transit,
                reference=reference,
                consume_allocation=allocation,
            )
            continue
        missing = line.quantity - units
        short[line.order_line_id] = short.get(line.order_line_id, 0) + missing
        why = (
            f"picked short: {units} of {line.quantity} units of lot {line.batch.lot_number} "
            f"ship on {shipment.number}; the rest is backordered; {reason}"
        )
        stock.stock_deallocate(allocation=allocation, actor=actor, reason=why)
        if units:
            stock.stock_post_move(
                batch=line.batch,
                quantity=units,
                kind=MoveKind.SHIPMENT,
                actor=actor,
                reason=why,
                from_location=line.from_location,
                to_location=in_transit,
                reference=reference,
            )
        update_with_reason(
            line, actor=actor, reason=why, changes={"quantity": units}, editable={"quantity"}
        )
    for line in lines:
        if shipped[line.pk]:
            _serials_follow(shipment, line, SerialState.SHIPPED, actor=actor, reason=reason)
    open_units = 0
    for order_line in order.lines.order_by("id"):
        units, missing = sent.get(order_line.pk, 0), short.get(order_line.pk, 0)
        if units or missing:
            order_line = update_with_reason(
                order_line,
                actor=actor,
                reason=reason,
                changes={
                    "quantity_shipped": order_line.quantity_shipped + units,
                    "quantity_allocated": order_line.quantity_allocated - missing,
                    "quantity_backordered": order_line.quantity_backordered + missing,
                },
                editable={"quantity_shipped", "quantity_allocated", "quantity_backordered"},
            )
        # What the order still waits for: allocated but not shipped, or backordered (a
        # cancelled backorder is no longer waited for).
        open_units += order_line.quantity_open
    shipment = update_with_reason(
        shipment,
        actor=actor,
        reason=reason,
        changes={
            "status": ShipmentStatus.DISPATCHED,
            "dispatched_at": clock.now(),
            "in_transit_location": in_transit,
        },
        editable={"status", "dispatched_at", "in_transit_location"},
    )
    update_with_reason(
        order,
        actor=actor,
        reason=reason,
        changes={"status": OrderStatus.ALLOCATED if open_units else OrderStatus.SHIPPED},
        editable={"status"},
    )
    _announce_shipment("shipment.dispatched", shipment)
    return shipment


def _serials_follow(
    shipment: Shipment,
    line: ShipmentLine,
    to_state: str,
    *,
    actor: User,
    reason: str,
    holder: Partner | None = None,
) -> None:
    """The serialised packs picked for ``line`` (reserved for ``shipment`` by the pick scans)
    follow its units, whether or not each pack is scanned again: at dispatch they are
    ``shipped``; at receipt, when the line arrived whole, ``received`` in the buyer's custody
    (shipped first, if they left before dispatch moved them). Packs of a line received short or
    damaged stay ``shipped``: which of them arrived is known only by scanning them (a receive
    scan at the buyer's site identifies each one, orders.scanning)."""
    if not line.serials:
        return
    packs = Serial.objects.filter(
        batch_id=line.batch_id,
        serial_number__in=line.serials,
        shipment_reference=shipment.number,
    ).order_by("pk")
    for serial in packs:
        if serial.state != SerialState.SHIPPED:
            serial = stock.serial_transition(
                serial=serial,
                to_state=SerialState.SHIPPED,
                actor=actor,
                reason=f"left on {shipment.number}: {reason}",
            )
        if to_state == SerialState.RECEIVED:
            stock.serial_transition(
                serial=serial,
                to_state=SerialState.RECEIVED,
                actor=actor,
                reason=f"received from {shipment.number}: {reason}",
                holder=holder,
                shipment_reference="",
            )


DELIVERY_ROLES = (Role.WAREHOUSE_OPERATOR, Role.ORDER_DESK, Role.ADMIN)


@transaction.atomic
def shipment_deliver(*, shipment: Shipment, actor: User, reason: str) -> Shipment:
    """The carrier's confirmation that a dispatched shipment was delivered at the buyer's site
    (proof of delivery), recorded by the seller or by a user of the logistics provider carrying
    it. The buyer's receipt (checking the goods in) follows; it may also come without it."""
    shipment = _lock_shipment(shipment)
    is_carrier = (
        shipment.carrier_partner_id is not None and actor.partner_id == shipment.carrier_partner_id
    )
    if is_carrier:
        require_role(actor, *DELIVERY_ROLES, Role.PARTNER_USER)
    else:
        require_role(actor, *DELIVERY_ROLES)
        _require_member(actor, shipment.order.seller, "the seller or the carrier")
    if shipment.status == ShipmentStatus.DELIVERED:
        raise RuleViolation(
            f"shipment {shipment.number} was delivered already", code="already_delivered"
        )
    if shipment.status in {ShipmentStatus.PLANNED, ShipmentStatus.PICKED}:
        raise RuleViolation(
            f"shipment {shipment.number} is {shipment.status}: it has not been dispatched",
            code="not_dispatched",
        )
    _shipment_transition(shipment, ShipmentStatus.DELIVERED)
    shipment = update_with_reason(
        shipment,
        actor=actor,
        reason=reason,
        changes={"status": ShipmentStatus.DELIVERED, "delivered_at": clock.now()},
        editable={"status", "delivered_at"},
    )
    _announce_shipment("shipment.delivered", shipment)
    return shipment


def _received_lines(
    shipment_lines: dict[int, ShipmentLine], entries: Iterable[Mapping[str, Any]]
) -> dict[int, tuple[int, int]]:
    """Validate the receipt entries: every line once, sound + damaged within what was sent."""
    received: dict[int, tuple[int, int]] = {}
    for entry in entries:
        line = entry.get("line")
        line_id = line.pk if isinstance(line, ShipmentLine) else line
        if isinstance(line_id, bool) or not isinstance(line_id, int):
            raise InvalidInput("each entry names a shipment line", code="invalid_line")
        if line_id not in shipment_lines:
            raise InvalidInput(f"line {line_id} is not on this shipment", code="unknown_line")
        if line_id in received:
            raise InvalidInput(f"line {line_id} appears twice", code="duplicate_line")
        good = whole_number(entry.get("received_quantity"), "received_quantity")
        damaged = whole_number(entry.get("damaged_quantity", 0), "damaged_quantity")
        shipped = shipment_lines[line_id].quantity
        if good + damaged > shipped:
            raise RuleViolation(
                f"line {line_id}: {good} received and {damaged} damaged exceed the {shipped} "
                "units shipped; units over the shipment are not accepted on it",
                code="over_delivery",
            )
        received[line_id] = (good, damaged)
    missing = sorted(set(shipment_lines) - set(received))
    if missing:
        raise InvalidInput(
            f"every line of the shipment is received at once; missing: {missing}",
            code="lines_missing",
        )
    return received


@transaction.atomic
def shipment_receive(
    *, shipment: Shipment, lines: Iterable[Mapping[str, Any]], actor: User, reason: str
) -> Shipment:
    """Check a dispatched shipment in at the buyer's site; ``lines`` are
    ``{line, received_quantity, damaged_quantity}``.

    Sound units go to the buyer's storage (its quarantine, for a lot that is no longer
    released); damaged units to its quarantine; units that did not arrive leave the seller's
    in-transit location as an adjustment, each with its own reason. The order is ``delivered``.
    The serialised packs of every line that arrived whole are ``received`` (see
    _serials_follow).
    """
    require_role(actor, *RECEIVE_ROLES)
    shipment = _lock_shipment(shipment)
    _require_member(actor, shipment.order.buyer, "a member of the buyer")
    if shipment.status == ShipmentStatus.RECEIVED:
        raise RuleViolation(
            f"shipment {shipment.number} was received already", code="already_received"
        )
    if shipment.status not in {ShipmentStatus.DISPATCHED, ShipmentStatus.DELIVERED}:
        raise RuleViolation(
            f"shipment {shipment.number} is {shipment.status}: it has not been dispatched",
            code="not_dispatched",
        )
    _shipment_transition(shipment, ShipmentStatus.RECEIVED)
    order = _lock(Order, shipment.order_id)
    # A line of which nothing was picked shipped nothing: there is nothing to check in.
    shipment_lines = {
        line.pk: line for line in shipment.lines.shipped().select_related("batch").order_by("id")
    }
    received = _received_lines(shipment_lines, list(lines))
    storage = _site_location(shipment.to_site_id, LocationKind.STORAGE)
    quarantine = _site_location(shipment.to_site_id, LocationKind.QUARANTINE)
    places: list[tuple[int, int]] = []
    # Why sound units of a lot go to quarantine instead of storage: the lot is no longer
    # released, or a hold (recall, excursion) names it at the buyer's storage.
    held: dict[int, str] = {}
    for line_id, (good, _damaged) in received.items():
        lot = shipment_lines[line_id].batch
        if good and lot.pk not in held:
            if lot.status != BatchStatus.RELEASED:
                held[lot.pk] = f"lot is {lot.status}, held on receipt"
            else:
                holds = _holds(lot, storage)
                if holds:
                    held[lot.pk] = f"held on receipt ({holds[0].code}): {holds[0].detail}"
    for line_id, (good, damaged) in received.items():
        line = shipment_lines[line_id]
        places.append((line.batch_id, shipment.in_transit_location_id))
        sound_target = quarantine if line.batch_id in held else storage
        for units, target, code in (
            (
                good,
                sound_target,
                "no_quarantine_location" if line.batch_id in held else "no_storage_location",
            ),
            (damaged, quarantine, "no_quarantine_location"),
        ):
            if not units:
                continue
            if target is None:
                raise RuleViolation(
                    f"{shipment.to_site.name} has no active "
                    f"{code.removeprefix('no_').removesuffix('_location')} location",
                    code=code,
                )
            places.append((line.batch_id, target.pk))
    in_transit = shipment.in_transit_location
    _lock_places(places)  # every balance of the receipt, before the first sealed write

    reference = f"shipment:{shipment.number}"
    for line_id, (good, damaged) in received.items():
        line = shipment_lines[line_id]
        lot = line.batch
        short = line.quantity - good - damaged
        if good:
            hold = held.get(lot.pk)
            stock.stock_post_move(
                batch=lot,
                quantity=good,
                kind=MoveKind.DELIVERY,
                actor=actor,
                reason=f"{hold}; {reason}" if hold else reason,
                from_location=in_transit,
                to_location=quarantine if hold else storage,
                reference=reference,
            )
        if damaged:
            stock.stock_post_move(
                batch=lot,
                quantity=damaged,
                kind=MoveKind.DELIVERY,
                actor=actor,
                reason=f"damaged in transit: {damaged} units of lot {lot.lot_number} "
                f"to quarantine; {reason}",
                from_location=in_transit,
                to_location=quarantine,
                reference=reference,
            )
        if short:
            stock.stock_post_move(
                batch=lot,
                quantity=short,
                kind=MoveKind.ADJUSTMENT,
                actor=actor,
                reason=f"short delivery: {short} of {line.quantity} units of lot "
                f"{lot.lot_number} did not arrive on {shipment.number}; {reason}",
                from_location=in_transit,
                reference=reference,
            )
        if good == line.quantity:
            _serials_follow(
                shipment,
                line,
                SerialState.RECEIVED,
                actor=actor,
                reason=reason,
                holder=shipment.order.buyer,
            )
        discrepancy = (
            Discrepancy.DAMAGED if damaged else Discrepancy.SHORT if short else Discrepancy.NONE
        )
        update_with_reason(
            line,
            actor=actor,
            reason=reason,
            changes={
                "received_quantity": good,
                "damaged_quantity": damaged,
                "discrepancy": discrepancy,
            },
            editable={"received_quantity", "damaged_quantity", "discrepancy"},
        )
    shipment = update_with_reason(
        shipment,
        actor=actor,
        reason=reason,
        changes={"status": ShipmentStatus.RECEIVED, "received_at": clock.now()},
        editable={"status", "received_at"},
    )
    # The order is delivered once it is shipped whole and every one of its shipments is in.
    others_open = (
        Shipment.objects.filter(order_id=order.pk)
        .exclude(pk=shipment.pk)
        .exclude(status=ShipmentStatus.RECEIVED)
        .exists()
    )
    if order.status == OrderStatus.SHIPPED and not others_open:
        update_with_reason(
            order,
            actor=actor,
            reason=reason,
            changes={"status": OrderStatus.DELIVERED},
            editable={"status"},
        )
    _announce_shipment("shipment.received", shipment)
    return shipment


# --- returns -------------------------------------------------------------------------------
#
# Saleable-returns verification: a customer returns only units of a lot that were shipped to it
# and received, never more than arrived on that shipment line over all of its returns. Goods
# come back into the seller's returns (or quarantine) location, never into saleable stock; only
# a QA officer's signed disposition restocks or destroys them.

RETURN_REQUEST_ROLES = BUYER_ROLES
RETURN_AUTHORISE_ROLES = SELLER_ROLES
RETURN_RECEIVE_ROLES = (Role.WAREHOUSE_OPERATOR, Role.ADMIN)
# Cold-chain goods (stored at no more than this) come back only with temperature evidence.
COLD_CHAIN_MAX_CELSIUS = Decimal("8")
RETURN_SOURCE_KINDS = frozenset(
    {LocationKind.STORAGE, LocationKind.QUARANTINE, LocationKind.RETURNS}
)


def _return_transition(ret: ReturnRequest, target: str) -> None:
    require_transition(f"return {ret.number}", ret.status, target, RETURN_TRANSITIONS)


def _lock_return(ret: ReturnRequest) -> ReturnRequest:
    locked = ReturnRequest.objects.select_for_update(of=("self",)).get(pk=ret.pk)
    return _with_parties(locked)


def _with_parties(ret: ReturnRequest) -> ReturnRequest:
    """Read the parties and the shipment of ``ret`` (without locking them)."""
    ret.customer = Partner.objects.get(pk=ret.customer_id)
    ret.seller = Partner.objects.get(pk=ret.seller_id)
    ret.shipment = Shipment.objects.select_related("from_site", "to_site").get(pk=ret.shipment_id)
    return ret


def return_payload(ret: ReturnRequest) -> dict[str, Any]:
    """What a return event tells the partners' systems (JSON-ready)."""
    ret = ReturnRequest.objects.select_related("customer", "seller", "shipment").get(pk=ret.pk)
    return {
        "number": ret.number,
        "id": ret.pk,
        "status": ret.status,
        "rma_number": ret.rma_number,
        "customer_gln": ret.customer.gln,
        "seller_gln": ret.seller.gln,
        "shipment": ret.shipment.number,
        "shipment_id": ret.shipment_id,
        "lines": [
            {
                "id": line.pk,
                "shipment_line": line.shipment_line_id,
                "gtin": line.batch.product.gtin,
                "lot": line.batch.lot_number,
                "quantity": line.quantity,
                "reason_code": line.reason_code,
                "disposition": line.disposition,
            }
            for line in ret.lines.select_related("batch__product").order_by("id")
        ],
    }


def _announce_return(event: str, ret: ReturnRequest) -> None:
    announce(event, payload=return_payload(ret), partner_ids=[ret.customer_id, ret.seller_id])


def _not_shipped(shipment_id: Any, customer: Partner | None) -> RuleViolation:
    who = customer.name if customer is not None else "you"
    return RuleViolation(
        f"shipment {shipment_id} was not shipped to and received by {who}",
        code="not_shipped_to_customer",
    )


def returned_quantities(shipment_line_ids: Iterable[int]) -> dict[int, int]:
    """Units of each shipment line held by returns that are not rejected or cancelled."""
    return dict(
        ReturnLine.objects.filter(
            shipment_line_id__in=list(shipment_line_ids),
            return_request__status__in=RETURN_ACTIVE_STATUSES,
        )
        .values("shipment_line_id")
        .annotate(total=Sum("quantity"))
        .values_list("shipment_line_id", "total")
    )


def _returnable(line: ShipmentLine, already: int) -> int:
    """What may still come back on ``line``: the units that arrived (sound and damaged) less
    those already held by returns. Units short-delivered never reached the customer."""
    arrived = (line.received_quantity or 0) + line.damaged_quantity
    return max(arrived - already, 0)


def _is_cold_chain(product: Product) -> bool:
    return product.storage_class.max_celsius <= COLD_CHAIN_MAX_CELSIUS


def _source_location(value: Any, *, customer: Partner, shipment: Shipment) -> Location:
    """The customer's location the units leave from: the one named, or the ship-to site's
    storage, where the shipment put its sound units."""
    if value is None:
        location = _site_location(shipment.to_site_id, LocationKind.STORAGE)
        if location is None:
            raise RuleViolation(
                f"{shipment.to_site.name} has no active storage location to return from",
                code="no_storage_location",
            )
        return location
    location_id = value.pk if isinstance(value, Location) else value
    if isinstance(location_id, bool) or not isinstance(location_id, int):
        raise InvalidInput("from_location names a location", code="invalid_from_location")
    location = (
        Location.objects.select_related("site")
        .filter(pk=location_id, site__partner_id=customer.pk, is_active=True)
        .first()
    )
    if location is None or location.kind not in RETURN_SOURCE_KINDS:
        raise InvalidInput(
            f"location {location_id} is no active storage, quarantine or returns location of "
            f"{customer.name}",
            code="invalid_from_location",
        )
    return location


@transaction.atomic
def return_request_create(
    *,
    shipment: Shipment,
    lines: Iterable[Mapping[str, Any]],
    actor: User,
    reason: str,
    temperature_evidence: str = "",
) -> ReturnRequest:
    """A customer asks to send back units of a shipment it received; ``lines`` are
    ``{shipment_line, quantity, reason_code, from_location?}``.

    Refused unless every line is on that shipment, the shipment was shipped to the actor's
    partner and received, and no line's returns ever exceed what arrived. Cold-chain goods need
    ``temperature_evidence`` (the reference of the storage temperature record).
    """
    require_role(actor, *RETURN_REQUEST_ROLES)
    # Lock order: the shipment (serialising the returns of its lines, so two requests cannot
    # both take the last units), then the number counter, before the first sealed write.
    shipment_id = shipment.pk
    shipment = Shipment.objects.select_for_update(of=("self",)).filter(pk=shipment_id).first()
    if shipment is None:
        raise _not_shipped(shipment_id, actor.partner)
    order = Order.objects.select_related("buyer", "seller").get(pk=shipment.order_id)
    customer = order.buyer
    if not actor.is_superuser and actor.partner_id != customer.pk:
        raise _not_shipped(shipment.pk, actor.partner)
    if shipment.status != ShipmentStatus.RECEIVED:
        raise RuleViolation(
            f"shipment {shipment.number} is {shipment.status}: only goods received are returned",
            code="shipment_not_received",
        )
    lines = list(lines)
    if not lines:
        raise InvalidInput("a return needs at least one line", code="empty_return")
    if len(lines) > MAX_LINES:
        raise InvalidInput(f"a return has at most {MAX_LINES} lines", code="too_many_lines")
    # Saleable-returns verification reads only lines that shipped units of their lot.
    shipment_lines = {
        line.pk: line
        for line in shipment.lines.shipped()
        .select_related("batch__product__storage_class")
        .order_by("id")
    }
    already = returned_quantities(shipment_lines)
    evidence = (temperature_evidence or "").strip()
    planned: list[dict[str, Any]] = []
    seen: set[int] = set()
    for entry in lines:
        value = entry.get("shipment_line")
        line_id = value.pk if isinstance(value, ShipmentLine) else value
        if isinstance(line_id, bool) or not isinstance(line_id, int):
            raise InvalidInput("each line names a shipment line", code="invalid_line")
        if line_id not in shipment_lines:
            raise RuleViolation(
                f"shipment line {line_id} is not on shipment {shipment.number}: its units were "
                f"not shipped to {customer.name} on it",
                code="not_shipped_to_customer",
            )
        if line_id in seen:
            raise InvalidInput(f"shipment line {line_id} appears twice", code="duplicate_line")
        seen.add(line_id)
        quantity = _line_quantity(entry.get("quantity"))
        reason_code = entry.get("reason_code")
        if reason_code not in ReturnReason.values:
            raise InvalidInput(
                f"reason_code is one of {', '.join(ReturnReason.values)}",
                code="invalid_reason_code",
            )
        line = shipment_lines[line_id]
        returnable = _returnable(line, already.get(line_id, 0))
        if quantity > returnable:
            raise RuleViolation(
                f"lot {line.batch.lot_number}: {quantity} units asked back, but only "
                f"{returnable} of those received on {shipment.number} remain returnable",
                code="quantity_exceeds_shipped",
                extra={"shipment_line": line_id, "returnable": returnable},
            )
        if _is_cold_chain(line.batch.product) and not evidence:
            raise InvalidInput(
                f"{line.batch.product.name} is cold-chain "
                f"(≤ {line.batch.product.storage_class.max_celsius} °C): a return needs the "
                "reference of its storage temperature evidence",
                code="temperature_evidence_required",
            )
        source = _source_location(entry.get("from_location"), customer=customer, shipment=shipment)
        planned.append(
            {
                "shipment_line": line,
                "batch": line.batch,
                "quantity": quantity,
                "reason_code": reason_code,
                "from_location": source,
            }
        )
    _check_available(planned)

    number = _next_number(
        ReturnNumberCounter, "RT", clock.localdate()
    )  # a lock, taken before the first seal
    ret = create_with_reason(
        ReturnRequest,
        actor=actor,
        reason=reason,
        number=number,
        customer=customer,
        seller=order.seller,
        shipment=shipment,
        temperature_evidence=evidence,
        created_by=actor,
    )
    for fields in planned:
        create_with_reason(ReturnLine, actor=actor, reason=reason, return_request=ret, **fields)
    _announce_return("return.requested", ret)
    return ret


def _check_available(planned: Iterable[Mapping[str, Any]]) -> None:
    """Refuse a line whose units the customer no longer holds, available, where it says."""
    needed: dict[tuple[int, int], int] = {}
    lots: dict[int, Batch] = {}
    for fields in planned:
        key = (fields["batch"].pk, fields["from_location"].pk)
        needed[key] = needed.get(key, 0) + fields["quantity"]
        lots[fields["batch"].pk] = fields["batch"]
    for (batch_id, location_id), quantity in sorted(needed.items()):
        balance = StockBalance.objects.filter(batch_id=batch_id, location_id=location_id).first()
        available = balance.on_hand - balance.allocated if balance else 0
        if available < quantity:
            raise RuleViolation(
                f"location {location_id} holds {available} available units of lot "
                f"{lots[batch_id].lot_number}; {quantity} would be returned",
                code="insufficient_stock",
                extra={"available": available},
            )


@transaction.atomic
def return_authorise(
    *, return_request: ReturnRequest, actor: User, reason: str, rma_number: str = ""
) -> ReturnRequest:
    """The seller's order desk or admin authorises a requested return and issues its RMA
    number (the one given, or one derived from the return's number)."""
    require_role(actor, *RETURN_AUTHORISE_ROLES)
    ret = _lock_return(return_request)
    _require_member(actor, ret.seller, "a member of the seller")
    _return_transition(ret, ReturnStatus.AUTHORISED)
    rma = (rma_number or "").strip() or f"RMA-{ret.number.removeprefix('RT-')}"
    if ReturnRequest.objects.filter(seller_id=ret.seller_id, rma_number=rma).exists():
        raise RuleViolation(
            f"{ret.seller.name} already issued RMA number {rma}", code="duplicate_rma_number"
        )
    ret = update_with_reason(
        ret,
        actor=actor,
        reason=reason,
        changes={
            "status": ReturnStatus.AUTHORISED,
            "rma_number": rma,
            "authorised_at": clock.now(),
        },
        editable={"status", "rma_number", "authorised_at"},
    )
    _announce_return("return.authorised", ret)
    return ret


@transaction.atomic
def return_reject(*, return_request: ReturnRequest, actor: User, reason: str) -> ReturnRequest:
    """The seller's order desk or admin refuses a requested return (final)."""
    require_role(actor, *RETURN_AUTHORISE_ROLES)
    ret = _lock_return(return_request)
    _require_member(actor, ret.seller, "a member of the seller")
    if ret.status != ReturnStatus.REQUESTED:
        raise RuleViolation(
            f"return {ret.number} is {ret.status}: only a requested return is rejected",
            code="invalid_transition",
        )
    return update_with_reason(
        ret,
        actor=actor,
        reason=reason,
        changes={"status": ReturnStatus.REJECTED},
        editable={"status"},
    )


@transaction.atomic
def return_cancel(*, return_request: ReturnRequest, actor: User, reason: str) -> ReturnRequest:
    """The customer withdraws its return while the goods have not been received."""
    require_role(actor, *RETURN_REQUEST_ROLES)
    ret = _lock_return(return_request)
    _require_member(actor, ret.customer, "a member of the customer")
    _return_transition(ret, ReturnStatus.CANCELLED)
    return update_with_reason(
        ret,
        actor=actor,
        reason=reason,
        changes={"status": ReturnStatus.CANCELLED},
        editable={"status"},
    )


def _returns_location(site_id: int) -> Location | None:
    """Where returned goods wait for QA at a site: its returns location, else its quarantine;
    never saleable storage."""
    return _site_location(site_id, LocationKind.RETURNS) or _site_location(
        site_id, LocationKind.QUARANTINE
    )


@transaction.atomic
def return_receive(*, return_request: ReturnRequest, actor: User, reason: str) -> ReturnRequest:
    """The seller's warehouse checks an authorised return in: each line's units leave the
    customer's location for the seller's returns (or quarantine) location at the site that
    shipped them (``MoveKind.RETURN``), where they wait for QA's disposition."""
    require_role(actor, *RETURN_RECEIVE_ROLES)
    ret = _lock_return(return_request)
    _require_member(actor, ret.seller, "a member of the seller")
    if ret.status == ReturnStatus.RECEIVED:
        raise RuleViolation(f"return {ret.number} was received already", code="already_received")
    _return_transition(ret, ReturnStatus.RECEIVED)
    target = _returns_location(ret.shipment.from_site_id)
    if target is None:
        raise RuleViolation(
            f"{ret.shipment.from_site.name} has no active returns or quarantine location",
            code="no_returns_location",
        )
    lines = list(ret.lines.select_related("batch", "from_location").order_by("id"))
    # Lock order: every balance the receipt touches, then check the customer still holds the
    # units, all before the first sealed write.
    _lock_places(
        [(line.batch_id, line.from_location_id) for line in lines]
        + [(line.batch_id, target.pk) for line in lines]
    )
    _check_available(
        {"batch": line.batch, "from_location": line.from_location, "quantity": line.quantity}
        for line in lines
    )
    reference = f"return:{ret.number}"
    for line in lines:
        stock.stock_post_move(
            batch=line.batch,
            quantity=line.quantity,
            kind=MoveKind.RETURN,
            actor=actor,
            reason=f"returned ({line.get_reason_code_display().lower()}) under "
            f"{ret.rma_number}: {reason}",
            from_location=line.from_location,
            to_location=target,
            reference=reference,
        )
    ret = update_with_reason(
        ret,
        actor=actor,
        reason=reason,
        changes={
            "status": ReturnStatus.RECEIVED,
            "received_at": clock.now(),
            "returns_location": target,
        },
        editable={"status", "received_at", "returns_location"},
    )
    _announce_return("return.received", ret)
    return ret


class ReturnDecision(NamedTuple):
    """A return after QA's signed disposition, and the signature that made it."""

    return_request: ReturnRequest
    signature: Signature


def _disposition_plan(
    ret: ReturnRequest, signer: User, dispositions: Mapping[int, str], today: datetime.date
) -> list[tuple[ReturnLine, str]]:
    """Check who disposes, of what, and that each restocked lot may be sold again."""
    if signer is None or not signer.is_active:
        raise NotPermitted("an active QA officer signs this disposition")
    # No superuser shortcut: disposing of returned goods is the seller's QA decision.
    if signer.role != Role.QA_OFFICER:
        raise NotPermitted(
            f"returned goods are disposed of by a QA officer; you are {signer.role}",
            code="role_not_permitted",
        )
    if signer.partner_id != ret.seller_id:
        raise NotPermitted(
            f"return {ret.number} is disposed of by its seller's QA, not your organisation",
            code="not_your_organisation",
        )
    if ret.status == ReturnStatus.DISPOSED:
        raise RuleViolation(f"return {ret.number} was disposed of already", code="already_disposed")
    _return_transition(ret, ReturnStatus.DISPOSED)
    lines = {
        line.pk: line for line in ret.lines.select_related("batch", "from_location").order_by("id")
    }
    unknown = sorted(set(dispositions) - set(lines), key=str)
    if unknown:
        raise InvalidInput(f"lines {unknown} are not on this return", code="unknown_line")
    missing = sorted(set(lines) - set(dispositions))
    if missing:
        raise InvalidInput(
            f"every line of the return is disposed of at once; missing: {missing}",
            code="lines_missing",
        )
    plan = []
    for line_id, line in lines.items():
        disposition = dispositions[line_id]
        if disposition not in ReturnDisposition.values:
            raise InvalidInput(
                f"a disposition is one of {', '.join(ReturnDisposition.values)}",
                code="invalid_disposition",
            )
        lot = line.batch
        if disposition == ReturnDisposition.RESTOCK:
            if line.reason_code in NEVER_RESTOCKED:
                raise RuleViolation(
                    f"lot {lot.lot_number} came back as {line.reason_code}: it is never restocked",
                    code="not_restockable",
                )
            if lot.status != BatchStatus.RELEASED:
                raise RuleViolation(
                    f"lot {lot.lot_number} is {lot.status}: it cannot enter saleable storage",
                    code="batch_not_released",
                )
            if lot.is_expired_on(today):
                raise RuleViolation(
                    f"lot {lot.lot_number} expired on {lot.expires_on}: it cannot be restocked",
                    code="batch_expired",
                )
            # A hold (recall, excursion) on the lot where the units were kept, or where they
            # wait now, keeps them out of saleable stock: the hold's own code answers.
            for place in (line.from_location, ret.returns_location):
                _refuse_held(lot, place)
        plan.append((line, disposition))
    return plan


def return_dispose(
    *,
    return_request: ReturnRequest,
    dispositions: Mapping[int, str],
    signer: User,
    password: str,
    reason: str,
    request: HttpRequest | None = None,
    on: datetime.date | None = None,
) -> ReturnDecision:
    """QA decides, under electronic signature, what becomes of every line of a received return:
    ``restock`` moves its units from returns to the site's saleable storage (a released,
    unexpired lot only, never goods returned damaged, expired or recalled); ``destroy`` writes
    them out of the returns location as a destruction.

    The password is checked before the transaction, as for a lot's release: a wrong password
    refuses, writes nothing, and still counts towards the lockout.
    """
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a disposition needs a reason", code="reason_required")
    today = on or clock.localdate()
    ret = _with_parties(ReturnRequest.objects.get(pk=return_request.pk))
    _disposition_plan(ret, signer, dispositions, today)
    verified = signature_verify_password(signer=signer, password=password, request=request)
    with transaction.atomic():
        locked = _lock_return(ret)
        # Decided again under the locks: another QA officer may have decided meanwhile, and a
        # lot may have been recalled since.
        list(
            Batch.objects.select_for_update()
            .filter(pk__in=locked.lines.values("batch_id"))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        plan = _disposition_plan(locked, signer, dispositions, today)
        returns = locked.returns_location
        storage = None
        if any(disposition == ReturnDisposition.RESTOCK for _, disposition in plan):
            storage = _site_location(returns.site_id, LocationKind.STORAGE)
            if storage is None:
                raise RuleViolation(
                    f"{returns.site.name} has no active storage location to restock into",
                    code="no_storage_location",
                )
        _lock_places(
            [(line.batch_id, returns.pk) for line, _ in plan]
            + [
                (line.batch_id, storage.pk)
                for line, disposition in plan
                if disposition == ReturnDisposition.RESTOCK
            ]
        )
        reference = f"return:{locked.number}"
        for line, disposition in plan:
            restock = disposition == ReturnDisposition.RESTOCK
            stock.stock_post_move(
                batch=line.batch,
                quantity=line.quantity,
                kind=MoveKind.TRANSFER if restock else MoveKind.DESTRUCTION,
                actor=signer,
                reason=f"return {locked.number} {'restocked' if restock else 'destroyed'} "
                f"by QA: {reason}",
                from_location=returns,
                to_location=storage if restock else None,
                reference=reference,
            )
            update_with_reason(
                line,
                actor=signer,
                reason=reason,
                changes={"disposition": disposition},
                editable={"disposition"},
            )
        locked = update_with_reason(
            locked,
            actor=signer,
            reason=reason,
            changes={"status": ReturnStatus.DISPOSED, "disposed_at": clock.now()},
            editable={"status", "disposed_at"},
        )
        signature = signature_apply(
            verified=verified,
            meaning=SignatureMeaning.RETURN_DISPOSITION,
            reason=reason,
            record=locked,
        )
        _announce_return("return.disposed", locked)
    return ReturnDecision(return_request=locked, signature=signature)
