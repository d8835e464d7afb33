"""API for partners, licences, sites, locations and API tokens."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from audit.services import lockout_message
from pharmadms.exceptions import InvalidInput, NotPermitted
from pharmadms.viewsets import (
    PartnerScopedMixin,
    ReasonField,
    ServiceWriteViewSet,
    StrictFieldsMixin,
)

from . import services
from .models import Licence, Location, Partner, ProductCategory, Role, Site


class PartnerSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    reason = ReasonField()

    class Meta:
        model = Partner
        fields = [
            "id",
            "name",
            "kind",
            "gln",
            "region",
            "contact_email",
            "contact_phone",
            "gs1_company_prefix",
            "is_active",
            "reason",
        ]


class PartnerViewSet(ServiceWriteViewSet):
    """The network's directory of trading partners: every signed-in user may read it."""

    serializer_class = PartnerSerializer
    filterset_fields = ["kind", "region", "gln", "is_active"]
    write_roles = {Role.ADMIN}

    def get_queryset(self):
        return Partner.objects.all()

    def history_visible_to(self, user, instance) -> bool:
        return instance.pk == user.partner_id

    def perform_service_create(self, data, reason):
        return services.partner_create(actor=self.request.user, reason=reason, **data)

    def perform_service_update(self, instance, data, reason):
        return services.partner_update(
            partner=instance, actor=self.request.user, reason=reason, **data
        )


@extend_schema_field(
    {"type": "array", "items": {"type": "string", "enum": list(ProductCategory.values)}}
)
class ProductCategoriesField(serializers.ListField):
    """A typed list: the model's JSONField would take any JSON (a number, nested lists), which
    Licence.clean() cannot check. The schema inlines the enum: a named component would clash
    with the product's own category enum."""


class LicenceSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    reason = ReasonField()
    partner = serializers.PrimaryKeyRelatedField(read_only=True)
    product_categories = ProductCategoriesField(
        child=serializers.ChoiceField(choices=ProductCategory.choices),
        allow_empty=False,
        help_text="the product categories this licence covers",
    )

    class Meta:
        model = Licence
        fields = [
            "id",
            "partner",
            "number",
            "kind",
            "issuing_authority",
            "product_categories",
            "covers_controlled_substances",
            "valid_from",
            "valid_until",
            "status",
            "reason",
        ]


class LicenceViewSet(PartnerScopedMixin, ServiceWriteViewSet):
    """Licences of the user's own partner (all licences for regulators)."""

    serializer_class = LicenceSerializer
    filterset_fields = ["partner", "kind", "status"]
    partner_path = "partner_id"
    write_roles = {Role.ADMIN, Role.QA_OFFICER}

    def base_queryset(self):
        return Licence.objects.select_related("partner")

    def perform_service_create(self, data, reason):
        user = self.request.user
        if user.partner is None:
            raise NotPermitted("a licence is recorded by a member of its partner")
        return services.licence_create(partner=user.partner, actor=user, reason=reason, **data)

    def perform_service_update(self, instance, data, reason):
        return services.licence_update(
            licence=instance, actor=self.request.user, reason=reason, **data
        )


class SiteSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    reason = ReasonField()
    partner = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Site
        fields = [
            "id",
            "partner",
            "name",
            "gln",
            "address_line",
            "postal_code",
            "city",
            "country",
            "is_active",
            "reason",
        ]


class SiteViewSet(PartnerScopedMixin, ServiceWriteViewSet):
    serializer_class = SiteSerializer
    filterset_fields = ["partner", "country", "is_active"]
    partner_path = "partner_id"
    write_roles = {Role.ADMIN}

    def base_queryset(self):
        return Site.objects.select_related("partner")

    def perform_service_create(self, data, reason):
        user = self.request.user
        if user.partner is None:
            raise NotPermitted("a site is registered by a member of its partner")
        return services.site_create(partner=user.partner, actor=user, reason=reason, **data)

    def perform_service_update(self, instance, data, reason):
        return services.site_update(site=instance, actor=self.request.user, reason=reason, **data)


class VisibleSiteField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self):
        user = self.context["request"].user
        queryset = Site.objects.all()
        return queryset if user.is_superuser else queryset.filter(partner_id=user.partner_id)


class LocationSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    reason = ReasonField()
    site = VisibleSiteField()

    class Meta:
        model = Location
        fields = ["id", "site", "code", "name", "kind", "is_active", "reason"]


class LocationViewSet(PartnerScopedMixin, ServiceWriteViewSet):
    serializer_class = LocationSerializer
    filterset_fields = ["site", "kind", "is_active"]
    partner_path = "site__partner_id"
    write_roles = {Role.ADMIN}

    def base_queryset(self):
        return Location.objects.select_related("site")

    def perform_service_create(self, data, reason):
        site = data.pop("site")
        return services.location_create(site=site, actor=self.request.user, reason=reason, **data)

    def perform_service_update(self, instance, data, reason):
        site = data.pop("site", instance.site)
        if site != instance.site:
            raise InvalidInput("a location never moves to another site", code="field_not_editable")
        return services.location_update(
            location=instance, actor=self.request.user, reason=reason, **data
        )


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class TokenView(APIView):
    """Exchange a username and password for an API token that expires; DELETE revokes it."""

    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token"

    def get_authenticators(self):
        # POST authenticates by its username and password alone: a stale token still sent in
        # the header (or a session without its CSRF token) must not stop a client from
        # obtaining a new token. No session is created here, so there is no login CSRF.
        if self.request is not None and self.request.method == "POST":
            return []
        return super().get_authenticators()

    @extend_schema(
        request=TokenRequestSerializer,
        responses=inline_serializer(
            "TokenResponse",
            {"token": serializers.CharField(), "expires_at": serializers.DateTimeField()},
        ),
    )
    def post(self, request):
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request, **serializer.validated_data)
        if user is None and getattr(request, "axes_locked_out", False):
            # django-axes refused it: too many failures for this username, right password or not.
            raise NotPermitted(lockout_message(), code="account_locked")
        if user is None:
            return Response(
                {"code": "invalid_credentials", "detail": "the username or password is wrong"},
                status=status.HTTP_400_BAD_REQUEST,
            )
        token, raw = services.api_token_issue(user=user)
        return Response(
            {"token": raw, "expires_at": token.expires_at}, status=status.HTTP_201_CREATED
        )

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        token = request.auth
        if not request.user.is_authenticated or token is None or not hasattr(token, "digest"):
            # Raised, not returned: DRF then adds the WWW-Authenticate challenge a 401 must carry.
            raise exceptions.NotAuthenticated(
                "send the token to revoke it", code="not_token_authenticated"
            )
        services.api_token_revoke(token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)
