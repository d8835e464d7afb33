"""Read queries over lots and stock that are more than a filter."""

from __future__ import annotations

from django.db.models import QuerySet, Sum

from partners.models import Partner

from .models import ScanRecord, ScanVerdict, StockBalance


def stock_on_hand_by_lot(*, partner: Partner) -> QuerySet:
    """The partner's stock per product and lot, summed over its locations, by product then FEFO."""
    return (
        StockBalance.objects.filter(location__site__partner=partner, on_hand__gt=0)
        .values(
            "batch_id",
            "batch__product__name",
            "batch__product__strength",
            "batch__product__gtin",
            "batch__lot_number",
            "batch__expires_on",
            "batch__status",
        )
        .annotate(on_hand=Sum("on_hand"), allocated=Sum("allocated"))
        .order_by("batch__product__name", "batch__expires_on", "batch__lot_number")
    )


def refused_scans(
    *, partner: Partner | None = None, since=None, until=None
) -> QuerySet[ScanRecord]:
    """Refused scans, newest first (a partner's, or all): the QA dashboard's list."""
    queryset = ScanRecord.objects.filter(verdict=ScanVerdict.REFUSED).select_related(
        "user", "location", "product", "batch"
    )
    if partner is not None:
        queryset = queryset.filter(partner=partner)
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    if until is not None:
        queryset = queryset.filter(created_at__lt=until)
    return queryset.order_by("-created_at", "-id")


def refused_scan_summary(queryset: QuerySet[ScanRecord]) -> list[dict]:
    """How often each reason code refused a scan in ``queryset``, most frequent first, with
    the time of the latest. Counted in Python: reasons are a JSON list, the same on SQLite and
    PostgreSQL, and a dashboard's window holds few refusals."""
    counts: dict[str, dict] = {}
    for reasons, created_at in queryset.values_list("reasons", "created_at").iterator():
        for code in {reason.get("code", "") for reason in reasons or []}:
            row = counts.setdefault(code, {"code": code, "count": 0, "last_at": created_at})
            row["count"] += 1
            row["last_at"] = max(row["last_at"], created_at)
    return sorted(counts.values(), key=lambda row: (-row["count"], row["code"]))
