"""API of the audit app: chain verification (the audit-trail viewer adds its endpoints here)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from partners.models import Role
from pharmadms.exceptions import NotPermitted

from .chain import verify

AUDITOR_ROLES = {Role.QA_OFFICER, Role.REGULATOR, Role.ADMIN}


def require_auditor(user) -> None:
    if not (user.is_superuser or user.role in AUDITOR_ROLES):
        raise NotPermitted(
            "the audit trail is for QA officers, administrators and inspectors",
            code="role_not_permitted",
        )


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
