from django.contrib import admin

from audit.admin import ReadOnlyAdmin, RegulatedAdmin

from .models import (
    Batch,
    CountDiscrepancy,
    Product,
    ScanRecord,
    Serial,
    StockAllocation,
    StockBalance,
    StockMove,
    StorageClass,
)


@admin.register(StorageClass)
class StorageClassAdmin(RegulatedAdmin):
    list_display = ["code", "name", "min_celsius", "max_celsius"]


@admin.register(Product)
class ProductAdmin(RegulatedAdmin):
    list_display = ["name", "strength", "gtin", "manufacturer", "category", "storage_class"]
    list_filter = ["category", "storage_class", "controlled_schedule"]
    search_fields = ["name", "gtin"]


@admin.register(Batch)
class BatchAdmin(RegulatedAdmin):
    list_display = ["lot_number", "product", "manufactured_on", "expires_on", "status"]
    list_filter = ["status", "product"]
    search_fields = ["lot_number", "product__name", "product__gtin"]

    def get_readonly_fields(self, request, obj=None):
        # Status changes are QA decisions taken through the services, not typed in here.
        return ["status", "product", "lot_number"] if obj else ["status"]


@admin.register(StockMove)
class StockMoveAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "kind",
        "batch",
        "quantity",
        "from_location",
        "to_location",
        "user",
        "reference",
    ]
    list_filter = ["kind"]
    search_fields = ["reference", "batch__lot_number"]


@admin.register(StockBalance)
class StockBalanceAdmin(ReadOnlyAdmin):
    list_display = ["batch", "location", "on_hand", "allocated"]


@admin.register(StockAllocation)
class StockAllocationAdmin(ReadOnlyAdmin):
    list_display = ["reference", "batch", "location", "quantity", "status", "created_at"]
    list_filter = ["status"]


# Serials and counts change only through their services (states, QA decisions): read-only here.
@admin.register(Serial)
class SerialAdmin(ReadOnlyAdmin):
    list_display = ["serial_number", "batch", "state", "holder", "shipment_reference"]
    list_filter = ["state"]
    search_fields = ["serial_number", "batch__lot_number", "shipment_reference"]


@admin.register(CountDiscrepancy)
class CountDiscrepancyAdmin(ReadOnlyAdmin):
    list_display = ["counted_at", "batch", "location", "expected", "counted", "status"]
    list_filter = ["status"]


@admin.register(ScanRecord)
class ScanRecordAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "action", "verdict", "user", "location", "reference", "batch"]
    list_filter = ["verdict", "action"]
    search_fields = ["reference", "scan_id", "batch__lot_number"]
