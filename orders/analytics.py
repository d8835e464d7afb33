"""Sales analytics and replenishment: read-side aggregates over shipments and the stock ledger.

Every figure is summed by the database (``Sum`` over grouped querysets, ``TruncMonth`` for
months, correlated subqueries for target attainment), the same on SQLite and PostgreSQL.

- **Sales** are what was shipped: the quantity of each shipped ``ShipmentLine``
  (``ShipmentLine.objects.shipped()``: of a dispatched, delivered or received shipment, above
  zero), dated by the shipment's dispatch and valued at its order line's
  unit price (the agreement's price copied at submission). Values are kept per currency, never
  added across currencies.
- **Scope**: a user reads the sales, targets and stock of their own partner as the seller;
  regulators and superusers read all partners'.
- **Replenishment** (per storage location of the seller and product):
  ``daily demand = units shipped out of the location over the last DEMAND_WINDOW_DAYS / window``;
  ``days of supply = available / daily demand`` (``None`` when there is no demand);
  ``safety stock = daily demand × ceil(lead time / 2)`` — half a lead time of cover against
  demand running above its average while the replenishment is on its way;
  ``reorder point = ceil(daily demand × lead time + safety stock)``, with the lead time
  REPLENISHMENT_LEAD_TIME_DAYS. *Available* counts only sellable units: on hand less allocated,
  of released lots not yet expired. A row is below its reorder point when available < reorder
  point (so a product without demand never is).
- **Near expiry**: lots on hand at the partner's locations (in-transit excluded) that expire
  within NEAR_EXPIRY_ALERT_DAYS; lots already expired but still on hand are listed too, with a
  negative ``days_to_expiry``, since they need a decision just as urgently.
"""

from __future__ import annotations

import datetime
import math
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import (
    Case,
    DateField,
    DecimalField,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncMonth
from django.utils import timezone

from batches.models import BatchStatus, Product, StockBalance
from partners.models import Location, LocationKind, Partner, Role
from pharmadms.exceptions import InvalidInput, NotPermitted

from .models import AgreementPrice, SalesTarget, ShipmentLine
from .signals import announce

ANALYTICS_ROLES = frozenset({Role.ORDER_DESK, Role.ADMIN, Role.QA_OFFICER, Role.REGULATOR})
GROUPS = ("product", "region", "partner", "month")

REPLENISHMENT_ALERT = "stock.replenishment_alert"
NEAR_EXPIRY_ALERT = "stock.near_expiry_alert"

MONEY = DecimalField(max_digits=20, decimal_places=4)
ZERO_MONEY = Value(Decimal("0"), output_field=MONEY)
FOUR_PLACES = Decimal("0.0001")
ONE_PLACE = Decimal("0.1")


# --- who may read, and whose figures -----------------------------------------------------------


def may_read_analytics(user) -> bool:
    """Order desk, administrators and QA officers of a partner, regulators, superusers."""
    return bool(
        user
        and user.is_authenticated
        and user.is_active
        and (user.is_superuser or user.role in ANALYTICS_ROLES)
    )


def require_analytics_reader(user) -> None:
    if not may_read_analytics(user):
        raise NotPermitted(
            "sales and stock analytics are for the order desk, administrators, QA officers "
            "and regulators",
            code="role_not_permitted",
        )


def seller_scope(user) -> int | None:
    """The partner whose figures ``user`` reads as the seller; ``None`` means every partner."""
    return None if user.sees_everything else user.partner_id


def parse_period(
    raw_from: str | None, raw_to: str | None
) -> tuple[datetime.date | None, datetime.date | None]:
    """``from``/``to`` as ISO dates (both optional, both inclusive)."""
    bounds = []
    for name, raw in (("from", raw_from), ("to", raw_to)):
        if raw in (None, ""):
            bounds.append(None)
            continue
        try:
            bounds.append(datetime.date.fromisoformat(raw))
        except ValueError as error:
            raise InvalidInput(
                f"{name}: a date as YYYY-MM-DD, not {raw!r}", code="invalid_date"
            ) from error
    start, end = bounds
    if start and end and end < start:
        raise InvalidInput("to comes before from", code="invalid_period")
    return start, end


# --- sales ---------------------------------------------------------------------------------------


def shipped_lines(
    *,
    seller_id: int | None,
    start: datetime.date | None = None,
    end: datetime.date | None = None,
) -> QuerySet[ShipmentLine]:
    """Lines of sent shipments of ``seller_id`` (every seller if ``None``), dispatched in the
    period (dates in the current time zone, both ends included)."""
    lines = ShipmentLine.objects.shipped()
    if seller_id is not None:
        lines = lines.filter(shipment__order__seller_id=seller_id)
    if start:
        lines = lines.filter(shipment__dispatched_at__date__gte=start)
    if end:
        lines = lines.filter(shipment__dispatched_at__date__lte=end)
    return lines


def _line_value():
    return ExpressionWrapper(F("quantity") * F("order_line__unit_price"), output_field=MONEY)


_GROUP_FIELDS: dict[str, tuple[str, str]] = {
    # group_by: (key field, label field) of the grouped values
    "product": ("order_line__product__gtin", "order_line__product__name"),
    "region": ("shipment__order__buyer__region", "shipment__order__buyer__region"),
    "partner": ("shipment__order__buyer__gln", "shipment__order__buyer__name"),
    "month": ("month", "month"),
}


def sales_summary(
    *,
    seller_id: int | None,
    group_by: str,
    start: datetime.date | None = None,
    end: datetime.date | None = None,
) -> list[dict[str, Any]]:
    """Units shipped and their value by product, buyer region, buyer or month of dispatch.

    One row per group and currency: ``key`` (GTIN, region code, buyer GLN or ``YYYY-MM``),
    ``label``, ``quantity`` (int), ``value`` (Decimal, 4 places), ``currency``. Products and
    buyers by value, descending; regions and months in order.
    """
    if group_by not in GROUPS:
        raise InvalidInput(
            f"group_by: one of {', '.join(GROUPS)}, not {group_by!r}", code="invalid_group_by"
        )
    key_field, label_field = _GROUP_FIELDS[group_by]
    lines = shipped_lines(seller_id=seller_id, start=start, end=end)
    if group_by == "month":
        lines = lines.annotate(
            month=TruncMonth("shipment__dispatched_at", output_field=DateField())
        )
    rows = (
        lines.order_by()
        .values(key_field, label_field, "order_line__currency")
        .annotate(  # not named quantity: F("quantity") in the value would mean the sum
            units=Sum("quantity"),
            amount=Coalesce(Sum(_line_value()), ZERO_MONEY),
        )
    )
    results = []
    for row in rows:  # one row per group, already summed by the database
        key, label = row[key_field], row[label_field]
        if group_by == "month":
            key = label = key.strftime("%Y-%m")
        results.append(
            {
                "key": key,
                "label": label,
                "quantity": row["units"],
                "value": Decimal(row["amount"]).quantize(FOUR_PLACES),
                "currency": row["order_line__currency"],
            }
        )
    if group_by in ("region", "month"):
        results.sort(key=lambda r: (r["key"], r["currency"]))
    else:
        results.sort(key=lambda r: (-r["value"], r["label"], r["currency"]))
    return results


# --- targets -------------------------------------------------------------------------------------


def _percent(actual: int | Decimal, target: int | Decimal | None) -> Decimal | None:
    if not target:
        return None
    return (Decimal(actual) * 100 / Decimal(target)).quantize(ONE_PLACE, ROUND_HALF_UP)


def target_attainment(*, seller_id: int | None) -> list[dict[str, Any]]:
    """Each sales target of the seller's agreements against what was shipped under that
    agreement in the target's period (of its product, or of every product when it names none).

    Actuals come from correlated subqueries, one query in all: ``actual_quantity``,
    ``actual_value`` (in the agreement's currency), and the attainment percentages (one place,
    ``None`` where the target sets no quantity or no value).
    """
    base = (
        ShipmentLine.objects.shipped()
        .filter(
            shipment__order__agreement_id=OuterRef("agreement_id"),
            shipment__dispatched_at__date__gte=OuterRef("period_start"),
            shipment__dispatched_at__date__lte=OuterRef("period_end"),
        )
        .order_by()
    )

    def total(lines: QuerySet, expression, output_field) -> Subquery:
        # Group by the (single) agreement so the subquery yields one summed row.
        return Subquery(
            lines.values("shipment__order__agreement_id")
            .annotate(total=Sum(expression))
            .values("total")[:1],
            output_field=output_field,
        )

    of_product = base.filter(order_line__product_id=OuterRef("product_id"))
    quantity_field, value_field = IntegerField(), MONEY
    targets = SalesTarget.objects.select_related(
        "agreement__supplier", "agreement__customer", "product"
    ).annotate(
        actual_quantity=Coalesce(
            Case(
                When(product__isnull=True, then=total(base, F("quantity"), quantity_field)),
                default=total(of_product, F("quantity"), quantity_field),
                output_field=quantity_field,
            ),
            0,
        ),
        actual_value=Coalesce(
            Case(
                When(product__isnull=True, then=total(base, _line_value(), value_field)),
                default=total(of_product, _line_value(), value_field),
                output_field=value_field,
            ),
            ZERO_MONEY,
        ),
    )
    if seller_id is not None:
        targets = targets.filter(agreement__supplier_id=seller_id)
    targets = list(targets.order_by("period_start", "agreement__customer__name", "id"))
    currencies = dict(  # one currency per agreement (the services keep it so)
        AgreementPrice.objects.filter(agreement_id__in={t.agreement_id for t in targets})
        .values_list("agreement_id", "currency")
        .distinct()
    )
    return [
        {
            "id": target.pk,
            "agreement": target.agreement_id,
            "seller": target.agreement.supplier.name,
            "buyer": target.agreement.customer.name,
            "buyer_gln": target.agreement.customer.gln,
            "period_start": target.period_start,
            "period_end": target.period_end,
            "product_gtin": target.product.gtin if target.product else None,
            "product_name": target.product.name if target.product else None,
            "target_quantity": target.target_quantity,
            "actual_quantity": target.actual_quantity,
            "quantity_attainment_percent": _percent(target.actual_quantity, target.target_quantity),
            "target_value": target.target_value,
            "actual_value": Decimal(target.actual_value).quantize(FOUR_PLACES),
            "value_attainment_percent": _percent(target.actual_value, target.target_value),
            "currency": currencies.get(target.agreement_id, ""),
        }
        for target in targets
    ]


# --- replenishment -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplenishmentPolicy:
    """The numbers behind a reorder point, from the settings unless given."""

    window_days: int
    lead_time_days: int

    @classmethod
    def from_settings(cls) -> ReplenishmentPolicy:
        return cls(
            window_days=max(1, settings.DEMAND_WINDOW_DAYS),
            lead_time_days=max(0, settings.REPLENISHMENT_LEAD_TIME_DAYS),
        )

    @property
    def safety_days(self) -> int:
        """Days of demand held as safety stock: half the lead time, rounded up."""
        return math.ceil(self.lead_time_days / 2)


def replenishment(
    *,
    seller_id: int | None,
    today: datetime.date | None = None,
    policy: ReplenishmentPolicy | None = None,
) -> list[dict[str, Any]]:
    """For each active storage location of the seller and each product held or shipped there:
    available units, average daily demand, days of supply, safety stock, reorder point and
    whether the location is below it. Two grouped queries (balances, demand), merged by key."""
    today = today or timezone.localdate()
    policy = policy or ReplenishmentPolicy.from_settings()
    storage = Q(location__kind=LocationKind.STORAGE, location__is_active=True)
    if seller_id is not None:
        storage &= Q(location__site__partner_id=seller_id)
    sellable = Q(batch__status=BatchStatus.RELEASED, batch__expires_on__gte=today)
    balances = (
        StockBalance.objects.filter(storage)
        .order_by()
        .values("location_id", "batch__product_id")
        .annotate(  # not named on_hand: the Case below would read the sum
            units_on_hand=Sum("on_hand"),
            available=Coalesce(
                Sum(
                    Case(
                        When(sellable, then=F("on_hand") - F("allocated")),
                        default=Value(0),
                        output_field=IntegerField(),
                    )
                ),
                0,
            ),
        )
        .filter(units_on_hand__gt=0)
    )
    window_start = today - datetime.timedelta(days=policy.window_days)
    shipped_from = Q(
        from_location__kind=LocationKind.STORAGE,
        from_location__is_active=True,
        shipment__dispatched_at__date__gt=window_start,
        shipment__dispatched_at__date__lte=today,
    )
    if seller_id is not None:
        shipped_from &= Q(from_location__site__partner_id=seller_id)
    demand = (
        ShipmentLine.objects.shipped()
        .filter(shipped_from)
        .order_by()
        .values("from_location_id", "batch__product_id")
        .annotate(shipped=Sum("quantity"))
    )
    stock = {(r["location_id"], r["batch__product_id"]): r for r in balances}
    shipped = {(r["from_location_id"], r["batch__product_id"]): r["shipped"] for r in demand}
    keys = set(stock) | set(shipped)
    if not keys:
        return []
    locations = Location.objects.select_related("site__partner").in_bulk(
        {location_id for location_id, _ in keys}
    )
    products = Product.objects.in_bulk({product_id for _, product_id in keys})
    rows = []
    for location_id, product_id in keys:
        location, product = locations[location_id], products[product_id]
        balance = stock.get((location_id, product_id), {})
        available = balance.get("available", 0)
        units_shipped = shipped.get((location_id, product_id), 0)
        daily = Decimal(units_shipped) / policy.window_days
        safety_stock = math.ceil(daily * policy.safety_days)
        reorder_point = math.ceil(daily * (policy.lead_time_days + policy.safety_days))
        rows.append(
            {
                "partner_id": location.site.partner_id,
                "partner": location.site.partner.name,
                "site": location.site.name,
                "location_id": location_id,
                "location": location.code,
                "product_id": product_id,
                "product_gtin": product.gtin,
                "product_name": product.name,
                "on_hand": balance.get("units_on_hand", 0),
                "available": available,
                "shipped_in_window": units_shipped,
                "daily_demand": daily.quantize(FOUR_PLACES, ROUND_HALF_UP),
                "days_of_supply": (
                    (Decimal(available) / daily).quantize(ONE_PLACE, ROUND_HALF_UP)
                    if daily
                    else None
                ),
                "safety_stock": safety_stock,
                "reorder_point": reorder_point,
                "below_reorder_point": available < reorder_point,
            }
        )
    rows.sort(
        key=lambda r: (not r["below_reorder_point"], r["partner"], r["location"], r["product_name"])
    )
    return rows


# --- near expiry ---------------------------------------------------------------------------------


def near_expiry(
    *, seller_id: int | None, today: datetime.date | None = None, within_days: int | None = None
) -> list[dict[str, Any]]:
    """Lots on hand at the partner's locations (in transit excluded) expiring within
    ``within_days`` (NEAR_EXPIRY_ALERT_DAYS), soonest first; expired ones too."""
    today = today or timezone.localdate()
    within_days = settings.NEAR_EXPIRY_ALERT_DAYS if within_days is None else within_days
    horizon = today + datetime.timedelta(days=within_days)
    balances = StockBalance.objects.filter(on_hand__gt=0, batch__expires_on__lte=horizon).exclude(
        location__kind=LocationKind.IN_TRANSIT
    )
    if seller_id is not None:
        balances = balances.filter(location__site__partner_id=seller_id)
    balances = balances.select_related("batch__product", "location__site__partner").order_by(
        "batch__expires_on", "batch__product__name", "batch__lot_number", "location__code"
    )
    return [
        {
            "partner_id": balance.location.site.partner_id,
            "partner": balance.location.site.partner.name,
            "site": balance.location.site.name,
            "location": balance.location.code,
            "location_kind": balance.location.kind,
            "product_gtin": balance.batch.product.gtin,
            "product_name": balance.batch.product.name,
            "batch_id": balance.batch_id,
            "lot": balance.batch.lot_number,
            "lot_status": balance.batch.status,
            "expires_on": balance.batch.expires_on,
            "days_to_expiry": (balance.batch.expires_on - today).days,
            "on_hand": balance.on_hand,
            "allocated": balance.allocated,
        }
        for balance in balances
    ]


# --- alerts --------------------------------------------------------------------------------------


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as plain JSON values: Decimals and dates as strings."""
    return {
        key: (
            str(value)
            if isinstance(value, Decimal)
            else value.isoformat()
            if isinstance(value, datetime.date)
            else value
        )
        for key, value in row.items()
        if key != "partner_id"
    }


def stock_alerts_raise(*, today: datetime.date | None = None) -> dict[str, int]:
    """Announce, per partner, one ``stock.replenishment_alert`` listing its locations and
    products below their reorder point and one ``stock.near_expiry_alert`` listing its lots
    near expiry (nothing for a partner with nothing to report). Answers the events announced.

    The events leave after the commit of the transaction this runs in, like every business event.
    """
    today = today or timezone.localdate()
    policy = ReplenishmentPolicy.from_settings()
    within_days = settings.NEAR_EXPIRY_ALERT_DAYS
    below: dict[int, list[dict]] = defaultdict(list)
    for row in replenishment(seller_id=None, today=today, policy=policy):
        if row["below_reorder_point"]:
            below[row["partner_id"]].append(row)
    expiring: dict[int, list[dict]] = defaultdict(list)
    for row in near_expiry(seller_id=None, today=today, within_days=within_days):
        expiring[row["partner_id"]].append(row)
    partners = Partner.objects.in_bulk(set(below) | set(expiring))
    with transaction.atomic():
        for partner_id, rows in sorted(below.items()):
            partner = partners[partner_id]
            announce(
                REPLENISHMENT_ALERT,
                payload={
                    "partner": partner.name,
                    "partner_gln": partner.gln,
                    "as_of": today.isoformat(),
                    "lead_time_days": policy.lead_time_days,
                    "demand_window_days": policy.window_days,
                    "count": len(rows),
                    "rows": [_json_row(row) for row in rows],
                },
                partner_ids=[partner_id],
            )
        for partner_id, rows in sorted(expiring.items()):
            partner = partners[partner_id]
            announce(
                NEAR_EXPIRY_ALERT,
                payload={
                    "partner": partner.name,
                    "partner_gln": partner.gln,
                    "as_of": today.isoformat(),
                    "within_days": within_days,
                    "count": len(rows),
                    "lots": [_json_row(row) for row in rows],
                },
                partner_ids=[partner_id],
            )
    return {REPLENISHMENT_ALERT: len(below), NEAR_EXPIRY_ALERT: len(expiring)}
