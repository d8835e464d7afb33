"""Trading partners, their licences, sites and locations, and the users who act for them."""

from __future__ import annotations

import datetime

from django.contrib.auth.models import AbstractUser, UserManager
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.db.models import Q

from audit.history import HistoricalRecords, RegulatedModel
from pharmadms.identifiers import validate_gln


class PartnerKind(models.TextChoices):
    MANUFACTURER = "manufacturer", "Manufacturer"
    WHOLESALER = "wholesaler", "Wholesaler"
    PHARMACY = "pharmacy", "Pharmacy"
    HOSPITAL = "hospital", "Hospital"
    LOGISTICS = "logistics", "Logistics provider"
    REGULATOR = "regulator", "Regulator"


class ProductCategory(models.TextChoices):
    """Classes of medicine a licence may cover (its scope)."""

    SMALL_MOLECULE = "small_molecule", "Small-molecule medicines"
    VACCINE = "vaccine", "Vaccines"
    BIOLOGIC = "biologic", "Biologics"
    INSULIN = "insulin", "Insulins and hormones"
    BLOOD_PRODUCT = "blood_product", "Blood products"


class Partner(RegulatedModel):
    """A trading partner of the network, identified by its GS1 Global Location Number."""

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=PartnerKind.choices)
    gln = models.CharField("GLN", max_length=13, unique=True, validators=[validate_gln])
    region = models.CharField(max_length=100, help_text="sales/regulatory region, e.g. DE-BY")
    contact_email = models.EmailField()
    contact_phone = models.CharField(
        max_length=32, validators=[RegexValidator(r"^\+?[0-9 ()\-]{6,30}$", "not a phone number")]
    )
    gs1_company_prefix = models.CharField(
        max_length=12,
        blank=True,
        validators=[RegexValidator(r"^[0-9]{6,12}$", "a GS1 company prefix is 6 to 12 digits")],
    )
    is_active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(gln__regex=r"^[0-9]{13}$"), name="partner_gln_13_digits"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class LicenceKind(models.TextChoices):
    MANUFACTURING = "manufacturing", "Manufacturing authorisation"
    WHOLESALE = "wholesale", "Wholesale distribution authorisation"
    PHARMACY = "pharmacy", "Pharmacy licence"
    HOSPITAL = "hospital", "Hospital pharmacy licence"
    CONTROLLED = "controlled", "Controlled-substance registration"


class LicenceStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    REVOKED = "revoked", "Revoked"


class Licence(RegulatedModel):
    """An authorisation held by a partner: what it may handle, and from when to when."""

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="licences")
    number = models.CharField(max_length=64)
    kind = models.CharField(max_length=20, choices=LicenceKind.choices)
    issuing_authority = models.CharField(max_length=200)
    product_categories = models.JSONField(
        default=list, help_text="the product categories this licence covers"
    )
    covers_controlled_substances = models.BooleanField(default=False)
    valid_from = models.DateField()
    valid_until = models.DateField()
    status = models.CharField(
        max_length=10, choices=LicenceStatus.choices, default=LicenceStatus.ACTIVE
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["partner__name", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["issuing_authority", "number"], name="licence_number_unique_per_authority"
            ),
            models.CheckConstraint(
                condition=Q(valid_until__gte=models.F("valid_from")),
                name="licence_valid_until_after_from",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} ({self.get_kind_display()}, {self.partner.name})"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        categories = self.product_categories
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise ValidationError(
                {
                    "product_categories": ValidationError(
                        "a list of product categories", code="invalid_scope"
                    )
                }
            )
        unknown = sorted(set(categories) - set(ProductCategory.values))
        if unknown:
            raise ValidationError(
                {
                    "product_categories": ValidationError(
                        f"unknown product categories: {', '.join(unknown)}", code="invalid_scope"
                    )
                }
            )
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValidationError(
                {
                    "valid_until": ValidationError(
                        "a licence cannot end before it starts", code="invalid_period"
                    )
                }
            )

    def is_valid_on(self, day: datetime.date) -> bool:
        return self.status == LicenceStatus.ACTIVE and self.valid_from <= day <= self.valid_until


class Site(RegulatedModel):
    """A physical place of a partner (warehouse, pharmacy, hospital), with its own GLN."""

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="sites")
    name = models.CharField(max_length=200)
    gln = models.CharField("GLN", max_length=13, unique=True, validators=[validate_gln])
    address_line = models.CharField(max_length=200)
    postal_code = models.CharField(max_length=16)
    city = models.CharField(max_length=100)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")
    is_active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["partner__name", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.partner.name})"


class LocationKind(models.TextChoices):
    STORAGE = "storage", "Storage (saleable)"
    QUARANTINE = "quarantine", "Quarantine"
    RETURNS = "returns", "Returns"
    IN_TRANSIT = "in_transit", "In transit"


class Location(RegulatedModel):
    """A place that holds stock at a site; only storage locations hold saleable stock."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="locations")
    code = models.CharField(max_length=32)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=LocationKind.choices)
    is_active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["site__name", "code"]
        constraints = [
            models.UniqueConstraint(fields=["site", "code"], name="location_code_unique_per_site"),
        ]

    def __str__(self) -> str:
        return f"{self.site.name} / {self.code}"

    @property
    def partner_id(self) -> int:
        return self.site.partner_id


class Role(models.TextChoices):
    ADMIN = "admin", "Administrator"
    QA_OFFICER = "qa_officer", "QA officer"
    WAREHOUSE_OPERATOR = "warehouse_operator", "Warehouse operator"
    ORDER_DESK = "order_desk", "Order desk"
    PARTNER_USER = "partner_user", "Partner user"
    REGULATOR = "regulator", "Regulator"


class User(AbstractUser):
    """A person acting for exactly one partner in exactly one role.

    Users are deactivated, never deleted, so every history row keeps naming a real person.
    """

    partner = models.ForeignKey(
        Partner, on_delete=models.PROTECT, related_name="users", null=True, blank=True
    )
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.PARTNER_USER)
    history = HistoricalRecords(excluded_fields=["last_login", "password"])

    objects = UserManager()

    class Meta:
        ordering = ["username"]
        constraints = [
            models.CheckConstraint(
                condition=Q(is_superuser=True) | Q(partner__isnull=False),
                name="user_belongs_to_a_partner",
            ),
        ]

    def __str__(self) -> str:
        return self.get_full_name() or self.username

    @property
    def is_regulator(self) -> bool:
        return self.role == Role.REGULATOR

    @property
    def sees_everything(self) -> bool:
        """Regulators and platform superusers read across all partners."""
        return self.is_superuser or self.role == Role.REGULATOR

    def save(self, *args, **kwargs):
        # The row, its history row and the seal commit together or not at all.
        with transaction.atomic():
            super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        from audit.history import HistoryBypassRefused

        raise HistoryBypassRefused("users are deactivated, never deleted")


class ApiToken(models.Model):
    """An API token: only its SHA-256 digest is stored, and it expires."""

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="api_tokens")
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="first characters, to tell tokens apart")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"
