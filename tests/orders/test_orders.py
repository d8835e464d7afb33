"""Order services: the lifecycle, the rules checked on submission, FEFO allocation with
backorders, and cancellation that gives the stock back."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal

import pytest

from audit import chain
from audit.history import save_with_reason
from batches import services as stock
from batches.models import AllocationStatus, StockAllocation, StockBalance
from orders import services
from orders.models import Order, OrderLine, OrderStatus
from orders.selectors import check_order_rules, line_allocations
from partners.models import Role
from pharmadms.exceptions import InvalidInput, NotFound, NotPermitted, RuleViolation
from tests.factories import BatchFactory, SiteFactory, UserFactory
from tests.orders.conftest import allocated_units, confirmed_order, days, place_order


def order_counts() -> tuple[int, ...]:
    return (
        Order.objects.count(),
        OrderLine.objects.count(),
        Order.history.count(),
        OrderLine.history.count(),
        StockAllocation.objects.count(),
        allocated_units(),
    )


def set_status(order: Order, status: str) -> None:
    """Put an order where a later step (shipping, delivery) would have taken it."""
    order.status = status
    save_with_reason(
        order, actor=None, reason="test: later lifecycle step", update_fields=["status"]
    )


# --- creating a draft ------------------------------------------------------------------------


def test_a_buyer_creates_a_draft_with_its_lines_and_a_number(trade):
    order = place_order(trade, (trade.vaccine, 10), (trade.insulin, 2))
    again = place_order(trade, (trade.vaccine, 1))
    assert order.status == OrderStatus.DRAFT
    assert re.fullmatch(rf"SO-{trade.today.year}-\d{{6}}", order.number)
    assert int(again.number[-6:]) == int(order.number[-6:]) + 1
    assert [(line.product, line.quantity, line.unit_price) for line in order.lines.all()] == [
        (trade.vaccine, 10, None),
        (trade.insulin, 2, None),
    ]
    first = order.history.get()
    assert (first.history_user, first.history_change_reason) == (
        trade.buyer_user,
        "weekly replenishment",
    )
    assert all(line.history.get().history_user == trade.buyer_user for line in order.lines.all())


@pytest.mark.parametrize(
    ("lines", "code"),
    [
        ([], "empty_order"),
        ([("vaccine", 0)], "invalid_quantity"),
        ([("vaccine", -5)], "invalid_quantity"),
        ([("vaccine", 2.5)], "invalid_quantity"),
        ([("vaccine", True)], "invalid_quantity"),
        ([("vaccine", 10**9)], "invalid_quantity"),
        ([("vaccine", 1), ("insulin", 0)], "invalid_quantity"),
        ([("vaccine", 1), ("vaccine", 2)], "duplicate_product"),
    ],
)
def test_bad_lines_are_refused_and_nothing_is_written(trade, lines, code):
    before = order_counts()
    with pytest.raises(InvalidInput) as refused:
        place_order(trade, *[(getattr(trade, name), quantity) for name, quantity in lines])
    assert refused.value.code == code
    assert order_counts() == before


def test_an_order_ships_to_a_site_of_the_buyer(trade):
    before = order_counts()
    with pytest.raises(InvalidInput) as refused:
        services.order_create(
            buyer=trade.buyer,
            seller=trade.seller,
            ship_to=trade.net.other_site,
            lines=[{"product": trade.vaccine, "quantity": 1}],
            actor=trade.buyer_user,
            reason="r",
        )
    assert refused.value.code == "invalid_ship_to"
    assert order_counts() == before


def test_a_partner_does_not_order_from_itself(trade):
    with pytest.raises(InvalidInput) as refused:
        services.order_create(
            buyer=trade.buyer,
            seller=trade.buyer,
            ship_to=trade.net.wholesaler_site,
            lines=[{"product": trade.vaccine, "quantity": 1}],
            actor=trade.buyer_user,
            reason="r",
        )
    assert refused.value.code == "same_partner"


def test_only_the_buyers_ordering_roles_create_orders(trade):
    before = order_counts()
    with pytest.raises(NotPermitted) as refused:
        place_order(trade, (trade.vaccine, 1), actor=trade.net.wholesaler_qa)
    assert refused.value.code == "role_not_permitted"
    with pytest.raises(NotPermitted) as refused:
        place_order(trade, (trade.vaccine, 1), actor=trade.net.other_user)
    assert refused.value.code == "not_a_party"
    with pytest.raises(NotPermitted):
        place_order(trade, (trade.vaccine, 1), actor=trade.net.regulator)
    assert order_counts() == before
    assert place_order(trade, (trade.vaccine, 1), actor=trade.buyer_desk).status == "draft"


# --- submission and its rules ----------------------------------------------------------------


def test_submission_takes_the_prices_of_the_agreement_in_force(trade):
    order = place_order(trade, (trade.vaccine, 10), (trade.insulin, 4))
    services.order_submit(order=order, actor=trade.buyer_user, reason="send to Acme")
    order.refresh_from_db()
    assert order.status == OrderStatus.SUBMITTED
    assert order.agreement == trade.agreement
    assert order.submitted_at is not None
    assert [(line.unit_price, line.currency) for line in order.lines.all()] == [
        (Decimal("12.5000"), "EUR"),
        (Decimal("7.2500"), "EUR"),
    ]
    assert [line.line_total for line in order.lines.all()] == [Decimal("125"), Decimal("29")]
    latest = order.history.latest()
    assert (latest.history_user, latest.history_change_reason) == (trade.buyer_user, "send to Acme")


def expire_licence(t) -> None:
    t.licence.valid_until = t.today - datetime.timedelta(days=1)
    t.licence.valid_from = t.today - datetime.timedelta(days=400)
    save_with_reason(t.licence, actor=t.net.wholesaler_qa, reason="test: lapsed")


def narrow_licence(t) -> None:
    t.licence.product_categories = ["vaccine"]
    save_with_reason(t.licence, actor=t.net.wholesaler_qa, reason="test: narrowed")


def suspend_agreement(t) -> None:
    services.agreement_update(
        agreement=t.agreement, actor=t.seller_desk, reason="payment overdue", status="suspended"
    )


def move_territory(t) -> None:
    services.agreement_update(
        agreement=t.agreement, actor=t.seller_desk, reason="territory", territory=["AT", "DE-BW"]
    )


@pytest.mark.parametrize(
    ("arrange", "product", "code", "names_product"),
    [
        (expire_licence, "vaccine", "no_valid_licence", True),
        (narrow_licence, "insulin", "licence_scope_excludes_product", True),
        (None, "opioid", "licence_excludes_controlled", True),
        (suspend_agreement, "vaccine", "no_agreement", False),
        (move_territory, "vaccine", "outside_territory", False),
        (None, "unpriced", "product_not_in_agreement", True),
    ],
)
def test_submission_is_refused_when_a_rule_fails(trade, arrange, product, code, names_product):
    """Each rule refuses with its own code (409), the detail names the product, and the draft
    stays exactly as it was."""
    if arrange:
        arrange(trade)
    order = place_order(trade, (getattr(trade, product), 5))
    before = order_counts()
    with pytest.raises(RuleViolation) as refused:
        services.order_submit(order=order, actor=trade.buyer_user, reason="send")
    assert refused.value.code == code
    assert refused.value.status_code == 409
    if names_product:
        assert getattr(trade, product).name in refused.value.detail
    assert order_counts() == before
    order.refresh_from_db()
    assert (order.status, order.agreement) == (OrderStatus.DRAFT, None)
    assert order.lines.get().unit_price is None


def test_an_unlicensed_buyer_is_refused(trade):
    """A partner that never held a licence (South Wholesale) under an agreement of its own."""
    services.agreement_create(
        supplier=trade.seller,
        customer=trade.net.other,
        territory=["DE"],
        valid_from=trade.today,
        valid_until=days(365),
        actor=trade.seller_desk,
        reason="new customer",
    )
    desk = UserFactory(partner=trade.net.other, role=Role.ORDER_DESK)
    order = services.order_create(
        buyer=trade.net.other,
        seller=trade.seller,
        ship_to=trade.net.other_site,
        lines=[{"product": trade.vaccine, "quantity": 1}],
        actor=desk,
        reason="first order",
    )
    with pytest.raises(RuleViolation) as refused:
        services.order_submit(order=order, actor=desk, reason="send")
    assert refused.value.code == "no_valid_licence"


def test_a_controlled_substance_needs_a_licence_that_says_so(trade):
    trade.licence.covers_controlled_substances = True
    save_with_reason(trade.licence, actor=trade.net.wholesaler_qa, reason="BtM licence")
    order = place_order(trade, (trade.opioid, 5))
    services.order_submit(order=order, actor=trade.buyer_user, reason="send")
    assert order.lines.get().unit_price == Decimal("3.1000")


def test_the_rules_are_judged_on_the_day_asked(trade):
    """check_order_rules is a selector the dispatch step will call again: the same order can
    pass today and fail on a day its buyer's licence no longer covers."""
    order = place_order(trade, (trade.vaccine, 5))
    assert check_order_rules(order, on=trade.today).allowed
    late = check_order_rules(order, on=datetime.date(2100, 1, 1))
    assert (late.allowed, late.code) == (False, "no_valid_licence")


def test_a_territory_code_covers_its_subdivisions(trade):
    services.agreement_update(
        agreement=trade.agreement, actor=trade.seller_desk, reason="t", territory=["DE-BY"]
    )
    order = place_order(trade, (trade.vaccine, 5))
    assert check_order_rules(order, on=trade.today).allowed  # North is in DE-BY
    services.agreement_update(
        agreement=trade.agreement, actor=trade.seller_desk, reason="t", territory=["DE-B"]
    )
    assert check_order_rules(order, on=trade.today).code == "outside_territory"


def test_only_the_buyer_submits_and_only_a_draft(trade):
    order = place_order(trade, (trade.vaccine, 5))
    with pytest.raises(NotPermitted):
        services.order_submit(order=order, actor=trade.seller_desk, reason="send")
    services.order_submit(order=order, actor=trade.buyer_user, reason="send")
    with pytest.raises(RuleViolation) as refused:
        services.order_submit(order=order, actor=trade.buyer_user, reason="send again")
    assert refused.value.code == "invalid_transition"


# --- confirmation ----------------------------------------------------------------------------


def test_the_seller_confirms_a_submitted_order(trade):
    order = place_order(trade, (trade.vaccine, 5))
    with pytest.raises(RuleViolation) as refused:
        services.order_confirm(order=order, actor=trade.seller_desk, reason="ok")
    assert refused.value.code == "invalid_transition"  # still a draft
    services.order_submit(order=order, actor=trade.buyer_user, reason="send")
    with pytest.raises(NotPermitted):
        services.order_confirm(order=order, actor=trade.buyer_desk, reason="ok")
    with pytest.raises(NotPermitted):
        services.order_confirm(order=order, actor=trade.net.warehouse, reason="ok")
    services.order_confirm(order=order, actor=trade.seller_desk, reason="accepted")
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED


# --- allocation ------------------------------------------------------------------------------


def allocations_of(order: Order) -> list[tuple[str, int]]:
    return [
        (allocation.batch.lot_number, allocation.quantity)
        for line in order.lines.order_by("id")
        for allocation in line_allocations(line).select_related("batch").order_by("id")
    ]


def test_allocation_takes_earliest_expiry_first_and_never_a_bad_lot(trade):
    order = confirmed_order(trade, (trade.vaccine, 50))
    services.order_allocate(order=order, actor=trade.net.warehouse, reason="pick list")
    order.refresh_from_db()
    assert order.status == OrderStatus.ALLOCATED
    assert allocations_of(order) == [("V200", 40), ("V400", 10)]
    line = order.lines.get()
    assert (line.quantity_allocated, line.quantity_backordered) == (50, 0)
    assert not order.has_backorders
    for lot in trade.bad_lots:
        assert all(row.allocated == 0 for row in StockBalance.objects.filter(batch=lot))
    allocation = line_allocations(line).first()
    assert allocation.reference == f"order-line:{line.pk}"
    assert allocation.location == trade.net.manufacturer_storage


def test_a_shortfall_is_backordered_not_refused(trade):
    """130 usable units for 200 asked: all 130 allocated, 70 backordered; a line with no usable
    stock at all is backordered whole; the order is allocated, with backorders."""
    trade.licence.covers_controlled_substances = True
    save_with_reason(trade.licence, actor=trade.net.wholesaler_qa, reason="BtM licence")
    order = confirmed_order(trade, (trade.vaccine, 200), (trade.opioid, 8))
    services.order_allocate(order=order, actor=trade.seller_desk, reason="allocate")
    order.refresh_from_db()
    assert order.status == OrderStatus.ALLOCATED
    assert order.has_backorders
    vaccine, opioid = order.lines.order_by("id")
    assert (vaccine.quantity_allocated, vaccine.quantity_backordered) == (130, 70)
    assert (opioid.quantity_allocated, opioid.quantity_backordered) == (0, 8)
    assert allocations_of(order) == [("V200", 40), ("V400", 60), ("V600", 30)]


def test_allocating_again_fills_the_backorder(trade):
    order = confirmed_order(trade, (trade.vaccine, 150))
    services.order_allocate(order=order, actor=trade.seller_desk, reason="allocate")
    fresh = BatchFactory(product=trade.vaccine, lot_number="V700", expires_on=days(700))
    stock.stock_receive(
        batch=fresh,
        location=trade.net.manufacturer_storage,
        quantity=50,
        actor=trade.net.warehouse,
        reason="production output",
    )
    services.order_allocate(order=order, actor=trade.seller_desk, reason="backorder")
    line = order.lines.get()
    assert (line.quantity_allocated, line.quantity_backordered) == (150, 0)
    assert allocations_of(order)[-1] == ("V700", 20)
    with pytest.raises(RuleViolation) as refused:
        services.order_allocate(order=order, actor=trade.seller_desk, reason="again")
    assert refused.value.code == "nothing_to_allocate"


def test_allocation_honours_the_agreements_minimum_shelf_life(trade):
    services.agreement_update(
        agreement=trade.agreement,
        actor=trade.seller_desk,
        reason="hospital tenders need long dating",
        min_remaining_shelf_life_days=500,
    )
    order = confirmed_order(trade, (trade.vaccine, 50))
    services.order_allocate(order=order, actor=trade.seller_desk, reason="allocate")
    assert allocations_of(order) == [("V600", 30)]
    assert order.lines.get().quantity_backordered == 20


def test_stock_at_another_partner_is_never_allocated(trade):
    other_lot = BatchFactory(product=trade.vaccine, lot_number="VOTHER", expires_on=days(120))
    stock.stock_receive(
        batch=other_lot,
        location=trade.net.other_storage,
        quantity=999,
        actor=UserFactory(partner=trade.net.other, role=Role.WAREHOUSE_OPERATOR),
        reason="opening stock",
    )
    order = confirmed_order(trade, (trade.vaccine, 10))
    services.order_allocate(order=order, actor=trade.seller_desk, reason="allocate")
    assert allocations_of(order) == [("V200", 10)]


@pytest.mark.parametrize("stage", ["draft", "submitted"])
def test_an_order_not_confirmed_is_not_allocated(trade, stage):
    order = place_order(trade, (trade.vaccine, 5))
    if stage == "submitted":
        services.order_submit(order=order, actor=trade.buyer_user, reason="send")
    before = order_counts()
    with pytest.raises(RuleViolation) as refused:
        services.order_allocate(order=order, actor=trade.seller_desk, reason="allocate")
    assert refused.value.code == "invalid_transition"
    assert order_counts() == before


def test_only_the_sellers_desk_warehouse_or_admin_allocates(trade):
    order = confirmed_order(trade, (trade.vaccine, 5))
    before = order_counts()
    for user in (trade.buyer_desk, trade.net.qa):
        with pytest.raises(NotPermitted):
            services.order_allocate(order=order, actor=user, reason="allocate")
    assert order_counts() == before
    services.order_allocate(order=order, actor=trade.net.admin, reason="allocate")


# --- cancellation ----------------------------------------------------------------------------


def test_the_seller_cancels_an_allocated_order_and_the_stock_comes_back(trade):
    order = confirmed_order(trade, (trade.vaccine, 60), (trade.insulin, 4))
    services.order_allocate(order=order, actor=trade.seller_desk, reason="allocate")
    assert allocated_units() == 64
    services.order_cancel(order=order, actor=trade.seller_desk, reason="customer withdrew")
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert allocated_units() == 0
    assert set(StockAllocation.objects.values_list("status", flat=True)) == {
        AllocationStatus.RELEASED
    }
    assert all(
        (line.quantity_allocated, line.quantity_backordered) == (0, 0) for line in order.lines.all()
    )
    latest = order.history.latest()
    assert (latest.history_user, latest.history_change_reason) == (
        trade.seller_desk,
        "customer withdrew",
    )


@pytest.mark.parametrize("stage", ["draft", "submitted"])
def test_the_buyer_withdraws_an_order_before_confirmation(trade, stage):
    order = place_order(trade, (trade.vaccine, 5))
    if stage == "submitted":
        services.order_submit(order=order, actor=trade.buyer_user, reason="send")
    services.order_cancel(order=order, actor=trade.buyer_user, reason="ordered twice")
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED


def test_the_buyer_cannot_cancel_a_confirmed_order(trade):
    order = confirmed_order(trade, (trade.vaccine, 5))
    with pytest.raises(RuleViolation) as refused:
        services.order_cancel(order=order, actor=trade.buyer_user, reason="changed my mind")
    assert refused.value.code == "cancel_not_allowed"


@pytest.mark.parametrize(
    "status", [OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.CLOSED, "cancelled"]
)
def test_an_order_shipped_or_beyond_is_never_cancelled(trade, status):
    order = confirmed_order(trade, (trade.vaccine, 5))
    set_status(order, status)
    before = order_counts()
    with pytest.raises(RuleViolation) as refused:
        services.order_cancel(order=order, actor=trade.seller_desk, reason="too late")
    assert refused.value.code == "invalid_transition"
    assert order_counts() == before


def test_the_seller_cancels_while_picking(trade):
    order = confirmed_order(trade, (trade.vaccine, 5))
    services.order_allocate(order=order, actor=trade.seller_desk, reason="allocate")
    set_status(order, OrderStatus.PICKING)
    services.order_cancel(order=order, actor=trade.seller_desk, reason="damaged in picking")
    assert allocated_units() == 0


def test_another_partners_order_is_not_found(trade):
    order = place_order(trade, (trade.vaccine, 5))
    with pytest.raises(NotFound):
        services.order_cancel(order=order, actor=trade.net.other_user, reason="mischief")
    with pytest.raises(NotPermitted):
        services.order_submit(order=order, actor=trade.net.other_user, reason="mischief")


def test_a_full_flow_keeps_history_with_users_and_reasons_and_the_chain_holds(trade):
    order = confirmed_order(trade, (trade.vaccine, 45))
    services.order_allocate(order=order, actor=trade.net.warehouse, reason="pick list 7")
    services.order_cancel(order=order, actor=trade.seller_desk, reason="recall risk")
    rows = list(order.history.order_by("history_id"))
    assert [(row.status, row.history_user, row.history_change_reason) for row in rows] == [
        ("draft", trade.buyer_user, "weekly replenishment"),
        ("submitted", trade.buyer_user, "send to Acme"),
        ("confirmed", trade.seller_desk, "accepted"),
        ("allocated", trade.net.warehouse, "pick list 7"),
        ("cancelled", trade.seller_desk, "recall risk"),
    ]
    line_rows = list(order.lines.get().history.order_by("history_id"))
    assert [row.quantity_allocated for row in line_rows] == [0, 0, 45, 0]
    for allocation in StockAllocation.objects.all():
        reasons = list(
            allocation.history.order_by("history_id").values_list(
                "history_change_reason", flat=True
            )
        )
        assert reasons == ["pick list 7", "recall risk"]
    assert chain.verify().ok


def test_an_order_with_a_site_of_a_deactivated_site_is_refused(trade):
    closed = SiteFactory(partner=trade.buyer, is_active=False)
    with pytest.raises(InvalidInput) as refused:
        services.order_create(
            buyer=trade.buyer,
            seller=trade.seller,
            ship_to=closed,
            lines=[{"product": trade.vaccine, "quantity": 1}],
            actor=trade.buyer_user,
            reason="r",
        )
    assert refused.value.code == "invalid_ship_to"
