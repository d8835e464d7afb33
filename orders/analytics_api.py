"""Read-only API of sales analytics and replenishment (``orders.analytics``).

``GET /api/v1/analytics/sales/?group_by=product|region|partner|month&from=&to=``,
``/analytics/targets/``, ``/analytics/replenishment/``, ``/analytics/near-expiry/``. For the
order desk, administrators and QA officers of a partner (their partner's figures as seller) and
regulators (every partner's); anyone else 403. Bad parameters answer 400 ``{code, detail}``.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from . import analytics

MONEY = {"max_digits": 20, "decimal_places": 4}
DAYS = {"max_digits": 12, "decimal_places": 1}


class SalesRowSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="GTIN, region code, buyer GLN or YYYY-MM")
    label = serializers.CharField()
    quantity = serializers.IntegerField(help_text="units shipped")
    value = serializers.DecimalField(**MONEY, help_text="at the order lines' unit prices")
    currency = serializers.CharField()


class TargetRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    agreement = serializers.IntegerField()
    seller = serializers.CharField()
    buyer = serializers.CharField()
    buyer_gln = serializers.CharField()
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    product_gtin = serializers.CharField(allow_null=True)
    product_name = serializers.CharField(allow_null=True)
    target_quantity = serializers.IntegerField(allow_null=True)
    actual_quantity = serializers.IntegerField()
    quantity_attainment_percent = serializers.DecimalField(**DAYS, allow_null=True)
    target_value = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    actual_value = serializers.DecimalField(**MONEY)
    value_attainment_percent = serializers.DecimalField(**DAYS, allow_null=True)
    currency = serializers.CharField()


class ReplenishmentRowSerializer(serializers.Serializer):
    partner = serializers.CharField()
    site = serializers.CharField()
    location_id = serializers.IntegerField()
    location = serializers.CharField()
    product_id = serializers.IntegerField()
    product_gtin = serializers.CharField()
    product_name = serializers.CharField()
    on_hand = serializers.IntegerField()
    available = serializers.IntegerField(help_text="sellable: released, unexpired, unallocated")
    shipped_in_window = serializers.IntegerField()
    daily_demand = serializers.DecimalField(**MONEY)
    days_of_supply = serializers.DecimalField(
        **DAYS, allow_null=True, help_text="null when there is no demand"
    )
    safety_stock = serializers.IntegerField()
    reorder_point = serializers.IntegerField()
    below_reorder_point = serializers.BooleanField()


class NearExpiryRowSerializer(serializers.Serializer):
    partner = serializers.CharField()
    site = serializers.CharField()
    location = serializers.CharField()
    location_kind = serializers.CharField()
    product_gtin = serializers.CharField()
    product_name = serializers.CharField()
    batch_id = serializers.IntegerField()
    lot = serializers.CharField()
    lot_status = serializers.CharField()
    expires_on = serializers.DateField()
    days_to_expiry = serializers.IntegerField(help_text="negative once expired")
    on_hand = serializers.IntegerField()
    allocated = serializers.IntegerField()


class AnalyticsView(APIView):
    """Read-only; the role check answers 403 for every method a reader may not use."""

    http_method_names = ["get", "head", "options"]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        analytics.require_analytics_reader(request.user)


class SalesAnalyticsView(AnalyticsView):
    """Units shipped and their value, grouped by product, buyer region, buyer or month."""

    @extend_schema(
        parameters=[
            OpenApiParameter("group_by", str, enum=list(analytics.GROUPS), default="product"),
            OpenApiParameter("from", OpenApiTypes.DATE, description="dispatched on or after"),
            OpenApiParameter("to", OpenApiTypes.DATE, description="dispatched on or before"),
        ],
        responses=inline_serializer(
            "SalesAnalytics",
            {
                "group_by": serializers.CharField(),
                "from": serializers.DateField(allow_null=True),
                "to": serializers.DateField(allow_null=True),
                "results": SalesRowSerializer(many=True),
            },
        ),
    )
    def get(self, request):
        group_by = request.query_params.get("group_by", "product")
        start, end = analytics.parse_period(
            request.query_params.get("from"), request.query_params.get("to")
        )
        rows = analytics.sales_summary(
            seller_id=analytics.seller_scope(request.user), group_by=group_by, start=start, end=end
        )
        return Response(
            {
                "group_by": group_by,
                "from": start,
                "to": end,
                "results": SalesRowSerializer(rows, many=True).data,
            }
        )


class TargetAttainmentView(AnalyticsView):
    """Each sales target of the seller's agreements against what was shipped in its period."""

    @extend_schema(responses=TargetRowSerializer(many=True))
    def get(self, request):
        rows = analytics.target_attainment(seller_id=analytics.seller_scope(request.user))
        return Response(TargetRowSerializer(rows, many=True).data)


class ReplenishmentView(AnalyticsView):
    """Per storage location and product: demand, days of supply, reorder point."""

    @extend_schema(responses=ReplenishmentRowSerializer(many=True))
    def get(self, request):
        rows = analytics.replenishment(seller_id=analytics.seller_scope(request.user))
        return Response(ReplenishmentRowSerializer(rows, many=True).data)


class NearExpiryView(AnalyticsView):
    """Lots on hand expiring within NEAR_EXPIRY_ALERT_DAYS (expired ones too)."""

    @extend_schema(responses=NearExpiryRowSerializer(many=True))
    def get(self, request):
        rows = analytics.near_expiry(seller_id=analytics.seller_scope(request.user))
        return Response(NearExpiryRowSerializer(rows, many=True).data)
