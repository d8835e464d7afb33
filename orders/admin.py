"""Back-office views of agreements and orders: read-only, with their history.

Agreements and orders change only through orders.services, whose rules (no overlapping
agreements, the order lifecycle, stock allocation) a plain admin form would bypass.
"""

from django.contrib import admin

from audit.admin import ServiceOnlyAdmin

from .models import (
    Agreement,
    AgreementPrice,
    Order,
    OrderLine,
    ReturnLine,
    ReturnRequest,
    SalesTarget,
    Shipment,
    ShipmentLine,
)


@admin.register(Agreement)
class AgreementAdmin(ServiceOnlyAdmin):
    list_display = ["supplier", "customer", "valid_from", "valid_until", "status"]
    list_filter = ["status"]
    search_fields = ["supplier__name", "customer__name"]


@admin.register(AgreementPrice)
class AgreementPriceAdmin(ServiceOnlyAdmin):
    list_display = ["agreement", "product", "unit_price", "currency"]


@admin.register(SalesTarget)
class SalesTargetAdmin(ServiceOnlyAdmin):
    list_display = ["agreement", "period_start", "period_end", "product", "target_quantity"]


@admin.register(Order)
class OrderAdmin(ServiceOnlyAdmin):
    list_display = ["number", "buyer", "seller", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["number", "buyer__name", "seller__name", "customer_reference"]


@admin.register(OrderLine)
class OrderLineAdmin(ServiceOnlyAdmin):
    list_display = ["order", "product", "quantity", "quantity_allocated", "quantity_backordered"]


@admin.register(Shipment)
class ShipmentAdmin(ServiceOnlyAdmin):
    list_display = ["number", "order", "from_site", "to_site", "status", "dispatched_at"]
    list_filter = ["status"]
    search_fields = ["number", "order__number", "tracking_number"]


@admin.register(ShipmentLine)
class ShipmentLineAdmin(ServiceOnlyAdmin):
    list_display = ["shipment", "batch", "quantity", "received_quantity", "discrepancy"]


@admin.register(ReturnRequest)
class ReturnRequestAdmin(ServiceOnlyAdmin):
    list_display = ["number", "customer", "seller", "shipment", "status", "rma_number"]
    list_filter = ["status"]
    search_fields = ["number", "rma_number", "shipment__number", "customer__name"]


@admin.register(ReturnLine)
class ReturnLineAdmin(ServiceOnlyAdmin):
    list_display = ["return_request", "batch", "quantity", "reason_code", "disposition"]
