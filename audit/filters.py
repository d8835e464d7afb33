"""The audit-trail filter, shared by the API list, its exports and the /audit/ page."""

from __future__ import annotations

import datetime

import django_filters
from django.db.models import Q, QuerySet

from .models import AuditAction, AuditEntry
from .selectors import audited_model_labels


class AuditEntryFilter(django_filters.FilterSet):
    """Narrow the chain entries by record, model, user, action and time (UTC unless stated).

    ``model`` and ``object_id`` together name one record; ``occurred_after`` is inclusive,
    ``occurred_before`` exclusive, so consecutive ranges never count an entry twice.
    """

    model = django_filters.ChoiceFilter(
        field_name="object_model",
        choices=audited_model_labels,
        label="Model",
        help_text="the record's model label, e.g. batches.batch (partners.user for access events)",
    )
    object_id = django_filters.CharFilter(
        field_name="object_id", label="Object id", help_text="the record's id"
    )
    user = django_filters.CharFilter(
        method="filter_user", label="User", help_text="the acting user's username or user id"
    )
    action = django_filters.ChoiceFilter(choices=AuditAction.choices, label="Action")
    occurred_after = django_filters.IsoDateTimeFilter(
        field_name="occurred_at",
        lookup_expr="gte",
        label="From",
        help_text="entries at or after this time (ISO 8601)",
    )
    occurred_before = django_filters.IsoDateTimeFilter(
        field_name="occurred_at",
        lookup_expr="lt",
        label="To",
        help_text="entries before this time (ISO 8601)",
    )
    ordering = django_filters.OrderingFilter(
        fields=(("sequence", "sequence"),),
        help_text="sequence (oldest first, the default) or -sequence (newest first)",
    )

    class Meta:
        model = AuditEntry
        fields = ["model", "object_id", "user", "action", "occurred_after", "occurred_before"]

    def filter_user(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        matches = Q(username=value)
        if value.isdigit():  # an id; a username may be all digits too, so keep both
            matches |= Q(user_id=int(value))
        return queryset.filter(matches)

    def described(self) -> list[tuple[str, str]]:
        """The filters in force, as (label, value) pairs for the head of an export."""
        if not self.is_bound or not self.is_valid():
            return []
        used = []
        for name, value in self.form.cleaned_data.items():
            if value in (None, "", []):
                continue
            if name == "ordering":
                continue
            label = str(self.filters[name].label or name)
            if isinstance(value, datetime.datetime):
                value = value.astimezone(datetime.UTC).isoformat()
            used.append((f"{label} ({name})", str(value)))
        return used
