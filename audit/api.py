"""API of the audit app: chain verification, the audit-trail viewer, lineage and exports.

Read-only, and for auditors only (QA officers, administrators, regulators, superusers): any
other user is refused with 403 ``role_not_permitted``; an auditor who tries to write gets 405.
What each auditor sees is decided in :mod:`audit.selectors` (its docstring states the rule).
"""

from __future__ import annotations

import datetime

from django.http import HttpResponse
from django.utils import timezone
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from partners.models import Role
from pharmadms.exceptions import NotPermitted

from . import exports, selectors
from .chain import verify
from .filters import AuditEntryFilter
from .models import AuditEntry

AUDITOR_ROLES = {Role.QA_OFFICER, Role.REGULATOR, Role.ADMIN}


def is_auditor(user) -> bool:
    return bool(
        user and user.is_authenticated and (user.is_superuser or user.role in AUDITOR_ROLES)
    )


def require_auditor(user) -> None:
    if not (user.is_superuser or user.role in AUDITOR_ROLES):
        raise NotPermitted(
            "the audit trail is for QA officers, administrators and inspectors",
            code="role_not_permitted",
        )


class IsAuditor(BasePermission):
    """Auditors only, whatever the method: so a write by an auditor is 405, not a 403."""

    def has_permission(self, request, view) -> bool:
        require_auditor(request.user)
        return True


AUDITOR_PERMISSIONS = [IsAuthenticated, IsAuditor]


class AuditVerifyView(APIView):
    """Recompute the whole chain: `ok`, the head, and the first broken sequence and why."""

    @extend_schema(
        responses=inline_serializer(
            "AuditVerification",
            {
                "ok": serializers.BooleanField(),
                "checked": serializers.IntegerField(),
                "head": serializers.DictField(),
                "first_broken": serializers.DictField(allow_null=True),
            },
        )
    )
    def get(self, request):
        require_auditor(request.user)
        return Response(verify().as_dict())


# --- entries ---------------------------------------------------------------------------------


class AuditEntrySerializer(serializers.ModelSerializer):
    occurred_at = serializers.DateTimeField(default_timezone=datetime.UTC, help_text="UTC")
    user = serializers.IntegerField(source="user_id", allow_null=True, help_text="user id")

    class Meta:
        model = AuditEntry
        fields = [
            "sequence",
            "occurred_at",
            "action",
            "object_model",
            "object_id",
            "source",
            "record_id",
            "user",
            "username",
            "partner_id",
            "reason",
            "content_hash",
            "previous_hash",
            "entry_hash",
            "payload",
        ]


class ExportNegotiation(BaseContentNegotiation):
    """The export's ``format`` names the file it returns, not a renderer: refusals stay JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


EXPORT_FORMATS = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


@extend_schema_view(
    retrieve=extend_schema(
        description="One chain entry, by its sequence number (404 if not visible to you).",
        parameters=[OpenApiParameter("sequence", int, OpenApiParameter.PATH)],
    )
)
class AuditEntryViewSet(viewsets.ReadOnlyModelViewSet):
    """The chain entries an auditor may read, oldest first (``ordering=-sequence`` reverses).

    A regulator or superuser reads every entry; a QA officer or administrator reads the
    entries written by their own partner's users and those about records their partner owns.
    Filters: ``model`` and ``object_id`` (one record), ``user`` (username or id), ``action``,
    ``occurred_after`` (inclusive) and ``occurred_before`` (exclusive).
    """

    serializer_class = AuditEntrySerializer
    permission_classes = AUDITOR_PERMISSIONS
    filterset_class = AuditEntryFilter
    lookup_field = "sequence"
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to scope by
            return AuditEntry.objects.none()
        return selectors.visible_entries(self.request.user)

    @extend_schema(
        filters=True,
        parameters=[
            OpenApiParameter(
                "format",
                str,
                enum=sorted(EXPORT_FORMATS),
                required=True,
                description="csv (every field) or pdf (a report with the signatures)",
            )
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="the entries"),
            (200, "application/pdf"): OpenApiResponse(
                OpenApiTypes.BINARY, description="the entries, the chain head, the signatures"
            ),
        },
    )
    @action(
        detail=False,
        methods=["get"],
        renderer_classes=[JSONRenderer],
        content_negotiation_class=ExportNegotiation,
    )
    def export(self, request):
        """The filtered entries as a file, oldest first, cut at 10,000 (the file says so)."""
        kind = request.query_params.get("format", "")
        if kind not in EXPORT_FORMATS:
            raise serializers.ValidationError(
                {"format": [serializers.ErrorDetail("csv or pdf", code="invalid_choice")]}
            )
        filterset = AuditEntryFilter(
            request.query_params, queryset=self.get_queryset(), request=request
        )
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)
        data = selectors.export_entries(filterset.qs, limit=selectors.EXPORT_LIMIT)
        generated_at = timezone.now()
        if kind == "csv":
            body = exports.entries_csv(data)
        else:
            body = exports.entries_pdf(
                data,
                filters=filterset.described(),
                generated_by=request.user,
                generated_at=generated_at,
            )
        response = HttpResponse(body, content_type=EXPORT_FORMATS[kind])
        filename = exports.export_filename(kind, generated_at)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["X-Export-Entries"] = str(len(data.entries))
        response["X-Export-Truncated"] = "true" if data.truncated else "false"
        return response


# --- lineage ---------------------------------------------------------------------------------


class LineageQuerySerializer(serializers.Serializer):
    model = serializers.CharField(help_text="the record's model label, e.g. batches.batch")
    id = serializers.CharField(help_text="the record's id")


class ChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    old = serializers.JSONField(allow_null=True)
    new = serializers.JSONField(allow_null=True)


class LineageSignatureSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="signature.pk")
    printed_name = serializers.CharField()
    username = serializers.CharField(source="signature.user.username")
    signed_at = serializers.DateTimeField(default_timezone=datetime.UTC)
    meaning = serializers.CharField()
    meaning_display = serializers.CharField(source="signature.get_meaning_display")
    reason = serializers.CharField()
    record_version = serializers.IntegerField(
        allow_null=True, help_text="history_id of the signed version"
    )
    content_hash = serializers.CharField()
    status = serializers.ChoiceField(
        choices=[selectors.SIGNATURE_VALID, selectors.SIGNATURE_CHANGED],
        help_text="whether the record still has the content that was signed",
    )
    sealed_sequence = serializers.IntegerField(allow_null=True)


class VersionSerializer(serializers.Serializer):
    history_id = serializers.IntegerField()
    history_date = serializers.DateTimeField(default_timezone=datetime.UTC)
    history_type = serializers.CharField(help_text="+ created, ~ changed, - deleted")
    user = serializers.CharField(source="username", allow_null=True)
    reason = serializers.CharField()
    changes = ChangeSerializer(many=True, help_text="against the previous version")
    sealed_sequence = serializers.IntegerField(
        allow_null=True, help_text="the chain entry that sealed this version"
    )


class LineageSerializer(serializers.Serializer):
    model = serializers.CharField(source="label")
    object_id = serializers.CharField()
    object = serializers.CharField(source="title")
    current_content_hash = serializers.CharField(allow_null=True)
    versions = VersionSerializer(many=True, help_text="newest first")
    signatures = LineageSignatureSerializer(many=True, help_text="oldest first")


class AuditLineageView(APIView):
    """Every version of one record (newest first) with its diff and seal, and its signatures.

    ``GET /api/v1/audit/lineage/?model=batches.batch&id=12``. A label that is not a model with
    a history answers 400 ``unknown_model``; a record the auditor may not see answers 404.
    """

    permission_classes = AUDITOR_PERMISSIONS

    @extend_schema(parameters=[LineageQuerySerializer], responses=LineageSerializer)
    def get(self, request):
        query = LineageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        lineage = selectors.record_lineage(
            user=request.user,
            model_label=query.validated_data["model"],
            object_id=query.validated_data["id"],
        )
        return Response(LineageSerializer(lineage).data)
