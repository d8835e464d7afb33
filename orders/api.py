"""API for agreements (with their prices and targets) and orders (with their lifecycle actions)."""

from __future__ import annotations

import re
from typing import Any

import django_filters
from django.db.models import Q
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import renderers, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from audit.history import check_editable
from batches.api import SignaturePasswordField, SignatureSerializer
from batches.models import Batch, Product
from partners.models import Location, Partner, PartnerKind, Role, Site
from pharmadms.exceptions import InvalidInput, NotPermitted, RuleViolation
from pharmadms.viewsets import ReasonField, ServiceWriteViewSet, StrictFieldsMixin

from . import services
from .documents import transaction_information_pdf
from .epcis import shipment_epcis_document
from .models import (
    Agreement,
    AgreementPrice,
    Order,
    OrderLine,
    ReturnDisposition,
    ReturnLine,
    ReturnReason,
    ReturnRequest,
    SalesTarget,
    Shipment,
    ShipmentLine,
    ShipmentPackage,
    ShipmentPackageLine,
    ShipmentStatus,
)
from .selectors import (
    agreements_visible_to,
    is_shipment_party,
    orders_visible_to,
    shipment_party_scope,
    shipment_transaction_information,
    shipments_for_delivery,
    shipments_visible_to,
)


class CodedIntegerField(serializers.IntegerField):
    """A whole number whose every refusal answers one code (the service's code for the same
    mistake), so a client handles one code whichever layer refused."""

    def __init__(self, *, error_code: str, **kwargs: Any):
        self.error_code = error_code
        super().__init__(**kwargs)

    def run_validation(self, data=serializers.empty):
        if data is serializers.empty:
            return super().run_validation(data)  # missing: "required", like any other field
        try:
            return super().run_validation(data)
        except serializers.ValidationError as error:
            messages = error.detail if isinstance(error.detail, list) else [error.detail]
            raise serializers.ValidationError(
                [str(message) for message in messages], code=self.error_code
            ) from error


# --- agreements ----------------------------------------------------------------------------


class AgreementPriceSerializer(serializers.ModelSerializer):
    class Meta:
        model = AgreementPrice
        fields = ["id", "product", "unit_price", "currency"]


class SalesTargetSerializer(serializers.ModelSerializer):
    class Meta:
        model = SalesTarget
        fields = [
            "id",
            "period_start",
            "period_end",
            "product",
            "target_quantity",
            "target_value",
        ]


@extend_schema_field({"type": "array", "items": {"type": "string"}})
class TerritoryField(serializers.ListField):
    """Region codes: a code covers the region equal to it and its subdivisions."""


class AgreementSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    reason = ReasonField()
    supplier = serializers.PrimaryKeyRelatedField(read_only=True)
    customer = serializers.PrimaryKeyRelatedField(queryset=Partner.objects.all())
    territory = TerritoryField(
        child=serializers.CharField(max_length=20), allow_empty=False, max_length=200
    )
    min_remaining_shelf_life_days = serializers.IntegerField(
        min_value=0, max_value=3650, required=False
    )
    prices = AgreementPriceSerializer(many=True, read_only=True)
    targets = SalesTargetSerializer(many=True, read_only=True)

    class Meta:
        model = Agreement
        fields = [
            "id",
            "supplier",
            "customer",
            "territory",
            "min_remaining_shelf_life_days",
            "valid_from",
            "valid_until",
            "status",
            "prices",
            "targets",
            "reason",
        ]
        # One serializer for create and PATCH (a second one would split the status enum in the
        # schema): a new agreement starts active and its parties never change, both refused
        # in the viewset with field_not_editable.


class AgreementPriceWriteSerializer(StrictFieldsMixin, serializers.Serializer):
    product = serializers.PrimaryKeyRelatedField(queryset=Product.objects.all())
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=4)
    currency = serializers.CharField(max_length=8, help_text="ISO 4217, e.g. EUR")

    def validate_currency(self, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise serializers.ValidationError(
                "an ISO 4217 currency code: three capital letters", code="invalid_currency"
            )
        return value

    reason = ReasonField()


class SalesTargetWriteSerializer(StrictFieldsMixin, serializers.Serializer):
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    product = serializers.PrimaryKeyRelatedField(
        queryset=Product.objects.all(), required=False, allow_null=True, default=None
    )
    target_quantity = serializers.IntegerField(
        min_value=1, max_value=2_000_000_000, required=False, allow_null=True, default=None
    )
    target_value = serializers.DecimalField(
        max_digits=14, decimal_places=2, required=False, allow_null=True, default=None
    )
    reason = ReasonField()


class AgreementFilter(django_filters.FilterSet):
    class Meta:
        model = Agreement
        fields = ["supplier", "customer", "status"]


class AgreementViewSet(ServiceWriteViewSet):
    """Agreements of the user's partner, as supplier or customer (regulators read all)."""

    filterset_class = AgreementFilter
    write_roles = {Role.ADMIN, Role.ORDER_DESK}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to scope by
            return Agreement.objects.none()
        return agreements_visible_to(self.request.user)

    def get_serializer_class(self):
        if self.action == "prices":
            return AgreementPriceWriteSerializer
        if self.action == "targets":
            return SalesTargetWriteSerializer
        return AgreementSerializer

    def perform_service_create(self, data, reason):
        user = self.request.user
        if user.partner is None:
            raise NotPermitted("an agreement is made by a member of its supplier")
        check_editable(data, set(data) - {"status"})  # a new agreement starts active
        return services.agreement_create(supplier=user.partner, actor=user, reason=reason, **data)

    def perform_service_update(self, instance, data, reason):
        check_editable(data, set(data) - {"customer"})  # the parties never change
        return services.agreement_update(
            agreement=instance, actor=self.request.user, reason=reason, **data
        )

    def _written(self, request, service) -> Response:
        agreement = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        service(agreement=agreement, actor=request.user, **serializer.validated_data)
        agreement = self.get_queryset().get(pk=agreement.pk)
        return Response(AgreementSerializer(agreement).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AgreementPriceWriteSerializer, responses={201: AgreementSerializer})
    @action(detail=True, methods=["post"])
    def prices(self, request, pk=None):
        """Set (or change) the unit price of one product (the supplier's admin or order desk)."""
        return self._written(request, services.agreement_set_price)

    @extend_schema(request=SalesTargetWriteSerializer, responses={201: AgreementSerializer})
    @action(detail=True, methods=["post"])
    def targets(self, request, pk=None):
        """Set the sales target of a period, for one product or the whole agreement."""
        return self._written(request, services.sales_target_set)


# --- orders --------------------------------------------------------------------------------


class BuyerSiteField(serializers.PrimaryKeyRelatedField):
    """A site of the user's own partner: an order ships to one of the buyer's sites."""

    def get_queryset(self):
        user = self.context["request"].user
        queryset = Site.objects.all()
        return queryset if user.is_superuser else queryset.filter(partner_id=user.partner_id)


class OrderLineSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    product = serializers.PrimaryKeyRelatedField(queryset=Product.objects.all())
    quantity = CodedIntegerField(
        error_code="invalid_quantity", min_value=1, max_value=services.MAX_LINE_QUANTITY
    )

    class Meta:
        model = OrderLine
        fields = [
            "id",
            "product",
            "quantity",
            "unit_price",
            "currency",
            "quantity_allocated",
            "quantity_backordered",
            "quantity_shipped",
        ]
        read_only_fields = [
            "unit_price",
            "currency",
            "quantity_allocated",
            "quantity_backordered",
            "quantity_shipped",
        ]
        validators = []  # a product twice is refused by the service (duplicate_product)


class OrderSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    reason = ReasonField()
    buyer = serializers.PrimaryKeyRelatedField(read_only=True)
    seller = serializers.PrimaryKeyRelatedField(queryset=Partner.objects.all())
    ship_to = BuyerSiteField()
    lines = OrderLineSerializer(many=True, allow_empty=True, max_length=services.MAX_LINES)
    has_backorders = serializers.BooleanField(read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "number",
            "buyer",
            "seller",
            "ship_to",
            "status",
            "agreement",
            "customer_reference",
            "created_at",
            "submitted_at",
            "has_backorders",
            "lines",
            "reason",
        ]
        read_only_fields = ["number", "status", "agreement", "created_at", "submitted_at"]


class OrderActionSerializer(StrictFieldsMixin, serializers.Serializer):
    """A lifecycle step: only the reason is taken."""

    reason = ReasonField()


class OrderFilter(django_filters.FilterSet):
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = ["status", "buyer", "seller", "number"]


class OrderViewSet(ServiceWriteViewSet):
    """Orders of the user's partner as buyer, or as seller once submitted (regulators: all)."""

    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    http_method_names = ["get", "post", "head", "options"]  # lines change only by lifecycle

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to scope by
            return Order.objects.none()
        return orders_visible_to(self.request.user)

    def get_serializer_class(self):
        if self.action in {"submit", "confirm", "allocate", "cancel", "cancel_backorder"}:
            return OrderActionSerializer
        return OrderSerializer

    def perform_service_create(self, data, reason):
        user = self.request.user
        if user.partner is None:
            raise NotPermitted("an order is placed by a member of its buyer")
        return services.order_create(buyer=user.partner, actor=user, reason=reason, **data)

    def _step(self, request, service) -> Response:
        order = self.get_object()
        serializer = OrderActionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        service(order=order, actor=request.user, reason=serializer.validated_data["reason"])
        order = self.get_queryset().get(pk=order.pk)
        return Response(OrderSerializer(order, context=self.get_serializer_context()).data)

    @extend_schema(request=OrderActionSerializer, responses=OrderSerializer)
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        """The buyer sends a draft; licence, agreement, territory and prices are checked."""
        return self._step(request, services.order_submit)

    @extend_schema(request=OrderActionSerializer, responses=OrderSerializer)
    @action(detail=True, methods=["post"])
    def confirm(self, request, pk=None):
        """The seller's order desk or admin accepts a submitted order."""
        return self._step(request, services.order_confirm)

    @extend_schema(request=OrderActionSerializer, responses=OrderSerializer)
    @action(detail=True, methods=["post"])
    def allocate(self, request, pk=None):
        """The seller reserves stock FEFO; what is not there stays as a backorder."""
        return self._step(request, services.order_allocate)

    @extend_schema(request=OrderActionSerializer, responses=OrderSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """The buyer before confirmation, the seller before shipping; allocations are released."""
        return self._step(request, services.order_cancel)

    @extend_schema(request=OrderActionSerializer, responses=OrderSerializer)
    @action(detail=True, methods=["post"], url_path="cancel-backorder", url_name="cancel-backorder")
    def cancel_backorder(self, request, pk=None):
        """The seller gives up what a partly shipped order still waits for: backorders and
        allocations on no shipment are released; the order is shipped (or delivered) as its
        shipments dictate."""
        return self._step(request, services.order_cancel_backorder)


# --- shipments -----------------------------------------------------------------------------


class VisibleOrderField(serializers.PrimaryKeyRelatedField):
    """An order the user can see (another partner's order does not exist for them)."""

    def get_queryset(self):
        return orders_visible_to(self.context["request"].user)


class ShipmentLineSerializer(serializers.ModelSerializer):
    gtin = serializers.CharField(source="batch.product.gtin", read_only=True)
    lot = serializers.CharField(source="batch.lot_number", read_only=True)
    expires_on = serializers.DateField(source="batch.expires_on", read_only=True)

    class Meta:
        model = ShipmentLine
        fields = [
            "id",
            "order_line",
            "batch",
            "gtin",
            "lot",
            "expires_on",
            "quantity",
            "picked_quantity",
            "serials",
            "from_location",
            "allocation",
            "received_quantity",
            "damaged_quantity",
            "discrepancy",
        ]
        read_only_fields = fields


class ShipmentPackageLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = ShipmentPackageLine
        fields = ["shipment_line", "quantity"]
        read_only_fields = fields


class ShipmentPackageSerializer(serializers.ModelSerializer):
    lines = ShipmentPackageLineSerializer(many=True, read_only=True)

    class Meta:
        model = ShipmentPackage
        fields = [
            "id",
            "sscc",
            "shipment",
            "status",
            "created_by",
            "created_at",
            "unpacked_at",
            "lines",
        ]
        read_only_fields = fields


class CarrierField(serializers.PrimaryKeyRelatedField):
    """An active logistics provider: its users may confirm the delivery."""

    def get_queryset(self):
        return Partner.objects.filter(kind=PartnerKind.LOGISTICS, is_active=True)


class DeliverySiteSerializer(serializers.ModelSerializer):
    """A site as its carrier needs it: where to collect, where to deliver."""

    class Meta:
        model = Site
        fields = ["id", "name", "gln", "address_line", "postal_code", "city", "country"]
        read_only_fields = fields


class CarrierShipmentSerializer(serializers.ModelSerializer):
    """A shipment as the logistics provider carrying it reads it: the delivery fields only —
    no order, lines, lots, packages or receipt."""

    from_site = DeliverySiteSerializer(read_only=True)
    to_site = DeliverySiteSerializer(read_only=True)

    class Meta:
        model = Shipment
        fields = [
            "id",
            "number",
            "status",
            "from_site",
            "to_site",
            "carrier",
            "carrier_partner",
            "tracking_number",
            "dispatched_at",
            "delivered_at",
        ]
        read_only_fields = fields


class ShipmentSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """A shipment in full, for its buyer, its seller and regulators. A user of the carrier
    (no party to it) is shown :class:`CarrierShipmentSerializer`'s delivery fields instead."""

    reason = ReasonField()
    order = VisibleOrderField()
    carrier_partner = CarrierField(required=False, allow_null=True, default=None)
    lines = ShipmentLineSerializer(many=True, read_only=True)
    packages = ShipmentPackageSerializer(many=True, read_only=True)

    class Meta:
        model = Shipment
        fields = [
            "id",
            "number",
            "order",
            "from_site",
            "to_site",
            "in_transit_location",
            "carrier",
            "carrier_partner",
            "tracking_number",
            "status",
            "created_at",
            "dispatched_at",
            "delivered_at",
            "received_at",
            "lines",
            "packages",
            "reason",
        ]
        read_only_fields = [
            "number",
            "from_site",
            "to_site",
            "in_transit_location",
            "status",
            "created_at",
            "dispatched_at",
            "delivered_at",
            "received_at",
        ]

    def to_representation(self, instance):
        request = self.context.get("request")
        if request is not None and not is_shipment_party(request.user, instance):
            return CarrierShipmentSerializer(instance, context=self.context).data
        return super().to_representation(instance)


class ShipmentActionSerializer(StrictFieldsMixin, serializers.Serializer):
    """A lifecycle step: only the reason is taken."""

    reason = ReasonField()


class ReceiptLineSerializer(StrictFieldsMixin, serializers.Serializer):
    line = serializers.IntegerField(help_text="the id of a line of this shipment")
    received_quantity = CodedIntegerField(
        error_code="invalid_quantity",
        min_value=0,
        max_value=services.MAX_LINE_QUANTITY,
        help_text="sound units checked in",
    )
    damaged_quantity = CodedIntegerField(
        error_code="invalid_quantity",
        min_value=0,
        max_value=services.MAX_LINE_QUANTITY,
        required=False,
        default=0,
        help_text="units that arrived damaged (they go to quarantine)",
    )


class ReceiptSerializer(StrictFieldsMixin, serializers.Serializer):
    lines = ReceiptLineSerializer(many=True, allow_empty=False, max_length=services.MAX_LINES)
    reason = ReasonField()


class PickSerializer(StrictFieldsMixin, serializers.Serializer):
    lot = serializers.PrimaryKeyRelatedField(
        queryset=Batch.objects.all(), help_text="the id of the lot picked"
    )
    quantity = CodedIntegerField(
        error_code="invalid_quantity", min_value=1, max_value=services.MAX_LINE_QUANTITY
    )
    location = serializers.PrimaryKeyRelatedField(
        queryset=Location.objects.all(), help_text="the id of the location picked from"
    )
    serials = serializers.ListField(
        child=serializers.CharField(max_length=20),
        required=False,
        default=list,
        max_length=services.MAX_LINE_QUANTITY,
        help_text="the units' serial numbers (GS1 AI 21), one per unit, if scanned",
    )
    reason = ReasonField()


class PackLineSerializer(StrictFieldsMixin, serializers.Serializer):
    line = serializers.IntegerField(help_text="the id of a line of this shipment")
    quantity = CodedIntegerField(
        error_code="invalid_quantity", min_value=1, max_value=services.MAX_LINE_QUANTITY
    )


class PackSerializer(StrictFieldsMixin, serializers.Serializer):
    contents = PackLineSerializer(many=True, allow_empty=False, max_length=services.MAX_LINES)
    reason = ReasonField()


class UnpackSerializer(StrictFieldsMixin, serializers.Serializer):
    """The package to unpack, by its SSCC or its id (one of them)."""

    sscc = serializers.RegexField(
        r"^[0-9]{18}$", required=False, help_text="the package's SSCC (18 digits)"
    )
    package = serializers.IntegerField(
        required=False, min_value=1, help_text="the package's id (instead of its SSCC)"
    )
    reason = ReasonField()


class PDFRenderer(renderers.BaseRenderer):
    """Chooses PDF (``?format=pdf`` or ``Accept: application/pdf``); the view renders the
    document itself. A refusal is still answered as JSON."""

    media_type = "application/pdf"
    format = "pdf"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"
        return renderers.JSONRenderer().render(data)


class ShipmentFilter(django_filters.FilterSet):
    # A carrier never learns which order a shipment it carries belongs to: the order filter
    # looks only among the shipments the user reads in full.
    order = django_filters.NumberFilter(method="filter_order")

    class Meta:
        model = Shipment
        fields = ["status", "order", "number"]

    def filter_order(self, queryset, name, value):
        return queryset.filter(shipment_party_scope(self.request.user), order_id=value)


class ShipmentViewSet(ServiceWriteViewSet):
    """Shipments of orders where the user's partner is buyer or seller (regulators: all).

    The logistics provider carrying a shipment (its ``carrier_partner``) lists it, reads its
    delivery fields and confirms its delivery; every other read and action of the shipment
    does not exist for it (404).
    """

    serializer_class = ShipmentSerializer
    filterset_class = ShipmentFilter
    http_method_names = ["get", "post", "head", "options"]  # changes only by lifecycle
    # What the carrier reaches: the delivery fields (list, detail) and the delivery action.
    carrier_actions = frozenset({"list", "retrieve", "deliver"})

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to scope by
            return Shipment.objects.none()
        user = self.request.user
        if self.action in self.carrier_actions:
            scoped = shipments_for_delivery(user)
        else:
            scoped = shipments_visible_to(user)
        return scoped.prefetch_related("lines__batch__product")

    def get_serializer_class(self):
        if self.action == "dispatch_shipment":
            return ShipmentActionSerializer
        if self.action == "receive":
            return ReceiptSerializer
        if self.action == "pick":
            return PickSerializer
        if self.action == "pack":
            return PackSerializer
        if self.action == "deliver":
            return ShipmentActionSerializer
        if self.action == "unpack":
            return UnpackSerializer
        return ShipmentSerializer

    def perform_service_create(self, data, reason):
        return services.shipment_create_from_order(actor=self.request.user, reason=reason, **data)

    def _render(self, shipment: Shipment) -> Response:
        shipment = self.get_queryset().get(pk=shipment.pk)
        return Response(ShipmentSerializer(shipment, context=self.get_serializer_context()).data)

    @extend_schema(request=ShipmentActionSerializer, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"], url_path="dispatch", url_name="dispatch")
    def dispatch_shipment(self, request, pk=None):
        """The seller's warehouse sends the goods: storage → in transit; the order is shipped."""
        shipment = self.get_object()
        serializer = ShipmentActionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.shipment_dispatch(
            shipment=shipment, actor=request.user, reason=serializer.validated_data["reason"]
        )
        return self._render(shipment)

    @extend_schema(request=PickSerializer, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"])
    def pick(self, request, pk=None):
        """The seller's warehouse confirms units of a lot picked from a location (no stock
        moves yet); when every line is picked the shipment is ``picked``."""
        shipment = self.get_object()
        serializer = PickSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        services.shipment_pick(
            shipment=shipment,
            batch=data["lot"],
            quantity=data["quantity"],
            location=data["location"],
            serials=data["serials"],
            actor=request.user,
            reason=data["reason"],
        )
        return self._render(shipment)

    @extend_schema(request=PackSerializer, responses={201: ShipmentPackageSerializer})
    @action(detail=True, methods=["post"])
    def pack(self, request, pk=None):
        """The seller's warehouse packs units of the lines into a package labelled with a new
        SSCC built from the seller's GS1 company prefix."""
        shipment = self.get_object()
        serializer = PackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        package = services.shipment_pack(
            shipment=shipment,
            contents=[
                (entry["line"], entry["quantity"])
                for entry in serializer.validated_data["contents"]
            ],
            actor=request.user,
            reason=serializer.validated_data["reason"],
        )
        package = ShipmentPackage.objects.prefetch_related("lines").get(pk=package.pk)
        return Response(ShipmentPackageSerializer(package).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=UnpackSerializer, responses=ShipmentPackageSerializer)
    @action(detail=True, methods=["post"])
    def unpack(self, request, pk=None):
        """The seller's warehouse empties a package before dispatch (by SSCC or id): it is
        marked unpacked, never deleted, and its units may be packed again."""
        shipment = self.get_object()
        serializer = UnpackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if ("sscc" in data) == ("package" in data):
            raise InvalidInput(
                "name the package by its sscc or by its id (package), one of them",
                code="package_required",
            )
        package = services.shipment_unpack(
            shipment=shipment,
            package=data["sscc"] if "sscc" in data else data["package"],
            actor=request.user,
            reason=data["reason"],
        )
        package = ShipmentPackage.objects.prefetch_related("lines").get(pk=package.pk)
        return Response(ShipmentPackageSerializer(package).data)

    @extend_schema(request=ShipmentActionSerializer, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"])
    def deliver(self, request, pk=None):
        """The carrier's delivery confirmation (by the seller or the logistics provider
        carrying it): dispatched → delivered, before the buyer's receipt."""
        shipment = self.get_object()
        serializer = ShipmentActionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.shipment_deliver(
            shipment=shipment, actor=request.user, reason=serializer.validated_data["reason"]
        )
        return self._render(shipment)

    @extend_schema(request=ReceiptSerializer, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"])
    def receive(self, request, pk=None):
        """The buyer checks the goods in: sound units to storage, damaged to quarantine,
        missing units written off the in-transit location; the order is delivered."""
        shipment = self.get_object()
        serializer = ReceiptSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.shipment_receive(
            shipment=shipment,
            lines=serializer.validated_data["lines"],
            actor=request.user,
            reason=serializer.validated_data["reason"],
        )
        return self._render(shipment)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "format", OpenApiTypes.STR, enum=["json", "pdf"], description="json or pdf"
            )
        ],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "application/pdf"): OpenApiTypes.BINARY,
        },
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="transaction-information",
        url_name="transaction-information",
        renderer_classes=[renderers.JSONRenderer, PDFRenderer],
    )
    def transaction_information(self, request, pk=None):
        """DSCSA transaction information, history and statement of a dispatched shipment."""
        shipment = self.get_object()
        if shipment.dispatched_at is None:
            raise RuleViolation(
                f"shipment {shipment.number} has not been dispatched: no transaction yet",
                code="not_dispatched",
            )
        information = shipment_transaction_information(shipment)
        if request.accepted_renderer.format == "pdf":
            response = HttpResponse(
                transaction_information_pdf(information), content_type="application/pdf"
            )
            response["Content-Disposition"] = (
                f'inline; filename="transaction-information-{shipment.number}.pdf"'
            )
            return response
        return Response(information)

    @extend_schema(responses={(200, "application/json"): OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def epcis(self, request, pk=None):
        """The shipment as an EPCIS 2.0 JSON-LD document (shipping and receiving events)."""
        shipment = self.get_object()
        if shipment.status == ShipmentStatus.PLANNED or shipment.dispatched_at is None:
            raise RuleViolation(
                f"shipment {shipment.number} has not been dispatched: no event yet",
                code="not_dispatched",
            )
        return Response(shipment_epcis_document(shipment))


# --- returns -------------------------------------------------------------------------------


class CodedChoiceField(serializers.ChoiceField):
    """A choice whose every refusal answers one code (the service's code for the same mistake)."""

    def __init__(self, *, error_code: str, **kwargs: Any):
        self.error_code = error_code
        super().__init__(**kwargs)

    def fail(self, key: str, **kwargs: Any):
        if key in {"required", "null", "blank"}:
            return super().fail(key, **kwargs)
        try:
            return super().fail(key, **kwargs)
        except serializers.ValidationError as error:
            raise serializers.ValidationError(
                [str(message) for message in error.detail], code=self.error_code
            ) from error


class ReturnLineSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    shipment_line = serializers.IntegerField(
        source="shipment_line_id", help_text="a line of the shipment being returned against"
    )
    quantity = CodedIntegerField(
        error_code="invalid_quantity", min_value=1, max_value=services.MAX_LINE_QUANTITY
    )
    reason_code = CodedChoiceField(choices=ReturnReason.choices, error_code="invalid_reason_code")
    from_location = serializers.IntegerField(
        source="from_location_id",
        required=False,
        help_text="the customer's location the units leave from (default: the ship-to site's "
        "storage)",
    )
    gtin = serializers.CharField(source="batch.product.gtin", read_only=True)
    lot = serializers.CharField(source="batch.lot_number", read_only=True)
    expires_on = serializers.DateField(source="batch.expires_on", read_only=True)

    class Meta:
        model = ReturnLine
        fields = [
            "id",
            "shipment_line",
            "batch",
            "gtin",
            "lot",
            "expires_on",
            "quantity",
            "reason_code",
            "from_location",
            "disposition",
        ]
        read_only_fields = ["batch", "disposition"]
        validators = []  # a line twice is refused by the service (duplicate_line)


class ReturnRequestSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    reason = ReasonField()
    shipment = serializers.IntegerField(
        source="shipment_id", help_text="a shipment received by the user's partner"
    )
    temperature_evidence = serializers.CharField(
        max_length=500,
        required=False,
        allow_blank=True,
        default="",
        help_text="required for cold-chain goods: the reference of their temperature record",
    )
    lines = ReturnLineSerializer(many=True, allow_empty=True, max_length=services.MAX_LINES)

    class Meta:
        model = ReturnRequest
        fields = [
            "id",
            "number",
            "customer",
            "seller",
            "shipment",
            "status",
            "rma_number",
            "temperature_evidence",
            "returns_location",
            "created_at",
            "authorised_at",
            "received_at",
            "disposed_at",
            "lines",
            "reason",
        ]
        read_only_fields = [
            "number",
            "customer",
            "seller",
            "status",
            "rma_number",
            "returns_location",
            "created_at",
            "authorised_at",
            "received_at",
            "disposed_at",
        ]


class ReturnActionSerializer(StrictFieldsMixin, serializers.Serializer):
    """A lifecycle step: only the reason is taken."""

    reason = ReasonField()


class ReturnAuthoriseSerializer(StrictFieldsMixin, serializers.Serializer):
    rma_number = serializers.CharField(
        max_length=40,
        required=False,
        allow_blank=True,
        default="",
        help_text="the seller's RMA number (default: RMA-<year>-<number of the return>)",
    )
    reason = ReasonField()


class DispositionLineSerializer(StrictFieldsMixin, serializers.Serializer):
    line = serializers.IntegerField(help_text="the id of a line of this return")
    disposition = CodedChoiceField(
        choices=ReturnDisposition.choices, error_code="invalid_disposition"
    )


class ReturnDispositionSerializer(StrictFieldsMixin, serializers.Serializer):
    """QA's signed disposition: one for every line, or ``disposition`` for all of them."""

    transport_fields = StrictFieldsMixin.transport_fields | {"signed_at", "user"}

    disposition = CodedChoiceField(
        choices=ReturnDisposition.choices,
        error_code="invalid_disposition",
        required=False,
        help_text="the disposition of every line (or give lines)",
    )
    lines = DispositionLineSerializer(
        many=True, required=False, allow_empty=False, max_length=services.MAX_LINES
    )
    password = SignaturePasswordField()
    reason = ReasonField(help_text="what this signature confirms (kept with the signature)")


class ReturnDecisionResponseSerializer(ReturnRequestSerializer):
    """Schema of a signed disposition's answer: the return and its new signature."""

    # A plain string here, so the status enum belongs to ReturnRequest alone in the schema.
    status = serializers.CharField(read_only=True, help_text="disposed")
    signature = SignatureSerializer(read_only=True)

    class Meta(ReturnRequestSerializer.Meta):
        fields = [*ReturnRequestSerializer.Meta.fields, "signature"]


class ReturnFilter(django_filters.FilterSet):
    class Meta:
        model = ReturnRequest
        fields = ["status", "shipment", "customer", "seller", "number", "rma_number"]


def returns_visible_to(user):
    """Returns where the user's partner is the customer or the seller; regulators read all."""
    queryset = ReturnRequest.objects.select_related("customer", "seller", "shipment")
    if user.sees_everything:
        return queryset
    return queryset.filter(Q(customer_id=user.partner_id) | Q(seller_id=user.partner_id))


class ReturnViewSet(ServiceWriteViewSet):
    """Returns of goods the user's partner received (as customer) or shipped (as seller)."""

    serializer_class = ReturnRequestSerializer
    filterset_class = ReturnFilter
    http_method_names = ["get", "post", "head", "options"]  # changes only by lifecycle

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to scope by
            return ReturnRequest.objects.none()
        return returns_visible_to(self.request.user).prefetch_related("lines__batch__product")

    def get_serializer_class(self):
        if self.action in {"reject", "cancel", "receive"}:
            return ReturnActionSerializer
        if self.action == "authorise":
            return ReturnAuthoriseSerializer
        if self.action == "dispose":
            return ReturnDispositionSerializer
        return ReturnRequestSerializer

    def perform_service_create(self, data, reason):
        user = self.request.user
        if user.partner is None and not user.is_superuser:
            raise NotPermitted("a return is asked for by a member of the customer")
        shipment_id = data.pop("shipment_id")
        # Another partner's shipment and no shipment at all answer alike: nothing leaks.
        shipment = Shipment.objects.filter(pk=shipment_id).first() or Shipment(pk=shipment_id)
        lines = [
            {
                "shipment_line": line["shipment_line_id"],
                "quantity": line["quantity"],
                "reason_code": line["reason_code"],
                "from_location": line.get("from_location_id"),
            }
            for line in data.pop("lines")
        ]
        return services.return_request_create(
            shipment=shipment, lines=lines, actor=user, reason=reason, **data
        )

    def _render(self, ret: ReturnRequest, **extra: Any) -> Response:
        ret = self.get_queryset().get(pk=ret.pk)
        body = ReturnRequestSerializer(ret, context=self.get_serializer_context()).data
        return Response({**body, **extra})

    def _step(self, request, service, serializer_class=ReturnActionSerializer) -> Response:
        ret = self.get_object()
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        service(return_request=ret, actor=request.user, **serializer.validated_data)
        return self._render(ret)

    @extend_schema(request=ReturnAuthoriseSerializer, responses=ReturnRequestSerializer)
    @action(detail=True, methods=["post"])
    def authorise(self, request, pk=None):
        """The seller's order desk or admin authorises the return and issues its RMA number."""
        return self._step(request, services.return_authorise, ReturnAuthoriseSerializer)

    @extend_schema(request=ReturnActionSerializer, responses=ReturnRequestSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        """The seller's order desk or admin refuses a requested return."""
        return self._step(request, services.return_reject)

    @extend_schema(request=ReturnActionSerializer, responses=ReturnRequestSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """The customer withdraws its return before the goods are received."""
        return self._step(request, services.return_cancel)

    @extend_schema(request=ReturnActionSerializer, responses=ReturnRequestSerializer)
    @action(detail=True, methods=["post"])
    def receive(self, request, pk=None):
        """The seller's warehouse checks the goods in: customer's location → seller's returns
        (or quarantine) location, never saleable stock."""
        return self._step(request, services.return_receive)

    @extend_schema(request=ReturnDispositionSerializer, responses=ReturnDecisionResponseSerializer)
    @action(detail=True, methods=["post"])
    def dispose(self, request, pk=None):
        """The seller's QA officer restocks or destroys each line, signing with their password."""
        ret = self.get_object()
        serializer = ReturnDispositionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if ("disposition" in data) == ("lines" in data):
            raise InvalidInput(
                "give either disposition (for every line) or lines, one of them",
                code="disposition_required",
            )
        if "lines" in data:
            dispositions: dict[int, str] = {}
            for entry in data["lines"]:
                if entry["line"] in dispositions:
                    raise InvalidInput(f"line {entry['line']} appears twice", code="duplicate_line")
                dispositions[entry["line"]] = entry["disposition"]
        else:
            dispositions = dict.fromkeys(
                ret.lines.values_list("pk", flat=True), data["disposition"]
            )
        decision = services.return_dispose(
            return_request=ret,
            dispositions=dispositions,
            signer=request.user,
            password=data["password"],
            reason=data["reason"],
            request=request,
        )
        return self._render(
            decision.return_request, signature=SignatureSerializer(decision.signature).data
        )
