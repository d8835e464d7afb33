"""Sales analytics, target attainment, replenishment, near-expiry lots and the daily stock alerts
(``orders.analytics``, ``orders.tasks``), on shipments made through the services."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from audit.history import save_with_reason
from batches import services as stock
from orders import analytics, services
from orders.models import SalesTarget, Shipment
from orders.signals import EVENTS, business_event
from orders.tasks import raise_stock_alerts
from pharmadms.exceptions import InvalidInput, NotPermitted
from tests.factories import (
    AgreementFactory,
    AgreementPriceFactory,
    BatchFactory,
    LicenceFactory,
    LocationFactory,
    ProductFactory,
)
from tests.orders.conftest import days

# --- the sales every test here reads -------------------------------------------------------------


def sell(t, *, seller_desk, seller_warehouse, buyer_user, ship_to, lines, buyer=None, seller=None):
    """Order, submit, confirm, allocate, plan and dispatch through the services."""
    order = services.order_create(
        buyer=buyer or t.buyer,
        seller=seller or t.seller,
        ship_to=ship_to,
        lines=[{"product": product, "quantity": quantity} for product, quantity in lines],
        actor=buyer_user,
        reason="order",
    )
    services.order_submit(order=order, actor=buyer_user, reason="submit")
    services.order_confirm(order=order, actor=seller_desk, reason="accept")
    services.order_allocate(order=order, actor=seller_desk, reason="allocate")
    shipment = services.shipment_create_from_order(order=order, actor=seller_desk, reason="plan")
    return services.shipment_dispatch(shipment=shipment, actor=seller_warehouse, reason="truck")


def backdate(shipment: Shipment, *, by_days: int, actor) -> Shipment:
    """Move a dispatch into the past (what a shipment of an earlier month looks like)."""
    shipment.dispatched_at = timezone.now() - datetime.timedelta(days=by_days)
    return save_with_reason(
        shipment, actor=actor, reason="test: dispatched earlier", update_fields=["dispatched_at"]
    )


def build_sales(t):
    """Acme sells North 50 vaccine (12.50) and 4 insulin (7.25), received today; and South
    (region DE-NW) 20 vaccine (11.00), dispatched 40 days ago — an earlier month.

    Totals: vaccine 70 units 845.00, insulin 4 units 29.00; DE-BY 54 / 654.00, DE-NW 20 / 220.00.
    """
    net = t.net
    t.south = net.other
    t.south.region = "DE-NW"
    save_with_reason(t.south, actor=net.admin, reason="test: South sits in NRW")
    LicenceFactory(partner=t.south)
    t.south_agreement = AgreementFactory(
        supplier=t.seller, customer=t.south, territory=["DE"], min_remaining_shelf_life_days=90
    )
    AgreementPriceFactory(
        agreement=t.south_agreement, product=t.vaccine, unit_price=Decimal("11.0000")
    )
    seller = {"seller_desk": t.seller_desk, "seller_warehouse": t.seller_warehouse}
    t.north_shipment = sell(
        t,
        **seller,
        buyer_user=t.buyer_user,
        ship_to=net.wholesaler_site,
        lines=[(t.vaccine, 50), (t.insulin, 4)],
    )
    services.shipment_receive(
        shipment=t.north_shipment,
        lines=[
            {"line": line.pk, "received_quantity": line.quantity, "damaged_quantity": 0}
            for line in t.north_shipment.lines.all()
        ],
        actor=t.buyer_warehouse,
        reason="goods in",
    )
    t.south_shipment = sell(
        t,
        **seller,
        buyer=t.south,
        buyer_user=net.other_user,
        ship_to=net.other_site,
        lines=[(t.vaccine, 20)],
    )
    backdate(t.south_shipment, by_days=40, actor=t.seller_desk)
    return t


def north_sells_to_south(t) -> Shipment:
    """A second tier: North sells 5 of the vaccine it received to South at 15.00."""
    LocationFactory(site=t.net.wholesaler_site, code="TRANSIT", kind="in_transit")
    agreement = AgreementFactory(supplier=t.buyer, customer=t.south, territory=["DE"])
    AgreementPriceFactory(agreement=agreement, product=t.vaccine, unit_price=Decimal("15.0000"))
    return sell(
        t,
        seller_desk=t.buyer_desk,
        seller_warehouse=t.buyer_warehouse,
        buyer=t.south,
        seller=t.buyer,
        buyer_user=t.net.other_user,
        ship_to=t.net.other_site,
        lines=[(t.vaccine, 5)],
    )


def target(t, agreement=None, **fields) -> SalesTarget:
    return save_with_reason(
        SalesTarget(agreement=agreement or t.agreement, **fields),
        actor=t.seller_desk,
        reason="targets for the year",
    )


@pytest.fixture
def sales(shipping):
    return build_sales(shipping)


def summary(seller, group_by, **kwargs):
    return [
        (row["key"], row["quantity"], row["value"], row["currency"])
        for row in analytics.sales_summary(seller_id=seller.pk, group_by=group_by, **kwargs)
    ]


# --- sales ---------------------------------------------------------------------------------------


def test_sales_by_product_sum_shipped_units_at_the_order_prices(sales):
    t = sales
    assert summary(t.seller, "product") == [
        (t.vaccine.gtin, 70, Decimal("845.0000"), "EUR"),
        (t.insulin.gtin, 4, Decimal("29.0000"), "EUR"),
    ]
    row = analytics.sales_summary(seller_id=t.seller.pk, group_by="product")[0]
    assert row["label"] == "Vaccine"
    assert isinstance(row["value"], Decimal)


def test_sales_by_region_partner_and_month(sales):
    t = sales
    assert summary(t.seller, "region") == [
        ("DE-BY", 54, Decimal("654.0000"), "EUR"),
        ("DE-NW", 20, Decimal("220.0000"), "EUR"),
    ]
    assert summary(t.seller, "partner") == [
        (t.buyer.gln, 54, Decimal("654.0000"), "EUR"),
        (t.south.gln, 20, Decimal("220.0000"), "EUR"),
    ]
    this_month = timezone.localdate().strftime("%Y-%m")
    earlier = timezone.localdate(t.south_shipment.dispatched_at).strftime("%Y-%m")
    assert earlier < this_month
    assert summary(t.seller, "month") == [
        (earlier, 20, Decimal("220.0000"), "EUR"),
        (this_month, 54, Decimal("654.0000"), "EUR"),
    ]


def test_sales_in_a_period_count_the_dispatches_in_it(sales):
    t = sales
    recent = summary(t.seller, "product", start=days(-10))
    assert recent == [
        (t.vaccine.gtin, 50, Decimal("625.0000"), "EUR"),
        (t.insulin.gtin, 4, Decimal("29.0000"), "EUR"),
    ]
    older = summary(t.seller, "partner", start=days(-60), end=days(-30))
    assert older == [(t.south.gln, 20, Decimal("220.0000"), "EUR")]
    assert summary(t.seller, "month", start=days(1)) == []


def test_planned_shipments_are_not_sales(shipping):
    t = shipping
    from tests.orders.conftest import planned_shipment

    planned_shipment(t, (t.vaccine, 10))
    assert summary(t.seller, "product") == []


def test_each_seller_sees_its_own_sales_and_regulators_all(sales):
    t = sales
    north_sells_to_south(t)
    assert summary(t.seller, "product")[0][:3] == (t.vaccine.gtin, 70, Decimal("845.0000"))
    assert summary(t.buyer, "partner") == [(t.south.gln, 5, Decimal("75.0000"), "EUR")]
    assert summary(t.south, "product") == []
    everything = analytics.sales_summary(seller_id=None, group_by="product")
    assert [(row["quantity"], row["value"]) for row in everything] == [
        (75, Decimal("920.0000")),
        (4, Decimal("29.0000")),
    ]
    assert analytics.seller_scope(t.net.regulator) is None
    assert analytics.seller_scope(t.seller_desk) == t.seller.pk


def test_an_unknown_grouping_or_a_bad_period_is_refused():
    with pytest.raises(InvalidInput) as refused:
        analytics.sales_summary(seller_id=None, group_by="colour")
    assert refused.value.code == "invalid_group_by"
    with pytest.raises(InvalidInput) as refused:
        analytics.parse_period("2026-13-01", None)
    assert refused.value.code == "invalid_date"
    with pytest.raises(InvalidInput) as refused:
        analytics.parse_period("2026-02-01", "2026-01-01")
    assert refused.value.code == "invalid_period"
    assert analytics.parse_period("2026-01-01", "") == (datetime.date(2026, 1, 1), None)


def test_only_the_analytics_roles_may_read(network, shipping):
    t = shipping
    for user in (t.seller_desk, network.admin, network.qa, network.regulator):
        assert analytics.may_read_analytics(user)
        analytics.require_analytics_reader(user)
    for user in (network.warehouse, t.buyer_user):
        assert not analytics.may_read_analytics(user)
        with pytest.raises(NotPermitted):
            analytics.require_analytics_reader(user)


# --- targets -------------------------------------------------------------------------------------


def test_target_attainment_per_agreement_and_period(sales):
    t = sales
    whole = target(
        t,
        period_start=days(-10),
        period_end=days(10),
        target_quantity=100,
        target_value=Decimal("1000.00"),
    )
    insulin = target(
        t, period_start=days(-10), period_end=days(10), product=t.insulin, target_quantity=8
    )
    past = target(t, period_start=days(-400), period_end=days(-300), target_value=Decimal("50"))
    south = target(t, agreement=t.south_agreement, period_start=days(-60), period_end=days(-1),
                   target_quantity=40, target_value=Decimal("880.00"))  # fmt: skip
    rows = {row["id"]: row for row in analytics.target_attainment(seller_id=t.seller.pk)}
    assert set(rows) == {whole.pk, insulin.pk, past.pk, south.pk}
    # North's agreement this period: 54 units, 654.00 (South's shipment is another agreement).
    assert rows[whole.pk]["actual_quantity"] == 54
    assert rows[whole.pk]["actual_value"] == Decimal("654.0000")
    assert rows[whole.pk]["quantity_attainment_percent"] == Decimal("54.0")
    assert rows[whole.pk]["value_attainment_percent"] == Decimal("65.4")
    assert rows[whole.pk]["currency"] == "EUR"
    assert (
        rows[insulin.pk]["actual_quantity"],
        rows[insulin.pk]["actual_value"],
        rows[insulin.pk]["quantity_attainment_percent"],
        rows[insulin.pk]["value_attainment_percent"],
    ) == (4, Decimal("29.0000"), Decimal("50.0"), None)
    assert rows[past.pk]["actual_quantity"] == 0
    assert rows[past.pk]["actual_value"] == Decimal("0")
    assert rows[past.pk]["value_attainment_percent"] == Decimal("0.0")
    assert rows[south.pk]["actual_quantity"] == 20
    assert rows[south.pk]["quantity_attainment_percent"] == Decimal("50.0")
    assert rows[south.pk]["value_attainment_percent"] == Decimal("25.0")
    # Targets are the supplier's: the customer reads none of these.
    assert analytics.target_attainment(seller_id=t.buyer.pk) == []
    assert len(analytics.target_attainment(seller_id=None)) == 4


# --- replenishment -------------------------------------------------------------------------------


@pytest.fixture
def policy(settings):
    """A 10-day demand window and a 20-day lead time: safety stock is 10 days of demand."""
    settings.DEMAND_WINDOW_DAYS = 10
    settings.REPLENISHMENT_LEAD_TIME_DAYS = 20
    settings.NEAR_EXPIRY_ALERT_DAYS = 60
    return analytics.ReplenishmentPolicy.from_settings()


def test_demand_days_of_supply_and_reorder_point(sales, policy):
    t = sales
    assert (policy.window_days, policy.lead_time_days, policy.safety_days) == (10, 20, 10)
    idle = ProductFactory(manufacturer=t.seller, name="Idle")
    stock.stock_receive(
        batch=BatchFactory(product=idle, lot_number="ID1", expires_on=days(500)),
        location=t.net.manufacturer_storage,
        quantity=7,
        actor=t.seller_warehouse,
        reason="production output",
    )
    rows = {row["product_name"]: row for row in analytics.replenishment(seller_id=t.seller.pk)}
    assert set(rows) == {"Vaccine", "Insulin", "Idle"}
    assert {row["location"] for row in rows.values()} == {"STORE"}  # storage only
    vaccine, insulin, idle_row = rows["Vaccine"], rows["Insulin"], rows["Idle"]
    # Vaccine: 50 shipped in the window (South's 20 left 40 days ago): 5 a day. Sellable on
    # hand: V400 30 + V600 30 + VSHORT 500 (released, unexpired); expired, quarantined,
    # rejected and recalled lots do not count.
    assert vaccine["shipped_in_window"] == 50
    assert vaccine["daily_demand"] == Decimal("5.0000")
    assert vaccine["available"] == 560
    assert vaccine["days_of_supply"] == Decimal("112.0")
    assert vaccine["safety_stock"] == 50  # 5 × 10
    assert vaccine["reorder_point"] == 150  # 5 × (20 + 10)
    assert vaccine["below_reorder_point"] is False
    # Insulin: 4 shipped, 0.4 a day, 6 left: 15 days of supply; reorder point ⌈0.4 × 30⌉ = 12.
    assert insulin["daily_demand"] == Decimal("0.4000")
    assert (insulin["available"], insulin["days_of_supply"]) == (6, Decimal("15.0"))
    assert (insulin["safety_stock"], insulin["reorder_point"]) == (4, 12)
    assert insulin["below_reorder_point"] is True
    # No demand: no days of supply, never below.
    assert idle_row["daily_demand"] == Decimal("0")
    assert idle_row["days_of_supply"] is None
    assert (idle_row["reorder_point"], idle_row["below_reorder_point"]) == (0, False)
    # Rows below their reorder point come first.
    assert analytics.replenishment(seller_id=t.seller.pk)[0]["product_name"] == "Insulin"


def test_replenishment_is_scoped_to_the_sellers_locations(sales, policy):
    t = sales
    north = analytics.replenishment(seller_id=t.buyer.pk)
    # North received 54 units, shipped none: held stock without demand.
    assert {(row["product_name"], row["available"], row["days_of_supply"]) for row in north} == {
        ("Vaccine", 50, None),
        ("Insulin", 4, None),
    }
    assert {row["partner"] for row in analytics.replenishment(seller_id=None)} == {
        t.seller.name,
        t.buyer.name,
    }


# --- near expiry ---------------------------------------------------------------------------------


def test_near_expiry_lists_lots_on_hand_within_the_window(sales, policy):
    t = sales
    lots = analytics.near_expiry(seller_id=t.seller.pk)
    # Within 60 days: the expired lot (still on hand) and the one expiring in 30 days.
    assert [(row["lot"], row["days_to_expiry"], row["on_hand"]) for row in lots] == [
        ("VEXP", -1, 500),
        ("VSHORT", 30, 500),
    ]
    wider = analytics.near_expiry(seller_id=t.seller.pk, within_days=120)
    assert [row["lot"] for row in wider] == ["VEXP", "VSHORT", "VQLOC"]
    assert wider[-1]["location_kind"] == "quarantine"
    assert analytics.near_expiry(seller_id=t.seller.pk, within_days=29)[-1]["lot"] == "VEXP"
    # North's lots expire in 200 and 400 days; shipped units in transit are nobody's on hand.
    assert analytics.near_expiry(seller_id=t.buyer.pk) == []
    assert [r["lot"] for r in analytics.near_expiry(seller_id=t.buyer.pk, within_days=250)] == [
        "V200"
    ]
    assert "V400" not in {
        row["lot"] for row in analytics.near_expiry(seller_id=None, within_days=1000)
        if row["location_kind"] == "in_transit"
    }  # fmt: skip


# --- the daily alerts ----------------------------------------------------------------------------


@pytest.fixture
def heard():
    events: list[tuple[str, dict, list[int]]] = []

    def receiver(sender, event, payload, partner_ids, **kwargs):
        events.append((event, payload, partner_ids))

    business_event.connect(receiver, dispatch_uid="test-stock-alerts")
    yield events
    business_event.disconnect(dispatch_uid="test-stock-alerts")


def test_the_alert_events_are_business_events():
    assert analytics.REPLENISHMENT_ALERT in EVENTS
    assert analytics.NEAR_EXPIRY_ALERT in EVENTS


def test_the_daily_task_announces_one_alert_per_partner_and_kind(
    sales, policy, heard, django_capture_on_commit_callbacks
):
    t = sales
    mail.outbox.clear()
    heard.clear()
    with django_capture_on_commit_callbacks(execute=True):
        result = raise_stock_alerts.delay().get()
    assert result == {"stock.replenishment_alert": 1, "stock.near_expiry_alert": 1}
    assert [(event, ids) for event, _, ids in heard] == [
        ("stock.replenishment_alert", [t.seller.pk]),
        ("stock.near_expiry_alert", [t.seller.pk]),
    ]
    replenishment, near = heard[0][1], heard[1][1]
    assert replenishment["partner_gln"] == t.seller.gln
    assert replenishment["as_of"] == timezone.localdate().isoformat()
    assert (replenishment["lead_time_days"], replenishment["demand_window_days"]) == (20, 10)
    assert replenishment["count"] == 1
    [row] = replenishment["rows"]
    assert row["product_gtin"] == t.insulin.gtin
    assert (row["available"], row["reorder_point"], row["daily_demand"]) == (6, 12, "0.4000")
    assert row["days_of_supply"] == "15.0"
    assert (near["within_days"], near["count"]) == (60, 2)
    assert [(lot["lot"], lot["expires_on"]) for lot in near["lots"]] == [
        ("VEXP", t.lot_expired.expires_on.isoformat()),
        ("VSHORT", t.lot_short.expires_on.isoformat()),
    ]
    # integrations turns each event into an e-mail to the partner's contact address.
    assert sorted(message.subject for message in mail.outbox) == [
        "PharmaDMS: stock.near_expiry_alert",
        "PharmaDMS: stock.replenishment_alert",
    ]
    assert {tuple(message.to) for message in mail.outbox} == {(t.seller.contact_email,)}
    assert "count: 2" in next(m.body for m in mail.outbox if "near_expiry" in m.subject)


def test_nothing_to_report_announces_nothing(network, heard, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = raise_stock_alerts.delay().get()
    assert result == {"stock.replenishment_alert": 0, "stock.near_expiry_alert": 0}
    assert heard == []


def test_the_task_runs_daily_from_celery_beat(settings):
    from pharmadms.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["raise-stock-alerts"]
    assert entry["task"] == "orders.raise_stock_alerts"
    assert entry["schedule"].hour == {6}
    assert "orders.raise_stock_alerts" in app.tasks
