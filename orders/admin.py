"""Back-office views of agreements and orders: read-only, with their history.

Agreements and orders change only through orders.services, whose rules (no overlapping
agreements, the order lifecycle, stock allocation) a plain admin form would bypass.
"""

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import Agreement, AgreementPrice, Order, OrderLine, SalesTarget


class ServiceOnlyAdmin(SimpleHistoryAdmin):
    """Look and read the history; every change goes through a service."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


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
