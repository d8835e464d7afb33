"""Read-side questions about agreements and orders: which agreement is in force, may this sell?"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.db.models import Q, QuerySet

from batches.models import StockAllocation
from partners.models import Partner
from partners.selectors import partner_may_receive

from .models import (
    Agreement,
    AgreementPrice,
    AgreementStatus,
    Order,
    OrderLine,
    OrderStatus,
    Shipment,
    ShipmentLine,
)


def agreement_in_force(
    *, supplier: Partner, customer: Partner, on: datetime.date
) -> Agreement | None:
    """The active agreement between ``supplier`` and ``customer`` valid on ``on``, if any.

    The services never let two active agreements of one pair overlap, so there is at most one.
    """
    return (
        Agreement.objects.filter(
            supplier=supplier,
            customer=customer,
            status=AgreementStatus.ACTIVE,
            valid_from__lte=on,
            valid_until__gte=on,
        )
        .order_by("valid_from")
        .first()
    )


def agreements_overlapping(
    *,
    supplier: Partner,
    customer: Partner,
    valid_from: datetime.date,
    valid_until: datetime.date,
    exclude_pk: int | None = None,
) -> QuerySet[Agreement]:
    """Active or suspended agreements of the pair whose validity overlaps the given period."""
    queryset = Agreement.objects.filter(
        supplier=supplier,
        customer=customer,
        status__in=[AgreementStatus.ACTIVE, AgreementStatus.SUSPENDED],
        valid_from__lte=valid_until,
        valid_until__gte=valid_from,
    )
    return queryset.exclude(pk=exclude_pk) if exclude_pk else queryset


def agreements_visible_to(user) -> QuerySet[Agreement]:
    """Agreements where the user's partner is supplier or customer; regulators read all."""
    queryset = Agreement.objects.select_related("supplier", "customer").prefetch_related(
        "prices", "targets"
    )
    if user.sees_everything:
        return queryset
    return queryset.filter(Q(supplier_id=user.partner_id) | Q(customer_id=user.partner_id))


def orders_visible_to(user) -> QuerySet[Order]:
    """The buyer's users see their orders; the seller's see them once submitted (a draft is the
    buyer's working copy); regulators and superusers read all."""
    queryset = Order.objects.select_related("buyer", "seller", "ship_to").prefetch_related("lines")
    if user.sees_everything:
        return queryset
    return queryset.filter(
        Q(buyer_id=user.partner_id) | (Q(seller_id=user.partner_id) & ~Q(status=OrderStatus.DRAFT))
    )


def line_allocations(line: OrderLine, *, status: str | None = None) -> QuerySet[StockAllocation]:
    """The stock allocations made for ``line`` (the ledger links them by reference)."""
    queryset = StockAllocation.objects.filter(reference=line.allocation_reference)
    return queryset.filter(status=status) if status else queryset


@dataclass(frozen=True)
class OrderRuleDecision:
    """Whether an order may proceed; when not, which rule failed and for which product."""

    allowed: bool
    code: str
    detail: str
    agreement: Agreement | None = None
    prices: dict[int, AgreementPrice] = field(default_factory=dict)
    product_id: int | None = None


def check_order_rules(order: Order, *, on: datetime.date) -> OrderRuleDecision:
    """May ``order``'s seller supply its buyer with each of its products on ``on``?

    Checked in this order, the first failure answering: the buyer holds a licence valid that day
    covering each product (controlled substances need a licence that says so); an agreement
    between seller and buyer is in force; the buyer's region lies in its territory; each product
    is priced under it. On success the decision carries the agreement and its prices by product.
    """
    buyer, seller = order.buyer, order.seller
    lines = list(order.lines.select_related("product").order_by("id"))
    for line in lines:
        licence = partner_may_receive(partner=buyer, product=line.product, on=on)
        if not licence.allowed:
            return OrderRuleDecision(
                False,
                licence.code,
                f"{line.product.name} ({line.product.gtin}): {licence.detail}",
                product_id=line.product_id,
            )
    agreement = agreement_in_force(supplier=seller, customer=buyer, on=on)
    if agreement is None:
        return OrderRuleDecision(
            False,
            "no_agreement",
            f"no agreement of {seller.name} with {buyer.name} is in force on {on.isoformat()}",
        )
    if not agreement.covers_region(buyer.region):
        return OrderRuleDecision(
            False,
            "outside_territory",
            f"{buyer.name}'s region {buyer.region} lies outside the agreement's territory "
            f"({', '.join(agreement.territory)})",
            agreement=agreement,
        )
    prices = {
        price.product_id: price
        for price in AgreementPrice.objects.filter(
            agreement=agreement, product_id__in=[line.product_id for line in lines]
        )
    }
    for line in lines:
        if line.product_id not in prices:
            return OrderRuleDecision(
                False,
                "product_not_in_agreement",
                f"{line.product.name} ({line.product.gtin}) is not priced under the agreement "
                f"of {seller.name} with {buyer.name}",
                agreement=agreement,
                product_id=line.product_id,
            )
    return OrderRuleDecision(True, "allowed", "every rule holds", agreement, prices)


# --- shipments -----------------------------------------------------------------------------

# 21 U.S.C. 360eee(27) (FD&C Act §581(27)): the transaction statement, made by the entity
# transferring ownership of the product.
TRANSACTION_STATEMENT = (
    "The entity transferring ownership in this transaction: "
    "(A) is authorized as required under the Drug Supply Chain Security Act; "
    "(B) received the product from a person that is authorized as required under the Drug "
    "Supply Chain Security Act; "
    "(C) received transaction information and a transaction statement from the prior owner of "
    "the product, as required under section 582; "
    "(D) did not knowingly ship a suspect or illegitimate product; "
    "(E) had systems and processes in place to comply with verification requirements under "
    "section 582; "
    "(F) did not knowingly provide false transaction information; and "
    "(G) did not knowingly alter the transaction history."
)


def shipments_visible_to(user) -> QuerySet[Shipment]:
    """Shipments of orders where the user's partner is buyer or seller; regulators read all.

    Everything about a shipment — its lines, packages, transaction information, EPCIS events,
    readings, history — is read through this scope. The logistics provider carrying a shipment
    is no party to it: it reads the delivery fields only, through
    :func:`shipments_for_delivery`.
    """
    return _shipments().filter(shipment_party_scope(user))


def shipments_for_delivery(user) -> QuerySet[Shipment]:
    """The shipments whose delivery the user may see and confirm: the parties' (as
    :func:`shipments_visible_to`) and those the user's partner carries as ``carrier_partner``.
    To a user who is no party (:func:`is_shipment_party`), callers show the delivery fields
    only."""
    if user.sees_everything or user.partner_id is None:
        return shipments_visible_to(user)
    return _shipments().filter(shipment_party_scope(user) | Q(carrier_partner_id=user.partner_id))


def shipment_party_scope(user) -> Q:
    """The condition a shipment meets when ``user`` is party to it (see shipments_visible_to),
    to narrow a wider scope with."""
    if user.sees_everything:
        return Q()
    if user.partner_id is None:
        return Q(pk__in=[])  # nobody's party: matches no shipment
    return Q(order__buyer_id=user.partner_id) | Q(order__seller_id=user.partner_id)


def _shipments() -> QuerySet[Shipment]:
    return Shipment.objects.select_related(
        "order__buyer", "order__seller", "from_site", "to_site"
    ).prefetch_related("lines", "packages__lines")


def is_shipment_party(user, shipment: Shipment) -> bool:
    """Whether ``user`` reads the whole shipment: its buyer's or seller's users, regulators
    and superusers. A carrier's users are not (they read the delivery fields)."""
    if user.sees_everything:
        return True
    return user.partner_id is not None and user.partner_id in {
        shipment.order.buyer_id,
        shipment.order.seller_id,
    }


def _party(partner: Partner, site) -> dict:
    return {
        "name": partner.name,
        "gln": partner.gln,
        "site": {
            "name": site.name,
            "gln": site.gln,
            "address_line": site.address_line,
            "postal_code": site.postal_code,
            "city": site.city,
            "country": site.country,
        },
    }


def lot_previous_owners(*, batch_id: int, owner: Partner, before) -> list[dict]:
    """The earlier transactions of a lot that brought it to ``owner``, oldest first.

    Walks the shipment lines backwards: each shipment of the lot into the current owner sent
    before ``before``, then the shipments into that shipment's seller, and so on. A lot usually
    has a handful of tiers, so one query per tier is cheap.
    """
    found: dict[int, dict] = {}
    frontier = [(owner.pk, before)]
    while frontier:
        owner_id, until = frontier.pop()
        # Only lines that shipped units of the lot: a line of which nothing was picked is no
        # transaction of the lot.
        shipped = ShipmentLine.objects.shipped().filter(
            batch_id=batch_id,
            shipment__order__buyer_id=owner_id,
            shipment__dispatched_at__lt=until,
        )
        quantities: dict[int, int] = {}
        for shipment_id, quantity in shipped.values_list("shipment_id", "quantity"):
            quantities[shipment_id] = quantities.get(shipment_id, 0) + quantity
        shipments = Shipment.objects.filter(pk__in=list(quantities)).select_related(
            "order__buyer", "order__seller", "from_site", "to_site"
        )
        for shipment in shipments:
            if shipment.pk in found:
                continue
            quantity = quantities[shipment.pk]
            found[shipment.pk] = {
                "shipment": shipment.number,
                "transaction_date": shipment.dispatched_at.isoformat(),
                "quantity": quantity,
                "seller": _party(shipment.order.seller, shipment.from_site),
                "buyer": _party(shipment.order.buyer, shipment.to_site),
            }
            frontier.append((shipment.order.seller_id, shipment.dispatched_at))
    return sorted(found.values(), key=lambda entry: entry["transaction_date"])


def shipment_transaction_information(shipment: Shipment) -> dict:
    """DSCSA-style transaction information, history and statement of a dispatched shipment."""
    shipment = Shipment.objects.select_related(
        "order__buyer", "order__seller", "from_site", "to_site"
    ).get(pk=shipment.pk)
    order = shipment.order
    lines = list(
        ShipmentLine.objects.filter(shipment=shipment)
        .shipped()
        .select_related("batch__product")
        .order_by("id")
    )
    history_by_lot = {
        batch_id: lot_previous_owners(
            batch_id=batch_id, owner=order.seller, before=shipment.dispatched_at
        )
        for batch_id in {line.batch_id for line in lines}
    }
    return {
        "shipment": shipment.number,
        "order": order.number,
        "transaction_date": shipment.dispatched_at.date().isoformat(),
        "dispatched_at": shipment.dispatched_at.isoformat(),
        "seller": _party(order.seller, shipment.from_site),
        "buyer": _party(order.buyer, shipment.to_site),
        "lines": [
            {
                "product_name": line.batch.product.name,
                "gtin": line.batch.product.gtin,
                "strength": line.batch.product.strength,
                "dosage_form": line.batch.product.dosage_form,
                "pack_size": line.batch.product.pack_size,
                "lot": line.batch.lot_number,
                "expires_on": line.batch.expires_on.isoformat(),
                "quantity": line.quantity,
                "previous_owners": history_by_lot[line.batch_id],
            }
            for line in lines
        ],
        "transaction_statement": TRANSACTION_STATEMENT,
    }
