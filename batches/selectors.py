"""Read queries over lots and stock that are more than a filter."""

from __future__ import annotations

from django.db.models import QuerySet, Sum

from partners.models import Partner

from .models import StockBalance


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
