"""Read-side questions about agreements and orders: which agreement is in force, may this sell?"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.db.models import Q, QuerySet

from batches.models import StockAllocation
from partners.models import Partner
from partners.selectors import partner_may_receive

from .models import Agreement, AgreementPrice, AgreementStatus, Order, OrderLine, OrderStatus


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
