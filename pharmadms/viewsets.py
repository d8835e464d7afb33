"""Base pieces for the apps' API: writes through services with a reason, and a history action."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audit.history import history_diff


class ReasonField(serializers.CharField):
    """Why the change is made: required on every write of a regulated record."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("write_only", True)
        kwargs.setdefault("max_length", 1000)
        kwargs.setdefault("help_text", "why this change is made (kept in the audit trail)")
        super().__init__(**kwargs)


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
    """

    partner_path: str

    def base_queryset(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_queryset(self):
        queryset = self.base_queryset()
        user = self.request.user
        if user.sees_everything:
            return queryset
        return queryset.filter(**{self.partner_path: user.partner_id})


class HistoryMixin:
    """`GET <resource>/<id>/history/`: every version with who, when, why and what changed."""

    @extend_schema(responses=HistoryEntrySerializer(many=True))
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        instance = self.get_object()
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
        reason = data.pop("reason", None)
        instance = self.perform_service_update(instance, data, reason or "")
        return Response(self.get_serializer(instance).data)

    def perform_service_create(self, data: dict, reason: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def perform_service_update(self, instance, data: dict, reason: str):  # pragma: no cover
        raise NotImplementedError
