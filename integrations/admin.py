from django.contrib import admin

from audit.admin import ReadOnlyAdmin, RegulatedAdmin

from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(RegulatedAdmin):
    """The platform operator may switch an endpoint off (with a reason); partners' admins
    register and change theirs through the API, where the URL and events are checked."""

    list_display = ["url", "partner", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["url", "partner__name"]
    fields = ["partner", "url", "events", "is_active"]
    readonly_fields = ["partner", "url", "events"]

    def has_add_permission(self, request) -> bool:
        return False  # the secret is shown once, to the partner, by the API


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ["number", "started_at", "duration_ms", "status_code", "error", "succeeded"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["event", "endpoint", "status", "attempts", "last_status_code", "created_at"]
    list_filter = ["status", "event"]
    search_fields = ["endpoint__url", "endpoint__partner__name"]
    inlines = [WebhookAttemptInline]
