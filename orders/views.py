"""Pages of the orders app.

The sales page `/sales/`: sales by month and product (tables and server-drawn SVG charts),
target attainment, replenishment and near-expiry lots, for the readers of
``orders.analytics`` (sign-in redirect first, then 403 for any other role).

The returns pages `/sales/returns/` (a partner's returns) and `/sales/returns/<id>/` (one
return; the seller's QA officer disposes of it there under electronic signature).

The shipment pages `/sales/shipments/` and `/sales/shipments/<id>/`: a party's shipments, and
one with its lines, packages, documents and the panels that apps above orders add to it
(:data:`SHIPMENT_PANELS`; coldchain adds the temperature record)."""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from partners.models import Role
from pharmadms.exceptions import ApplicationError, InvalidInput

from . import analytics, selectors, services
from .models import ReturnDisposition, ReturnRequest, ReturnStatus, Shipment

# Templates that apps above orders add to the shipment page, each rendered with ``shipment`` in
# its context (orders never imports them). Registered in their AppConfig.ready():
# - coldchain: "coldchain/_shipment_panel.html", the shipment's temperature record.
SHIPMENT_PANELS: list[str] = []
SHIPMENT_PAGE_SIZE = 100


def register_shipment_panel(template_name: str) -> None:
    if template_name not in SHIPMENT_PANELS:
        SHIPMENT_PANELS.append(template_name)


CHART_WIDTH, CHART_HEIGHT = 640, 220
PLOT = {"left": 56, "right": 12, "top": 12, "bottom": 40}
MAX_BARS = 12


def analytics_reader_required(view):
    @login_required
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not analytics.may_read_analytics(request.user):
            raise PermissionDenied(
                "sales analytics are for the order desk, administrators, QA officers, regulators"
            )
        return view(request, *args, **kwargs)

    return wrapped


def _units_by_key(rows: list[dict]) -> list[tuple[str, int]]:
    """Units per group, adding the rows a group has in several currencies (units add up)."""
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["label"]] = totals.get(row["label"], 0) + row["quantity"]
    return list(totals.items())


def _scale(points: list[tuple[str, int]]) -> tuple[float, float, list[dict]]:
    top = max((value for _, value in points), default=0) or 1
    plot_width = CHART_WIDTH - PLOT["left"] - PLOT["right"]
    plot_height = CHART_HEIGHT - PLOT["top"] - PLOT["bottom"]
    ticks = [
        {"y": round(PLOT["top"] + plot_height * (1 - share), 1), "label": round(top * share)}
        for share in (0, 0.5, 1)
    ]
    return plot_width, plot_height, ticks


def bar_chart(points: list[tuple[str, int]]) -> dict[str, Any]:
    """Geometry of a bar chart of ``points`` (label, units), drawn as inline SVG."""
    points = points[:MAX_BARS]
    plot_width, plot_height, ticks = _scale(points)
    top = max((value for _, value in points), default=0) or 1
    slot = plot_width / max(len(points), 1)
    bars = []
    for index, (label, value) in enumerate(points):
        height = plot_height * value / top
        bars.append(
            {
                "x": round(PLOT["left"] + index * slot + slot * 0.15, 1),
                "y": round(PLOT["top"] + plot_height - height, 1),
                "width": round(slot * 0.7, 1),
                "height": round(height, 1),
                "label": label if len(label) <= 14 else f"{label[:13]}…",
                "full_label": label,
                "value": value,
                "label_x": round(PLOT["left"] + index * slot + slot / 2, 1),
            }
        )
    return _frame(bars=bars, ticks=ticks)


def line_chart(points: list[tuple[str, int]]) -> dict[str, Any]:
    """Geometry of a line chart of ``points`` (label, units) in order, as inline SVG."""
    plot_width, plot_height, ticks = _scale(points)
    top = max((value for _, value in points), default=0) or 1
    step = plot_width / max(len(points) - 1, 1)
    dots = []
    for index, (label, value) in enumerate(points):
        x = PLOT["left"] + (index * step if len(points) > 1 else plot_width / 2)
        dots.append(
            {
                "x": round(x, 1),
                "y": round(PLOT["top"] + plot_height * (1 - value / top), 1),
                "label": label,
                "value": value,
            }
        )
    return _frame(dots=dots, path=" ".join(f"{dot['x']},{dot['y']}" for dot in dots), ticks=ticks)


def _frame(**parts: Any) -> dict[str, Any]:
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": PLOT["left"],
        "right": CHART_WIDTH - PLOT["right"],
        "baseline": CHART_HEIGHT - PLOT["bottom"],
        "label_y": CHART_HEIGHT - PLOT["bottom"] + 16,
        **parts,
    }


def _totals(rows: list[dict]) -> list[dict]:
    """Total units and value per currency of a set of sales rows."""
    totals: dict[str, dict] = {}
    for row in rows:
        total = totals.setdefault(
            row["currency"], {"currency": row["currency"], "quantity": 0, "value": Decimal(0)}
        )
        total["quantity"] += row["quantity"]
        total["value"] += row["value"]
    return list(totals.values())


@require_GET
@analytics_reader_required
def sales(request):
    user = request.user
    seller_id = analytics.seller_scope(user)
    error = None
    try:
        start, end = analytics.parse_period(request.GET.get("from"), request.GET.get("to"))
    except InvalidInput as refused:
        start = end = None
        error = refused.detail
    by_month = analytics.sales_summary(seller_id=seller_id, group_by="month", start=start, end=end)
    by_product = analytics.sales_summary(
        seller_id=seller_id, group_by="product", start=start, end=end
    )
    by_region = analytics.sales_summary(
        seller_id=seller_id, group_by="region", start=start, end=end
    )
    by_partner = analytics.sales_summary(
        seller_id=seller_id, group_by="partner", start=start, end=end
    )
    policy = analytics.ReplenishmentPolicy.from_settings()
    replenishment = analytics.replenishment(seller_id=seller_id, policy=policy)
    return render(
        request,
        "orders/sales.html",
        {
            "scope": "every partner" if seller_id is None else user.partner.name,
            "start": start,
            "end": end,
            "error": error,
            "by_month": by_month,
            "by_product": by_product,
            "by_region": by_region,
            "by_partner": by_partner,
            "totals": _totals(by_product),
            "month_chart": line_chart(_units_by_key(by_month)),
            "product_chart": bar_chart(_units_by_key(by_product)),
            "targets": analytics.target_attainment(seller_id=seller_id),
            "replenishment": replenishment,
            "below_count": sum(1 for row in replenishment if row["below_reorder_point"]),
            "policy": policy,
            "near_expiry": analytics.near_expiry(seller_id=seller_id),
            "near_expiry_days": settings.NEAR_EXPIRY_ALERT_DAYS,
        },
    )


# --- returns ---------------------------------------------------------------------------------


def _return_queryset(user):
    """Returns the user's partner sent (as customer) or received (as seller); regulators and
    administrators without a partner read all. Another partner's return does not exist here."""
    from .api import returns_visible_to

    if not user.sees_everything and user.partner_id is None:
        return ReturnRequest.objects.none()
    return returns_visible_to(user).prefetch_related("lines__batch__product")


def _may_dispose(user, ret: ReturnRequest) -> bool:
    """The seller's QA officer disposes of a received return (signing with the password)."""
    return (
        ret.status == ReturnStatus.RECEIVED
        and user.role == Role.QA_OFFICER
        and user.partner_id == ret.seller_id
    )


@require_GET
@login_required
def returns(request):
    """The returns page: a partner's returns with status, RMA and lines; links to QA's
    disposition for the returns waiting for it."""
    user = request.user
    status = request.GET.get("status") or ""
    queryset = _return_queryset(user).order_by("-created_at", "-id")
    if status in ReturnStatus.values:
        queryset = queryset.filter(status=status)
    rows = list(queryset[:200])
    return render(
        request,
        "orders/returns.html",
        {
            "returns": [{"ret": ret, "may_dispose": _may_dispose(user, ret)} for ret in rows],
            "statuses": ReturnStatus.choices,
            "status": status,
            "scope": "every partner" if user.sees_everything else user.partner.name,
        },
    )


@require_http_methods(["GET", "POST"])
@login_required
def return_detail(request, pk: int):
    """One return with its lines; the seller's QA officer disposes of a received return here
    (restock or destroy each line) under electronic signature."""
    ret = get_object_or_404(_return_queryset(request.user), pk=pk)
    may_dispose = _may_dispose(request.user, ret)
    error = None
    if request.method == "POST":
        if not may_dispose:
            raise PermissionDenied("returns are disposed of by the seller's QA officer")
        dispositions = {
            line.pk: request.POST.get(f"line-{line.pk}", "") for line in ret.lines.all()
        }
        try:
            services.return_dispose(
                return_request=ret,
                dispositions=dispositions,
                signer=request.user,
                password=request.POST.get("password", ""),
                reason=request.POST.get("reason", ""),
                request=request,
            )
        except ApplicationError as refused:
            error = refused.detail
        else:
            return redirect("orders:return-detail", pk=ret.pk)
    return render(
        request,
        "orders/return_detail.html",
        {
            "ret": ret,
            "lines": ret.lines.select_related("batch__product", "shipment_line").order_by("id"),
            "may_dispose": may_dispose,
            "dispositions": ReturnDisposition.choices,
            "error": error,
        },
        status=200 if error is None else 409,
    )


@require_GET
@login_required
def shipments(request):
    """The latest shipments the user's partner sends or receives (regulators: all)."""
    visible = (
        selectors.shipments_visible_to(request.user)
        .select_related("order__buyer", "order__seller")
        .order_by("-created_at", "-pk")
    )
    status = request.GET.get("status", "")
    if status:
        visible = visible.filter(status=status)
    return render(
        request,
        "orders/shipments.html",
        {
            "shipments": visible[:SHIPMENT_PAGE_SIZE],
            "status": status,
            "statuses": Shipment._meta.get_field("status").choices,
        },
    )


@require_GET
@login_required
def shipment_detail(request, pk: int):
    """One shipment for its parties and regulators (anyone else: 404)."""
    shipment = get_object_or_404(
        selectors.shipments_visible_to(request.user).select_related(
            "order__buyer", "order__seller", "from_site", "to_site"
        ),
        pk=pk,
    )
    return render(
        request,
        "orders/shipment_detail.html",
        {
            "shipment": shipment,
            "lines": shipment.lines.select_related("batch__product").order_by("pk"),
            "packages": shipment.packages.order_by("pk"),
            "panels": SHIPMENT_PANELS,
        },
    )
