"""API of the cold chain: loggers (credentials, assignment to shipments), excursions (QA's
acknowledgement and signed disposition), and the temperature record of shipments, orders and
lots (readings, MKT summary, chart, EPCIS sensor document).

The readings and temperature views hang under ``/api/v1/shipments/<id>/``, ``/orders/<id>/``
and ``/batches/<id>/`` by explicit paths in pharmadms/api.py; what a user sees is what the
orders' and lots' own endpoints let them see (another partner's shipment: 404).
"""

from __future__ import annotations

import datetime

import django_filters
from django.db.models import Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, mixins, renderers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from batches.api import SignaturePasswordField, SignatureSerializer, visible_batches
from batches.models import StorageClass
from orders.selectors import orders_visible_to, shipments_visible_to
from partners.models import Role
from pharmadms.exceptions import InvalidInput, NotPermitted, RuleViolation
from pharmadms.permissions import PartnerRolePermission
from pharmadms.viewsets import HistoryMixin, ReasonField, ServiceWriteViewSet, StrictFieldsMixin

from . import chart, selectors, services
from .epcis import shipment_sensor_document
from .ingest import reading_topic
from .models import (
    Excursion,
    ExcursionRule,
    ExcursionStatus,
    Logger,
    LoggerAssignment,
    Reading,
    TemperatureProfile,
)

ACL_PATTERN = f"pattern write {reading_topic('%u')}"  # Mosquitto: %u, the username


# --- loggers -------------------------------------------------------------------------------


class LoggerSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    reason = ReasonField()
    owner = serializers.PrimaryKeyRelatedField(read_only=True)
    has_credentials = serializers.SerializerMethodField()

    class Meta:
        model = Logger
        fields = [
            "id",
            "device_id",
            "device_model",
            "owner",
            "calibration_certificate",
            "calibration_due_on",
            "is_active",
            "has_credentials",
            "created_at",
            "reason",
        ]
        read_only_fields = ["created_at"]
        validators = []  # a device id twice is refused by the service (duplicate)

    def get_has_credentials(self, logger: Logger) -> bool:
        return bool(logger.mqtt_password_hash)


class LoggerActionSerializer(StrictFieldsMixin, serializers.Serializer):
    reason = ReasonField()


class LoggerCredentialsSerializer(serializers.Serializer):
    device_id = serializers.CharField()
    username = serializers.CharField()
    password = serializers.CharField(help_text="shown once: only its hash is kept")
    topic = serializers.CharField()
    acl_pattern = serializers.CharField()
    password_file_line = serializers.CharField(help_text="the line for Mosquitto's password_file")


class AssignmentSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    reason = ReasonField()
    device_id = serializers.CharField(source="logger.device_id", read_only=True)
    shipment = serializers.IntegerField(source="shipment_id", help_text="a shipment of yours")
    starts_at = serializers.DateTimeField(
        required=False, default=None, help_text="default: the shipment's dispatch (or now)"
    )
    ends_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="default: at its receipt"
    )

    class Meta:
        model = LoggerAssignment
        fields = [
            "id",
            "logger",
            "device_id",
            "shipment",
            "starts_at",
            "ends_at",
            "created_at",
            "reason",
        ]
        read_only_fields = ["logger", "created_at"]


class LoggerFilter(django_filters.FilterSet):
    class Meta:
        model = Logger
        fields = ["device_id", "is_active"]


class LoggerViewSet(ServiceWriteViewSet):
    """Loggers of the user's partner (regulators read all). Registered and corrected by its
    admin or QA officer; assigned to the partner's shipments by its warehouse or order desk."""

    filterset_class = LoggerFilter

    @property
    def write_roles(self):
        if self.action == "assign":
            return set(services.ASSIGN_ROLES)
        return set(services.LOGGER_ROLES)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to scope by
            return Logger.objects.none()
        return selectors.loggers_visible_to(self.request.user)

    def get_serializer_class(self):
        if self.action == "credentials":
            return LoggerActionSerializer
        if self.action == "assign":
            return AssignmentSerializer
        return LoggerSerializer

    def perform_service_create(self, data, reason):
        user = self.request.user
        if user.partner is None:
            raise NotPermitted("a logger is registered by a member of its owner")
        return services.logger_register(owner=user.partner, actor=user, reason=reason, **data)

    def perform_service_update(self, instance, data, reason):
        return services.logger_update(
            logger=instance, actor=self.request.user, reason=reason, **data
        )

    @extend_schema(request=LoggerActionSerializer, responses={201: LoggerCredentialsSerializer})
    @action(detail=True, methods=["post"])
    def credentials(self, request, pk=None):
        """Generate the logger's MQTT password (shown once) for the broker's password file."""
        logger = self.get_object()
        serializer = LoggerActionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.logger_credentials_issue(
            logger=logger, actor=request.user, reason=serializer.validated_data["reason"]
        )
        body = {
            "device_id": issued.logger.device_id,
            "username": issued.username,
            "password": issued.password,
            "topic": reading_topic(issued.username),
            "acl_pattern": ACL_PATTERN,
            "password_file_line": services.mosquitto_password_file([issued.logger]).strip(),
        }
        return Response(LoggerCredentialsSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AssignmentSerializer, responses={201: AssignmentSerializer})
    @action(detail=True, methods=["post"])
    def assign(self, request, pk=None):
        """Send the (calibrated) logger with one of the partner's shipments."""
        logger = self.get_object()
        serializer = AssignmentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        shipment = get_object_or_404(shipments_visible_to(request.user), pk=data["shipment_id"])
        assignment = services.logger_assign(
            logger=logger,
            shipment=shipment,
            actor=request.user,
            reason=data["reason"],
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
        )
        return Response(AssignmentSerializer(assignment).data, status=status.HTTP_201_CREATED)


class AssignmentEndSerializer(StrictFieldsMixin, serializers.Serializer):
    ends_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="default: now"
    )
    reason = ReasonField()


class AssignmentFilter(django_filters.FilterSet):
    ongoing = django_filters.BooleanFilter(
        method="filter_ongoing", label="the logger is still with the shipment"
    )

    class Meta:
        model = LoggerAssignment
        fields = ["shipment", "logger"]

    def filter_ongoing(self, queryset, name, value):
        ongoing = Q(ends_at__isnull=True, shipment__received_at__isnull=True)
        return queryset.filter(ongoing) if value else queryset.exclude(ongoing)


class LoggerAssignmentViewSet(
    HistoryMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Loggers travelling with the shipments of the user's partner (as seller or buyer);
    regulators read all. The seller's warehouse, order desk or admin takes a logger off its
    shipment (``end``); assigning is ``POST /loggers/<id>/assign/``."""

    serializer_class = AssignmentSerializer
    filterset_class = AssignmentFilter
    write_roles = set(services.ASSIGN_ROLES)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to scope by
            return LoggerAssignment.objects.none()
        return selectors.assignments_visible_to(self.request.user)

    def get_serializer_class(self):
        return AssignmentEndSerializer if self.action == "end" else AssignmentSerializer

    @extend_schema(request=AssignmentEndSerializer, responses=AssignmentSerializer)
    @action(detail=True, methods=["post"])
    def end(self, request, pk=None):
        """Take the logger off the shipment at ``ends_at`` (default now): later readings are
        no longer the shipment's."""
        assignment = self.get_object()
        serializer = AssignmentEndSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ended = services.logger_assignment_end(
            assignment=assignment,
            actor=request.user,
            reason=serializer.validated_data["reason"],
            ends_at=serializer.validated_data["ends_at"],
        )
        return Response(AssignmentSerializer(ended).data)


# --- temperature profiles and excursion rules ----------------------------------------------


class ExcursionRuleSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    reason = ReasonField()
    profile = serializers.PrimaryKeyRelatedField(queryset=TemperatureProfile.objects.all())
    # Plain strings, as on excursions: "kind" and "direction" name other choice sets elsewhere.
    kind = serializers.CharField(help_text="instant, consecutive, cumulative or data_gap")
    direction = serializers.CharField(required=False, help_text="high, low or both (default both)")

    class Meta:
        model = ExcursionRule
        fields = [
            "id",
            "profile",
            "name",
            "kind",
            "direction",
            "limit_celsius",
            "delay_minutes",
            "budget_minutes",
            "max_interval_minutes",
            "is_active",
            "reason",
        ]
        extra_kwargs = {"name": {"required": False}}
        validators = []  # the model's constraints are checked by the service (codes of their own)

    def validate_kind(self, value: str) -> str:
        from .models import RuleKind

        if value not in RuleKind.values:
            raise serializers.ValidationError(
                f"kind is one of {', '.join(RuleKind.values)}", code="invalid_kind"
            )
        return value

    def validate_direction(self, value: str) -> str:
        from .models import Direction

        if value not in Direction.values:
            raise serializers.ValidationError(
                f"direction is one of {', '.join(Direction.values)}", code="invalid_direction"
            )
        return value


class RuleSummarySerializer(serializers.ModelSerializer):
    kind = serializers.CharField(read_only=True)

    class Meta:
        model = ExcursionRule
        fields = ["id", "name", "kind", "is_active"]
        read_only_fields = fields


class TemperatureProfileSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    reason = ReasonField()
    storage_class = serializers.PrimaryKeyRelatedField(queryset=StorageClass.objects.all())
    owner = serializers.PrimaryKeyRelatedField(
        read_only=True, help_text="the partner whose QA maintains it (empty: the platform)"
    )
    rules = RuleSummarySerializer(many=True, read_only=True)

    class Meta:
        model = TemperatureProfile
        fields = [
            "id",
            "storage_class",
            "owner",
            "name",
            "min_celsius",
            "max_celsius",
            "ignore_first_minutes",
            "mkt_window_hours",
            "mkt_limit_celsius",
            "is_active",
            "rules",
            "reason",
        ]
        extra_kwargs = {
            "name": {"required": False},
            "min_celsius": {"required": False},
            "max_celsius": {"required": False},
        }
        validators = []  # one active profile per class: the service answers duplicate_profile


class TemperatureProfileFilter(django_filters.FilterSet):
    class Meta:
        model = TemperatureProfile
        fields = ["storage_class", "owner", "is_active"]


class TemperatureProfileViewSet(ServiceWriteViewSet):
    """Temperature profiles of the storage classes: reference data every signed-in user reads;
    the QA officers and admins of the owning partner create and correct them (with a reason).
    Their history names the owner's staff: the owner (and regulators) read it."""

    serializer_class = TemperatureProfileSerializer
    filterset_class = TemperatureProfileFilter
    write_roles = {Role.ADMIN, Role.QA_OFFICER}

    def get_queryset(self):
        return TemperatureProfile.objects.select_related("storage_class").prefetch_related("rules")

    def history_visible_to(self, user, instance) -> bool:
        return instance.owner_id is not None and instance.owner_id == user.partner_id

    def perform_service_create(self, data, reason):
        return services.temperature_profile_create(actor=self.request.user, reason=reason, **data)

    def perform_service_update(self, instance, data, reason):
        return services.temperature_profile_update(
            profile=instance, actor=self.request.user, reason=reason, **data
        )


class ExcursionRuleFilter(django_filters.FilterSet):
    class Meta:
        model = ExcursionRule
        fields = ["profile", "kind", "is_active"]


class ExcursionRuleViewSet(ServiceWriteViewSet):
    """The alarm rules of the temperature profiles: read by every signed-in user, created and
    corrected by the QA officers and admins of the profile's owner. A rule's kind and profile
    never change."""

    serializer_class = ExcursionRuleSerializer
    filterset_class = ExcursionRuleFilter
    write_roles = {Role.ADMIN, Role.QA_OFFICER}

    def get_queryset(self):
        return ExcursionRule.objects.select_related("profile")

    def history_visible_to(self, user, instance) -> bool:
        owner_id = instance.profile.owner_id
        return owner_id is not None and owner_id == user.partner_id

    def perform_service_create(self, data, reason):
        return services.excursion_rule_create(actor=self.request.user, reason=reason, **data)

    def perform_service_update(self, instance, data, reason):
        if "profile" in data:
            raise InvalidInput("a rule's profile never changes", code="field_not_editable")
        return services.excursion_rule_update(
            rule=instance, actor=self.request.user, reason=reason, **data
        )


# --- excursions ----------------------------------------------------------------------------


class ExcursionSerializer(serializers.ModelSerializer):
    shipment_number = serializers.CharField(source="shipment.number", read_only=True)
    device_id = serializers.CharField(source="logger.device_id", read_only=True)
    rule_name = serializers.CharField(source="rule.name", read_only=True)
    rule_kind = serializers.CharField(source="rule.kind", read_only=True)
    # Plain strings, not enums: "kind", "status" and "disposition" name other choice sets
    # elsewhere in the API, and the schema would have to invent names for them.
    kind = serializers.CharField(read_only=True, help_text="high, low, cumulative or data_gap")
    status = serializers.CharField(
        read_only=True, help_text="open, acknowledged, closed or withdrawn"
    )
    disposition = serializers.CharField(read_only=True, help_text="accept, reject or empty")

    class Meta:
        model = Excursion
        fields = [
            "id",
            "number",
            "shipment",
            "shipment_number",
            "logger",
            "device_id",
            "rule",
            "rule_name",
            "rule_kind",
            "kind",
            "starts_at",
            "ends_at",
            "is_ongoing",
            "peak_celsius",
            "duration_seconds",
            "detected_at",
            "status",
            "acknowledged_by",
            "acknowledged_at",
            "acknowledgement",
            "disposition",
            "closed_by",
            "closed_at",
        ]
        read_only_fields = fields


class AcknowledgeSerializer(StrictFieldsMixin, serializers.Serializer):
    comment = serializers.CharField(max_length=2000, help_text="what is being done about it")


class CloseSerializer(StrictFieldsMixin, serializers.Serializer):
    disposition = serializers.CharField(
        max_length=6, help_text="accept (release the stock) or reject (the stock is destroyed)"
    )
    password = SignaturePasswordField()
    reason = ReasonField(help_text="what this signature confirms (kept with the signature)")


class ExcursionDecisionSerializer(ExcursionSerializer):
    signature = SignatureSerializer(read_only=True)

    class Meta(ExcursionSerializer.Meta):
        fields = [*ExcursionSerializer.Meta.fields, "signature"]
        read_only_fields = fields


class ExcursionFilter(django_filters.FilterSet):
    class Meta:
        model = Excursion
        fields = ["status", "kind", "shipment", "number"]


class ExcursionViewSet(
    HistoryMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Excursions on the shipments of the user's partner (seller or buyer); regulators read
    all. QA acknowledges them, then closes them with a signed disposition."""

    serializer_class = ExcursionSerializer
    filterset_class = ExcursionFilter
    write_roles = {Role.QA_OFFICER}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to scope by
            return Excursion.objects.none()
        return selectors.excursions_visible_to(self.request.user)

    def get_serializer_class(self):
        if self.action == "acknowledge":
            return AcknowledgeSerializer
        if self.action == "close":
            return CloseSerializer
        return ExcursionSerializer

    @extend_schema(request=AcknowledgeSerializer, responses=ExcursionSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """QA has seen the excursion: its comment says what is being done (lots stay held)."""
        excursion = self.get_object()
        serializer = AcknowledgeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        excursion = services.excursion_acknowledge(
            excursion=excursion, actor=request.user, comment=serializer.validated_data["comment"]
        )
        return Response(ExcursionSerializer(excursion).data)

    @extend_schema(request=CloseSerializer, responses=ExcursionDecisionSerializer)
    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        """QA's disposition of the stock (accept or reject), signed with their password."""
        excursion = self.get_object()
        serializer = CloseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        decision = services.excursion_close(
            excursion=excursion,
            disposition=data["disposition"],
            signer=request.user,
            password=data["password"],
            reason=data["reason"],
            request=request,
        )
        body = ExcursionSerializer(decision.excursion).data
        body["signature"] = SignatureSerializer(decision.signature).data
        return Response(body)


# --- the temperature record ----------------------------------------------------------------


class ReadingSerializer(serializers.ModelSerializer):
    device_id = serializers.CharField(source="logger.device_id", read_only=True)
    shipment_number = serializers.CharField(source="shipment.number", read_only=True)

    class Meta:
        model = Reading
        fields = [
            "id",
            "device_id",
            "sequence",
            "measured_at",
            "celsius",
            "humidity",
            "battery",
            "latitude",
            "longitude",
            "received_at",
            "shipment",
            "shipment_number",
        ]
        read_only_fields = fields


TIME_FILTERS = [
    OpenApiParameter("measured_after", OpenApiTypes.DATETIME, description="from (inclusive)"),
    OpenApiParameter("measured_before", OpenApiTypes.DATETIME, description="until (exclusive)"),
]


def _moment(request, name: str) -> datetime.datetime | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError as error:
        raise InvalidInput(f"{name}: an ISO 8601 time", code="invalid_time") from error
    if moment.tzinfo is None:
        raise InvalidInput(f"{name}: give a UTC offset (e.g. Z)", code="invalid_time")
    return moment


class _ReadingsView(generics.ListAPIView):
    serializer_class = ReadingSerializer
    permission_classes = [PartnerRolePermission]

    def readings(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to scope by
            return Reading.objects.none()
        queryset = self.readings()
        after, before = (
            _moment(self.request, "measured_after"),
            _moment(self.request, "measured_before"),
        )
        if after:
            queryset = queryset.filter(measured_at__gte=after)
        if before:
            queryset = queryset.filter(measured_at__lt=before)
        return queryset

    @extend_schema(parameters=TIME_FILTERS)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ShipmentReadingsView(_ReadingsView):
    """The readings of a shipment's loggers during its trip, in measured order."""

    def readings(self):
        shipments = shipments_visible_to(self.request.user).filter(pk=self.kwargs["pk"])
        if not shipments.exists():
            raise Http404
        return selectors.readings_of_shipments(shipments.values("pk"))


class OrderReadingsView(_ReadingsView):
    """The readings of all shipments of an order."""

    def readings(self):
        order = get_object_or_404(orders_visible_to(self.request.user), pk=self.kwargs["pk"])
        shipments = shipments_visible_to(self.request.user).filter(order=order)
        return selectors.readings_of_shipments(shipments.values("pk"))


class BatchReadingsView(_ReadingsView):
    """The readings of the shipments that carried a lot (those the user can see)."""

    def readings(self):
        batch = get_object_or_404(visible_batches(self.request.user), pk=self.kwargs["pk"])
        return selectors.readings_of_batch(batch, self.request.user)


class _ShipmentView(generics.GenericAPIView):
    permission_classes = [PartnerRolePermission]

    def shipment(self):
        return get_object_or_404(shipments_visible_to(self.request.user), pk=self.kwargs["pk"])


class ShipmentTemperatureView(_ShipmentView):
    """The trip's temperature in figures: per logger min, max, mean and MKT, and the MKT of
    each window (24 h for 2–8 °C, 30 days for room temperature), with the excursions."""

    serializer_class = ExcursionSerializer  # the excursions listed in the answer

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, pk=None):
        shipment = self.shipment()
        summary = selectors.shipment_temperature_summary(shipment)
        excursions = Excursion.objects.filter(shipment=shipment).exclude(
            status=ExcursionStatus.WITHDRAWN
        )
        summary["excursions"] = ExcursionSerializer(
            excursions.select_related("shipment", "logger", "rule"), many=True
        ).data
        return Response(summary)


class SVGRenderer(renderers.BaseRenderer):
    media_type = "image/svg+xml"
    format = "svg"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, str | bytes):
            return data
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"
        return renderers.JSONRenderer().render(data)


class PNGRenderer(SVGRenderer):
    media_type = "image/png"
    format = "png"
    charset = None


class ShipmentChartView(_ShipmentView):
    """The chart of the trip's readings with the profile's band and the excursions shaded:
    SVG (default) or PNG (``?format=png``)."""

    renderer_classes = [SVGRenderer, PNGRenderer]
    serializer_class = ReadingSerializer

    @extend_schema(
        parameters=[OpenApiParameter("format", OpenApiTypes.STR, enum=["svg", "png"])],
        responses={
            (200, "image/svg+xml"): OpenApiTypes.STR,
            (200, "image/png"): OpenApiTypes.BINARY,
        },
    )
    def get(self, request, pk=None):
        shipment = self.shipment()
        profiles = selectors.shipment_profiles(shipment)
        data = chart.ChartData(
            title=f"Shipment {shipment.number}",
            series=selectors.shipment_series(shipment),
            band=(profiles[0].min_celsius, profiles[0].max_celsius) if profiles else None,
            excursions=list(
                Excursion.objects.filter(shipment=shipment)
                .exclude(status=ExcursionStatus.WITHDRAWN)
                .values_list("number", "starts_at", "ends_at")
            ),
        )
        if request.accepted_renderer.format == "png":
            return HttpResponse(chart.png(data), content_type="image/png")
        return HttpResponse(chart.svg(data), content_type="image/svg+xml; charset=utf-8")


class ShipmentSensorEpcisView(_ShipmentView):
    """The shipment as EPCIS 2.0 with its temperature: a ``sensor_reporting`` ObjectEvent per
    logger and interval (``?interval_minutes=``, default 60) with min/max/mean °C and an
    ``ALARM_CONDITION`` exception where an excursion falls."""

    serializer_class = ReadingSerializer

    @extend_schema(
        parameters=[OpenApiParameter("interval_minutes", OpenApiTypes.INT)],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request, pk=None):
        shipment = self.shipment()
        if shipment.dispatched_at is None:
            raise RuleViolation(
                f"shipment {shipment.number} has not been dispatched: no record yet",
                code="not_dispatched",
            )
        raw = request.query_params.get("interval_minutes", "60")
        if not raw.isdigit() or not 1 <= int(raw) <= 7 * 24 * 60:
            raise InvalidInput(
                "interval_minutes: a whole number of minutes, 1 to 10080", code="invalid_interval"
            )
        interval = datetime.timedelta(minutes=int(raw))
        return Response(shipment_sensor_document(shipment, interval=interval))


class BatchTemperatureView(generics.GenericAPIView):
    """The mean kinetic temperature (USP <1079.2>) of a lot at each location where a logger
    measured it — on each shipment that carried it — per window of the lot's profile (24 h for
    2–8 °C products, 30 days for room temperature), with whether a window exceeds the
    profile's MKT limit."""

    permission_classes = [PartnerRolePermission]
    serializer_class = ReadingSerializer

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, pk=None):
        batch = get_object_or_404(
            visible_batches(request.user).select_related("product"), pk=self.kwargs["pk"]
        )
        return Response(selectors.batch_temperature(batch, request.user))
