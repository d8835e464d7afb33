from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from simple_history.admin import SimpleHistoryAdmin

from audit.admin import RegulatedAdmin

from .models import Licence, Location, Partner, Site, User


@admin.register(Partner)
class PartnerAdmin(RegulatedAdmin):
    list_display = ["name", "kind", "gln", "region", "is_active"]
    list_filter = ["kind", "region", "is_active"]
    search_fields = ["name", "gln"]


@admin.register(Licence)
class LicenceAdmin(RegulatedAdmin):
    list_display = ["number", "partner", "kind", "valid_from", "valid_until", "status"]
    list_filter = ["kind", "status"]
    search_fields = ["number", "partner__name"]


@admin.register(Site)
class SiteAdmin(RegulatedAdmin):
    list_display = ["name", "partner", "gln", "city", "country"]
    search_fields = ["name", "gln", "partner__name"]


@admin.register(Location)
class LocationAdmin(RegulatedAdmin):
    list_display = ["code", "name", "site", "kind", "is_active"]
    list_filter = ["kind"]


@admin.register(User)
class UserAdmin(SimpleHistoryAdmin, DjangoUserAdmin):
    list_display = ["username", "get_full_name", "partner", "role", "is_active"]
    list_filter = ["role", "is_active", "partner__kind"]
    fieldsets = [
        *DjangoUserAdmin.fieldsets,
        ("Organisation", {"fields": ["partner", "role"]}),
    ]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # users are deactivated, never deleted
