"""The scan API: ``POST /api/v1/scans/`` answers a scan; ``GET`` lists the partner's scans.

A scan that was read answers 200 with its verdict (``accepted`` or ``refused``) and every
reason, so a scanner screen always has a body to show; a malformed request (an unknown action,
no location, a bad quantity) answers 400 with ``{code, detail}`` and records nothing. The
shipment actions are bound in orders.scanning.ScanViewSet, the class the router registers.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import django_filters
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.utils.serializer_helpers import BindingDict

from partners.models import Role
from pharmadms.viewsets import PartnerScopedMixin, StrictFieldsMixin

from . import scanning, selectors
from .models import ScanAction, ScanRecord, ScanVerdict

# The request body may carry up to this much code; beyond a barcode's size (gs1.MAX_CODE_LENGTH)
# the scan is still answered (refused, code_too_long) and recorded, bounded and escaped.
MAX_REQUEST_CODE = 65_536
REFERENCE_PATTERN = r"^[\x20-\x7e]{0,100}$"
SCAN_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,64}$"


class _CodedField:
    """Answers every refusal of the field with one code of its own (``location_required`` …):
    ``codes`` maps DRF's code to ours, ``"*"`` any other."""

    codes: ClassVar[dict[str, str]] = {}

    def run_validation(self, data: Any = serializers.empty) -> Any:
        try:
            return super().run_validation(data)
        except serializers.ValidationError as error:
            found = error.get_codes()
            while isinstance(found, list | tuple) and found:
                found = found[0]
            code = self.codes.get(str(found)) or self.codes.get("*")
            if code is None:
                raise
            details = error.detail if isinstance(error.detail, list) else [error.detail]
            raise serializers.ValidationError(
                [str(detail) for detail in details], code=code
            ) from error


@extend_schema_field(OpenApiTypes.STR)
class CodeField(_CodedField, serializers.Field):
    """The scanned text exactly as sent: any characters at all (control, NUL, unpaired
    surrogates), never trimmed; the reading decides what it is."""

    codes: ClassVar[dict[str, str]] = {
        "required": "code_required",
        "null": "code_required",
        "too_long": "code_too_long",
        "*": "invalid_code",
    }
    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "the code is text",
        "too_long": f"a scanned code is at most {MAX_REQUEST_CODE:,} characters",
    }

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if len(data) > MAX_REQUEST_CODE:
            self.fail("too_long")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


# In the schema an enum of its own, ScanActionEnum (ENUM_NAME_OVERRIDES in settings): the
# audit trail has an "action" enum too.
class ActionField(_CodedField, serializers.ChoiceField):
    codes: ClassVar[dict[str, str]] = {
        "required": "action_required",
        "null": "action_required",
        "blank": "action_required",
        "*": "unknown_action",
    }


class LocationField(_CodedField, serializers.IntegerField):
    codes: ClassVar[dict[str, str]] = {
        "required": "location_required",
        "null": "location_required",
        "*": "invalid_location",
    }


class QuantityField(_CodedField, serializers.IntegerField):
    codes: ClassVar[dict[str, str]] = {"*": "invalid_quantity"}


class ReferenceField(_CodedField, serializers.RegexField):
    codes: ClassVar[dict[str, str]] = {"*": "invalid_reference"}


class ScanIdField(_CodedField, serializers.RegexField):
    codes: ClassVar[dict[str, str]] = {"*": "invalid_scan_id"}


class DecommissionField(_CodedField, serializers.ChoiceField):
    codes: ClassVar[dict[str, str]] = {"*": "invalid_decommission"}


_REFERENCE = re.compile(REFERENCE_PATTERN)
_SCAN_ID = re.compile(SCAN_ID_PATTERN)


def _plain_text(value: Any, pattern: re.Pattern) -> bool:
    return type(value) is str and value == value.strip() and pattern.fullmatch(value) is not None


def plain_request(data: Any) -> dict[str, Any] | None:
    """The validated request, when the request is plainly well formed: what
    ScanRequestSerializer's fields give for it, without running them one by one (a scan
    station waits for every answer; tests/batches/test_scan_api.py holds the two equal).
    None for anything else, which the fields validate, so that each refusal keeps its code."""
    if type(data) is not dict or not data.keys() <= _REQUEST_FIELDS:
        return None
    code, action, location = data.get("code"), data.get("action"), data.get("location")
    if type(code) is not str or len(code) > MAX_REQUEST_CODE:
        return None
    if type(action) is not str or action not in scanning.ACTIONS:
        return None
    if type(location) is not int or not 1 <= location <= _LARGEST_ID:
        return None
    plain = {"code": code, "action": action, "location": location, "reference": ""}
    reference = data.get("reference", "")
    if reference != "":
        if not _plain_text(reference, _REFERENCE):
            return None
        plain["reference"] = reference
    if "scan_id" in data:
        if not _plain_text(data["scan_id"], _SCAN_ID):
            return None
        plain["scan_id"] = data["scan_id"]
    if "quantity" in data:
        quantity = data["quantity"]
        if quantity is not None and (
            type(quantity) is not int or not 0 <= quantity <= scanning.MAX_SCAN_QUANTITY
        ):
            return None
        plain["quantity"] = quantity
    decommission = data.get("decommission", "")
    if type(decommission) is not str or (
        decommission != "" and decommission not in scanning.DECOMMISSION_CHOICES
    ):
        return None
    plain["decommission"] = decommission
    return plain


class ScanRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    """A scan request. Its fields are bound once, to one instance of their own, and shared by
    every request (DRF copies and binds them for each serializer: on the scan path that was
    a third of the validation). Validating keeps no state in a field, so threads may share
    them; the fields read nothing of their parent but ``partial``, which is never set here."""

    _bound: ClassVar[BindingDict | None] = None

    @property
    def fields(self) -> BindingDict:
        bound = ScanRequestSerializer._bound
        if bound is None:
            owner = ScanRequestSerializer.__new__(ScanRequestSerializer)
            owner.partial, owner._context, owner.parent = False, {}, None
            bound = BindingDict(owner)
            for name, field in self._declared_fields.items():
                bound[name] = copy.deepcopy(field)
            ScanRequestSerializer._bound = bound
        return bound

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        plain = plain_request(data)
        return plain if plain is not None else super().to_internal_value(data)

    code = CodeField(help_text="the scanned text as the scanner sent it (FNC1 as GS, 0x1D)")
    action = ActionField(choices=ScanAction.choices)
    location = LocationField(
        min_value=1, max_value=2**63 - 1, help_text="id of the location scanned at"
    )
    reference = ReferenceField(
        REFERENCE_PATTERN,
        required=False,
        allow_blank=True,
        default="",
        max_length=100,
        help_text="receive/pick/ship: the shipment number; putaway: the source location's code",
    )
    scan_id = ScanIdField(
        SCAN_ID_PATTERN,
        required=False,
        max_length=64,
        help_text="the client's id of this scan: sent again, the first answer comes back",
    )
    quantity = QuantityField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=scanning.MAX_SCAN_QUANTITY,
        help_text="units (default: the code's count, else 1); count: the units counted",
    )
    decommission = DecommissionField(
        choices=[(choice, choice) for choice in scanning.DECOMMISSION_CHOICES],
        required=False,
        allow_blank=True,
        default="",
        help_text="verify only: 'dispensed' decommissions the verified pack",
    )


# What plain_request() knows of the fields: their names and the largest location id.
_REQUEST_FIELDS = frozenset(ScanRequestSerializer._declared_fields)
_LARGEST_ID = ScanRequestSerializer._declared_fields["location"].max_value


class ScanRecordSerializer(serializers.ModelSerializer):
    """A scan and its answer: the verdict, every reason, the parsed code, what it matched."""

    user = serializers.CharField(source="user.username", read_only=True)
    location_code = serializers.CharField(source="location.code", read_only=True)
    product = serializers.SerializerMethodField()
    lot = serializers.SerializerMethodField()
    serial = serializers.SerializerMethodField()
    action = ActionField(choices=ScanAction.choices, read_only=True)

    class Meta:
        model = ScanRecord
        fields = [
            "id",
            "scan_id",
            "created_at",
            "user",
            "location",
            "location_code",
            "action",
            "reference",
            "quantity",
            "verdict",
            "reasons",
            "warnings",
            "parsed",
            "product",
            "lot",
            "serial",
            "outcome",
            "raw_code",
        ]

    def get_product(self, record: ScanRecord) -> dict[str, Any] | None:
        return _product_summary(record.product)

    def get_lot(self, record: ScanRecord) -> dict[str, Any] | None:
        return _lot_summary(record.batch)

    def get_serial(self, record: ScanRecord) -> dict[str, Any] | None:
        return _serial_summary(record.serial)


def _product_summary(product) -> dict[str, Any] | None:
    if product is None:
        return None
    return {
        "id": product.pk,
        "gtin": product.gtin,
        "name": product.name,
        "strength": product.strength,
    }


def _lot_summary(batch) -> dict[str, Any] | None:
    if batch is None:
        return None
    return {
        "id": batch.pk,
        "lot_number": batch.lot_number,
        "expires_on": batch.expires_on.isoformat(),
        "status": batch.status,
    }


def _serial_summary(serial) -> dict[str, Any] | None:
    if serial is None:
        return None
    return {"serial_number": serial.serial_number, "state": serial.state}


class ScanAnswerSerializer(ScanRecordSerializer):
    """The answer to a POST: the record, and whether it is the first answer given again."""

    replayed = serializers.BooleanField(read_only=True)

    class Meta(ScanRecordSerializer.Meta):
        fields = [*ScanRecordSerializer.Meta.fields, "replayed"]


def _timestamp(moment) -> str:
    """What DRF's DateTimeField gives (ISO 8601 in the current time zone, UTC as Z), at a
    fraction of its cost."""
    text = timezone.localtime(moment).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def scan_answer(record: ScanRecord, *, replayed: bool) -> dict[str, Any]:
    """What ScanAnswerSerializer gives for ``record``, written out: a scan station waits for
    every answer, and building the serializer's fields for each one cost more than the rest
    of the answer (tests/batches/test_scan_api.py holds the two equal)."""
    return {
        "id": record.pk,
        "scan_id": record.scan_id,
        "created_at": _timestamp(record.created_at),
        "user": record.user.username,
        "location": record.location_id,
        "location_code": record.location.code,
        "action": record.action,
        "reference": record.reference,
        "quantity": record.quantity,
        "verdict": record.verdict,
        "reasons": record.reasons,
        "warnings": record.warnings,
        "parsed": record.parsed,
        "product": _product_summary(record.product),
        "lot": _lot_summary(record.batch),
        "serial": _serial_summary(record.serial),
        "outcome": record.outcome,
        "raw_code": record.raw_code,
        "replayed": replayed,
    }


class ScanFilter(django_filters.FilterSet):
    verdict = django_filters.ChoiceFilter(choices=ScanVerdict.choices)
    action = django_filters.ChoiceFilter(choices=ScanAction.choices)
    date = django_filters.DateFilter(field_name="created_at", lookup_expr="date")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = ScanRecord
        fields = ["verdict", "action", "location", "reference", "batch", "scan_id"]


class RefusedSummarySerializer(serializers.Serializer):
    code = serializers.CharField()
    count = serializers.IntegerField()
    last_at = serializers.DateTimeField()


class ScanViewSet(
    PartnerScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Scans of the user's partner (regulators read all); POST answers one scan."""

    serializer_class = ScanRecordSerializer
    filterset_class = ScanFilter
    partner_path = "partner_id"
    http_method_names = ["get", "post", "head", "options"]
    write_roles: ClassVar[set[str]] = {
        Role.WAREHOUSE_OPERATOR,
        Role.PARTNER_USER,
        Role.QA_OFFICER,
        Role.ADMIN,
    }
    # The actions beyond the lot-level ones (bound by orders.scanning.ScanViewSet).
    handlers: ClassVar[Mapping[str, scanning.Handler]] = {}

    def base_queryset(self):
        return ScanRecord.objects.select_related("user", "location", "product", "batch", "serial")

    @extend_schema(request=ScanRequestSerializer, responses={200: ScanAnswerSerializer})
    def create(self, request, *args, **kwargs):
        """Answer one scan: 200 with verdict accepted or refused and every reason."""
        serializer = ScanRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        answer = scanning.scan_submit(
            actor=request.user, handlers=self.handlers, **serializer.validated_data
        )
        return Response(
            scan_answer(answer.record, replayed=answer.replayed), status=status.HTTP_200_OK
        )

    @extend_schema(responses=RefusedSummarySerializer(many=True))
    @action(detail=False, methods=["get"], url_path="refused-summary", pagination_class=None)
    def refused_summary(self, request):
        """Refused scans per reason code (for the QA dashboard); filters as the list."""
        queryset = self.filter_queryset(self.get_queryset()).filter(verdict=ScanVerdict.REFUSED)
        rows = selectors.refused_scan_summary(queryset)
        return Response(RefusedSummarySerializer(rows, many=True).data)
