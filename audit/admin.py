"""Admin base for regulated models: history visible, a reason asked on every save, no delete."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .history import save_with_reason


class ReasonForm(forms.ModelForm):
    change_reason = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why this change is made; it is kept in the audit trail.",
    )


class RegulatedAdmin(SimpleHistoryAdmin):
    """Back-office editing that leaves the same history a service would: who, when, why."""

    form = ReasonForm

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f != "change_reason"]
        return [*fields, "change_reason"]

    def save_model(self, request, obj, form, change):
        save_with_reason(obj, actor=request.user, reason=form.cleaned_data["change_reason"])

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """For append-only records: look, never touch."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ServiceOnlyAdmin(SimpleHistoryAdmin):
    """For records whose every change goes through a service: look and read the history only."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
