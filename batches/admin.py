from django.contrib import admin

from audit.admin import ReadOnlyAdmin, RegulatedAdmin

from .models import Batch, Product, StockAllocation, StockBalance, StockMove, StorageClass


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
