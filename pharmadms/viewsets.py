"""Base pieces for the apps' API: writes through services with a reason, and a history action."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Q
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audit.history import history_diff

from .exceptions import InvalidInput

REASON_REQUIRED = "a reason is required: why is this change made? (kept in the audit trail)"


class ReasonField(serializers.CharField):
    """Why the change is made: required on every write of a regulated record.

    A missing, empty or blank reason answers the code ``reason_required``, the same code the
    services use, so a client handles one code whichever layer refused.
    """

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("write_only", True)
        kwargs.setdefault("max_length", 1000)
        kwargs.setdefault("help_text", "why this change is made (kept in the audit trail)")
        super().__init__(**kwargs)

    def fail(self, key: str, **kwargs: Any):
        if key in {"required", "blank", "null"}:
            raise serializers.ValidationError(REASON_REQUIRED, code="reason_required")
        return super().fail(key, **kwargs)


class StrictFieldsMixin:
    """Refuse fields the serializer does not accept instead of silently dropping them.

    In a regulated record a dropped field is a lie by omission: a client that sends
    ``"status": "released"`` must learn that nothing was released.
    """

    # Sent by Django's {% csrf_token %} in the browsable API's HTML forms; not a record field.
    transport_fields = frozenset({"csrfmiddlewaretoken"})

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            errors = {}
            for name in sorted(set(data) - set(self.fields) - self.transport_fields):
                errors[name] = [serializers.ErrorDetail("unknown field", code="unknown_field")]
            for name in sorted(set(data) & set(self.fields)):
                if self.fields[name].read_only:
                    errors[name] = [
                        serializers.ErrorDetail(
                            "this field cannot be written", code="field_not_editable"
                        )
                    ]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class HistoryEntrySerializer(serializers.Serializer):
    history_id = serializers.IntegerField()
    history_date = serializers.DateTimeField()
    history_type = serializers.CharField(help_text="+ created, ~ changed, - deleted")
    history_user = serializers.CharField(allow_null=True)
    history_change_reason = serializers.CharField(allow_null=True)
    changes = serializers.ListField(child=serializers.DictField())


class PartnerScopedMixin:
    """Keep the rows of the user's own partner; regulators and superusers read them all.

    Another partner's object is then simply not found (404), so its existence does not leak.
    ``partner_path`` names the partner's field; several paths keep a row that any of them
    leads to the user's partner (a stock move from or to its locations).
    """

    partner_path: str | tuple[str, ...]

    def base_queryset(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_queryset(self):
        queryset = self.base_queryset()
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to scope by
            return queryset.none()
        user = self.request.user
        if user.sees_everything:
            return queryset
        paths = (self.partner_path,) if isinstance(self.partner_path, str) else self.partner_path
        scope = Q()
        for path in paths:
            scope |= Q(**{path: user.partner_id})
        return queryset.filter(scope)


class HistoryMixin:
    """`GET <resource>/<id>/history/`: every version with who, when, why and what changed."""

    def history_visible_to(self, user, instance) -> bool:
        """Whether ``user`` may read the history (names and reasons) of a visible object.

        Directory resources (partners, products) are readable by all, but their history names
        the owning organisation's staff: those viewsets narrow it to the owner.
        """
        return True

    @extend_schema(responses=HistoryEntrySerializer(many=True))
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        instance = self.get_object()
        if not (request.user.sees_everything or self.history_visible_to(request.user, instance)):
            raise Http404
        versions = list(instance.history.select_related("history_user").order_by("history_id"))
        entries, previous = [], None
        for version in versions:
            entries.append(
                {
                    "history_id": version.history_id,
                    "history_date": version.history_date,
                    "history_type": version.history_type,
                    "history_user": getattr(version.history_user, "username", None),
                    "history_change_reason": version.history_change_reason,
                    "changes": history_diff(version, previous),
                }
            )
            previous = version
        page = self.paginate_queryset(entries)
        data = HistoryEntrySerializer(page if page is not None else entries, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)


class ServiceWriteViewSet(
    HistoryMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Read, create (POST) and correct (PATCH) a regulated resource through its services.

    Subclasses implement ``perform_service_create(data, reason)`` and
    ``perform_service_update(instance, data, reason)``; there is no PUT and no DELETE.
    """

    http_method_names = ["get", "post", "patch", "head", "options"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        reason = data.pop("reason")
        instance = self.perform_service_create(data, reason)
        return Response(self.get_serializer(instance).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        instance = self.get_object()
        serializer = self.get_serializer(instance, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        reason = data.pop("reason", "")
        if not reason.strip():
            raise serializers.ValidationError(
                {"reason": [serializers.ErrorDetail(REASON_REQUIRED, code="reason_required")]}
            )
        if not data:
            # A reason with nothing to change would answer 200 and record no version at all.
            raise InvalidInput("the request changes no field", code="no_changes")
        instance = self.perform_service_update(instance, data, reason)
        return Response(self.get_serializer(instance).data)

    def perform_service_create(self, data: dict, reason: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def perform_service_update(self, instance, data: dict, reason: str):  # pragma: no cover
        raise NotImplementedError
