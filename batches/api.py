"""API for storage classes, products, lots, stock balances and stock moves."""

from __future__ import annotations

import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audit.models import Signature
from audit.selectors import signature_list_for_record
from audit.services import signature_status
from partners.models import Location, Role
from pharmadms.exceptions import InvalidInput, NotPermitted
from pharmadms.identifiers import normalise_gtin
from pharmadms.viewsets import (
    HistoryMixin,
    PartnerScopedMixin,
    ReasonField,
    ServiceWriteViewSet,
    StrictFieldsMixin,
)

from . import services
from .models import Batch, Product, Serial, StockBalance, StockMove, StorageClass

# Twenty years: generous for any medicine, and far from the calendar's end.
MAX_SHELF_LIFE_MONTHS = 240
# Adjustments land in 32-bit integer columns (PostgreSQL integer).
MAX_QUANTITY_CHANGE = 2_147_483_647


class StorageClassSerializer(serializers.ModelSerializer):
    class Meta:
        model = StorageClass
        fields = ["id", "code", "name", "min_celsius", "max_celsius"]


class StorageClassViewSet(HistoryMixin, viewsets.ReadOnlyModelViewSet):
    queryset = StorageClass.objects.all()
    serializer_class = StorageClassSerializer


class ProductSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    reason = ReasonField()
    manufacturer = serializers.PrimaryKeyRelatedField(read_only=True)
    # Declared, not derived from the model: the model's 14-digit validator would refuse a
    # GTIN-8/12/13 before validate_gtin() could pad it to 14 digits.
    gtin = serializers.CharField(max_length=14, help_text="GTIN-8, -12, -13 or -14; stored as 14")
    # Bounded here because the model's PositiveSmallIntegerField is unbounded on SQLite and
    # expiry arithmetic overflows the calendar for absurd values.
    shelf_life_months = serializers.IntegerField(min_value=1, max_value=MAX_SHELF_LIFE_MONTHS)

    class Meta:
        model = Product
        fields = [
            "id",
            "gtin",
            "name",
            "manufacturer",
            "category",
            "dosage_form",
            "strength",
            "pack_size",
            "storage_class",
            "controlled_schedule",
            "shelf_life_months",
            "is_active",
            "reason",
        ]

    def validate_gtin(self, value: str) -> str:
        from django.core.exceptions import ValidationError

        try:
            gtin = normalise_gtin(value)
        except ValidationError as error:
            raise serializers.ValidationError(error.messages[0], code="invalid_gtin") from error
        others = Product.objects.filter(gtin=gtin)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise serializers.ValidationError(f"GTIN {gtin} is already registered", code="unique")
        return gtin


class ProductViewSet(ServiceWriteViewSet):
    """The product catalogue: every signed-in user reads it; its manufacturer maintains it."""

    serializer_class = ProductSerializer
    filterset_fields = ["gtin", "category", "manufacturer", "storage_class", "is_active"]
    write_roles = {Role.ADMIN, Role.QA_OFFICER}

    def get_queryset(self):
        return Product.objects.select_related("manufacturer", "storage_class")

    def history_visible_to(self, user, instance) -> bool:
        return instance.manufacturer_id == user.partner_id

    def perform_service_create(self, data, reason):
        user = self.request.user
        if user.partner is None:
            raise NotPermitted(
                "a product is registered by a member of its manufacturer",
                code="not_a_manufacturer",
            )
        return services.product_create(manufacturer=user.partner, actor=user, reason=reason, **data)

    def perform_service_update(self, instance, data, reason):
        return services.product_update(
            product=instance, actor=self.request.user, reason=reason, **data
        )


def visible_batches(user) -> QuerySet[Batch]:
    """Lots the user may see: their partner's own make, lots their partner holds or held."""
    queryset = Batch.objects.all()
    if user.sees_everything:
        return queryset
    held = StockBalance.objects.filter(location__site__partner_id=user.partner_id)
    return queryset.filter(
        Q(product__manufacturer_id=user.partner_id) | Q(pk__in=held.values("batch_id"))
    )


class BatchSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    reason = ReasonField()
    is_expired = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = [
            "id",
            "product",
            "lot_number",
            "manufactured_on",
            "expires_on",
            "status",
            "is_expired",
            "reason",
        ]
        read_only_fields = ["status"]
        validators = []  # duplicate lots are refused by the service with code duplicate_lot

    def get_is_expired(self, batch: Batch) -> bool:
        from django.utils import timezone

        return batch.is_expired_on(timezone.localdate())


class SignaturePasswordField(serializers.CharField):
    """The signer's password, re-entered for this one signature (missing: ``password_required``)."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("write_only", True)
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("max_length", 4096)
        kwargs.setdefault("style", {"input_type": "password"})
        kwargs.setdefault(
            "help_text", "your password, re-entered now: a session or a token alone never signs"
        )
        super().__init__(**kwargs)

    def fail(self, key: str, **kwargs: Any):
        if key in {"required", "blank", "null"}:
            raise serializers.ValidationError(
                "re-enter your password to sign: a session or a token alone never signs",
                code="password_required",
            )
        return super().fail(key, **kwargs)


class BatchDecisionSerializer(StrictFieldsMixin, serializers.Serializer):
    """A signed QA decision: the signer's password and the reason; nothing else is taken."""

    # Who signs is the authenticated user and when is the server's clock (21 CFR 11.50): a
    # client's claim of either is ignored, never stored.
    transport_fields = StrictFieldsMixin.transport_fields | {"signed_at", "user"}

    password = SignaturePasswordField()
    reason = ReasonField(help_text="what this signature confirms (kept with the signature)")


class SignatureSerializer(serializers.ModelSerializer):
    """The signature's manifestation (21 CFR 11.50): printed name, UTC time, meaning, reason."""

    signer = serializers.CharField(source="user.username", read_only=True)
    signed_at = serializers.DateTimeField(default_timezone=datetime.UTC, read_only=True)
    meaning_display = serializers.CharField(source="get_meaning_display", read_only=True)
    status = serializers.SerializerMethodField(
        help_text="valid, or changed after signature when the record changed since"
    )

    class Meta:
        model = Signature
        fields = [
            "id",
            "printed_name",
            "signer",
            "signed_at",
            "meaning",
            "meaning_display",
            "reason",
            "object_model",
            "object_id",
            "record_version",
            "content_hash",
            "status",
        ]

    def get_status(self, signature: Signature) -> str:
        status = getattr(signature, "status", None)
        return status if isinstance(status, str) else signature_status(signature)


class BatchDecisionResponseSerializer(serializers.Serializer):
    """Schema of a signed decision's answer: the lot's fields and its new signature."""

    id = serializers.IntegerField()
    product = serializers.IntegerField()
    lot_number = serializers.CharField()
    manufactured_on = serializers.DateField()
    expires_on = serializers.DateField()
    status = serializers.CharField()
    is_expired = serializers.BooleanField()
    signature = SignatureSerializer()


class BatchViewSet(ServiceWriteViewSet):
    """Lots: visible to their manufacturer, to partners holding them, and to regulators."""

    serializer_class = BatchSerializer
    filterset_fields = {
        "product": ["exact"],
        "lot_number": ["exact"],
        "status": ["exact"],
        "expires_on": ["lt", "lte", "gt", "gte"],
    }
    write_roles = {Role.ADMIN, Role.QA_OFFICER}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to scope by
            return Batch.objects.none()
        return visible_batches(self.request.user).select_related("product")

    def perform_service_create(self, data, reason):
        return services.batch_create(actor=self.request.user, reason=reason, **data)

    def perform_service_update(self, instance, data, reason):
        if set(data) - {"manufactured_on", "expires_on"}:
            raise InvalidInput("only a lot's dates can be corrected", code="field_not_editable")
        return services.batch_update_dates(
            batch=instance, actor=self.request.user, reason=reason, **data
        )

    def _decide(self, request, decide) -> Response:
        batch = self.get_object()
        serializer = BatchDecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        decision = decide(
            batch=batch,
            signer=request.user,
            password=serializer.validated_data["password"],
            reason=serializer.validated_data["reason"],
            request=request,
        )
        body = {
            **BatchSerializer(decision.batch, context=self.get_serializer_context()).data,
            "signature": SignatureSerializer(decision.signature).data,
        }
        return Response(body)

    @extend_schema(request=BatchDecisionSerializer, responses=BatchDecisionResponseSerializer)
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        """Release a quarantined lot (its manufacturer's QA officer, password re-entered)."""
        return self._decide(request, services.batch_release)

    @extend_schema(request=BatchDecisionSerializer, responses=BatchDecisionResponseSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        """Reject a quarantined lot (its manufacturer's QA officer, password re-entered)."""
        return self._decide(request, services.batch_reject)

    @extend_schema(responses=SignatureSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def signatures(self, request, pk=None):
        """The lot's electronic signatures, each valid or changed after signature."""
        batch = self.get_object()
        signatures = signature_list_for_record(record=batch)
        return Response(SignatureSerializer(signatures, many=True).data)


class StockBalanceSerializer(serializers.ModelSerializer):
    available = serializers.IntegerField(read_only=True)
    product = serializers.IntegerField(source="batch.product_id", read_only=True)

    class Meta:
        model = StockBalance
        fields = [
            "id",
            "batch",
            "product",
            "location",
            "on_hand",
            "allocated",
            "available",
            "updated_at",
        ]


class StockBalanceViewSet(PartnerScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Stock on hand per lot and location, of the user's own partner."""

    serializer_class = StockBalanceSerializer
    filterset_fields = ["batch", "location", "batch__product"]
    partner_path = "location__site__partner_id"

    def base_queryset(self):
        return StockBalance.objects.select_related("batch").filter(on_hand__gt=0)


class StockMoveSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = StockMove
        fields = [
            "id",
            "batch",
            "quantity",
            "from_location",
            "to_location",
            "kind",
            "reference",
            "reason",
            "user",
            "created_at",
        ]


class QuantityChangeField(serializers.IntegerField):
    """A signed whole number of units; every refusal answers ``invalid_quantity``, the code the
    ledger service gives a zero change, so a client handles one code for one mistake."""

    def run_validation(self, data=serializers.empty):
        try:
            return super().run_validation(data)
        except serializers.ValidationError as error:
            messages = error.detail if isinstance(error.detail, list) else [error.detail]
            raise serializers.ValidationError(
                [str(message) for message in messages], code="invalid_quantity"
            ) from error


class StockAdjustmentSerializer(StrictFieldsMixin, serializers.Serializer):
    batch = serializers.IntegerField(min_value=1)
    location = serializers.IntegerField(min_value=1)
    quantity_change = QuantityChangeField(
        min_value=-MAX_QUANTITY_CHANGE,
        max_value=MAX_QUANTITY_CHANGE,
        help_text="units to add (>0) or remove (<0); never zero",
    )
    reason = ReasonField()
    reference = serializers.CharField(max_length=100, required=False, default="")


class StockMoveViewSet(
    PartnerScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The append-only ledger of the user's own partner; a QA adjustment posts a new move."""

    serializer_class = StockMoveSerializer
    write_roles = {Role.QA_OFFICER}  # the only write here is a QA adjustment
    filterset_fields = {
        "batch": ["exact"],
        "kind": ["exact"],
        "reference": ["exact"],
        "created_at": ["gte", "lt"],
    }

    partner_path = ("from_location__site__partner_id", "to_location__site__partner_id")

    def base_queryset(self):
        return StockMove.objects.select_related("user")

    @extend_schema(request=StockAdjustmentSerializer, responses={201: StockMoveSerializer})
    @action(detail=False, methods=["post"])
    def adjust(self, request):
        """Correct a counted quantity (QA officers): posts an adjustment move with its reason."""
        serializer = StockAdjustmentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = request.user
        locations = Location.objects.select_related("site__partner")
        if not user.is_superuser:
            locations = locations.filter(site__partner_id=user.partner_id)
        location = get_object_or_404(locations, pk=data["location"])
        # A lot the partner cannot see is "not found", like any other invisible object.
        batch = get_object_or_404(visible_batches(user).select_related("product"), pk=data["batch"])
        move = services.stock_adjust(
            batch=batch,
            location=location,
            quantity_change=data["quantity_change"],
            actor=user,
            reason=data["reason"],
            reference=data["reference"],
        )
        return Response(StockMoveSerializer(move).data, status=status.HTTP_201_CREATED)


class SerialSerializer(serializers.ModelSerializer):
    lot_number = serializers.CharField(source="batch.lot_number", read_only=True)
    gtin = serializers.CharField(source="batch.product.gtin", read_only=True)

    class Meta:
        model = Serial
        fields = [
            "id",
            "batch",
            "lot_number",
            "gtin",
            "serial_number",
            "state",
            "holder",
            "shipment_reference",
            "decommission_reason",
            "created_at",
        ]
        read_only_fields = fields


class SerialDecommissionSerializer(StrictFieldsMixin, serializers.Serializer):
    cause = serializers.ChoiceField(choices=services.DECOMMISSION_CAUSES)
    reason = ReasonField()


class SerialViewSet(
    PartnerScopedMixin,
    HistoryMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Serialised packs the user's partner holds or made (regulators: all), with their history;
    the holder's QA decommissions one."""

    serializer_class = SerialSerializer
    write_roles = set(services.SERIAL_DECOMMISSION_ROLES)
    filterset_fields = ["batch", "serial_number", "state", "shipment_reference", "holder"]

    partner_path = ("holder_id", "batch__product__manufacturer_id")

    def base_queryset(self):
        return Serial.objects.select_related("batch__product")

    @extend_schema(request=SerialDecommissionSerializer, responses=SerialSerializer)
    @action(detail=True, methods=["post"])
    def decommission(self, request, pk=None):
        """Take the pack out of trade for good (lost, stolen, destroyed, …): its holder's QA."""
        serial = self.get_object()
        serializer = SerialDecommissionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        serial = services.serial_decommission(
            serial=serial, actor=request.user, **serializer.validated_data
        )
        return Response(SerialSerializer(serial).data)
