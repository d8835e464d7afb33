"""API for webhook endpoints: register (the secret is shown once), change, ping, read deliveries."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from orders.signals import EVENTS
from partners.models import Role
from pharmadms.exceptions import NotPermitted
from pharmadms.viewsets import (
    PartnerScopedMixin,
    ReasonField,
    ServiceWriteViewSet,
    StrictFieldsMixin,
)

from . import services
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


class WebhookEndpointSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """An endpoint as it is read: never with its secret."""

    reason = ReasonField()
    partner = serializers.PrimaryKeyRelatedField(read_only=True)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENTS),
        allow_empty=False,
        help_text="the business events sent to this URL",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "partner", "url", "events", "is_active", "created_at", "reason"]
        read_only_fields = ["created_at"]


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    """The answer to a registration: the only time the secret is ever shown."""

    secret = serializers.CharField(
        read_only=True,
        help_text="HMAC-SHA256 key of X-PharmaDMS-Signature; shown once, keep it now",
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "started_at", "duration_ms", "status_code", "error", "succeeded"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "event",
            "payload",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "created_at",
            "last_attempt_at",
            "completed_at",
            "attempt_log",
        ]


class WebhookPingSerializer(StrictFieldsMixin, serializers.Serializer):
    """A ping takes no fields: it changes no record, and its delivery is its log."""


class WebhookEndpointViewSet(PartnerScopedMixin, ServiceWriteViewSet):
    """Webhook endpoints of the user's own partner (all, read-only, for regulators).

    Registered and changed by the partner's admin. The secret is in the creation answer only.
    """

    serializer_class = WebhookEndpointSerializer
    filterset_fields = ["is_active"]
    partner_path = "partner_id"
    write_roles = {Role.ADMIN}

    def base_queryset(self):
        return WebhookEndpoint.objects.select_related("partner")

    def get_serializer_class(self):
        if self.action == "deliveries":
            return WebhookDeliverySerializer
        if self.action == "test":
            return WebhookPingSerializer
        return WebhookEndpointSerializer

    @extend_schema(responses={201: WebhookEndpointCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        reason = data.pop("reason")
        endpoint = self.perform_service_create(data, reason)
        body = WebhookEndpointCreatedSerializer(endpoint, context=self.get_serializer_context())
        # The one answer holding the secret is not to be kept by any cache on the way.
        return Response(
            body.data, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"}
        )

    def perform_service_create(self, data, reason):
        user = self.request.user
        if user.partner is None:
            raise NotPermitted("a webhook is registered by a member of its partner")
        return services.webhook_endpoint_create(
            partner=user.partner, actor=user, reason=reason, **data
        )

    def perform_service_update(self, instance, data, reason):
        return services.webhook_endpoint_update(
            endpoint=instance, actor=self.request.user, reason=reason, **data
        )

    @extend_schema(responses=WebhookDeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """Recent deliveries to this endpoint, newest first, each with every attempt."""
        endpoint = self.get_object()
        deliveries = endpoint.deliveries.prefetch_related("attempt_log").order_by(
            "-created_at", "-pk"
        )
        status_filter = request.query_params.get("status")
        if status_filter:
            deliveries = deliveries.filter(status=status_filter)
        page = self.paginate_queryset(deliveries)
        data = WebhookDeliverySerializer(page, many=True).data
        return self.get_paginated_response(data)

    @extend_schema(request=WebhookPingSerializer, responses={202: WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a ``ping`` event now (the partner's admin), to check the receiving side."""
        endpoint = self.get_object()
        WebhookPingSerializer(data=request.data).is_valid(raise_exception=True)
        delivery = services.webhook_endpoint_ping(endpoint=endpoint, actor=request.user)
        delivery = WebhookDelivery.objects.prefetch_related("attempt_log").get(pk=delivery.pk)
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
