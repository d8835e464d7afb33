"""factory_boy factories for the test suite; regulated rows are saved with a reason."""

from __future__ import annotations

import datetime
from decimal import Decimal

import factory
from biip.checksums import gs1_standard_check_digit
from factory.django import DjangoModelFactory

from batches.models import Batch, BatchStatus, Product, StorageClass
from partners.models import (
    Licence,
    LicenceKind,
    Location,
    LocationKind,
    Partner,
    PartnerKind,
    ProductCategory,
    Role,
    Site,
    User,
)

TEST_PASSWORD = "correct-horse-battery-staple"


def gln(n: int) -> str:
    payload = f"400{n:09d}"
    return payload + str(gs1_standard_check_digit(payload))


def gtin14(n: int) -> str:
    payload = f"0400{n:09d}"
    return payload + str(gs1_standard_check_digit(payload))


class RegulatedFactory(DjangoModelFactory):
    """Saves through the model's save() with a reason, as every regulated write must."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        instance = model_class(*args, **kwargs)
        instance._change_reason = "test fixture"
        instance.save()
        return instance


class PartnerFactory(RegulatedFactory):
    class Meta:
        model = Partner

    name = factory.Sequence(lambda n: f"Partner {n}")
    kind = PartnerKind.WHOLESALER
    gln = factory.Sequence(lambda n: gln(n + 1))
    region = "DE-BY"
    contact_email = factory.Sequence(lambda n: f"contact{n}@example.com")
    contact_phone = "+49 89 1234567"


class LicenceFactory(RegulatedFactory):
    class Meta:
        model = Licence

    partner = factory.SubFactory(PartnerFactory)
    number = factory.Sequence(lambda n: f"LIC-{n:05d}")
    kind = LicenceKind.WHOLESALE
    issuing_authority = "Regierung von Oberbayern"
    product_categories = factory.LazyFunction(lambda: list(ProductCategory.values))
    covers_controlled_substances = False
    valid_from = datetime.date(2020, 1, 1)
    valid_until = datetime.date(2099, 12, 31)


class SiteFactory(RegulatedFactory):
    class Meta:
        model = Site

    partner = factory.SubFactory(PartnerFactory)
    name = factory.Sequence(lambda n: f"Site {n}")
    gln = factory.Sequence(lambda n: gln(500_000 + n))
    address_line = "Industriestraße 1"
    postal_code = "80331"
    city = "München"
    country = "DE"


class LocationFactory(RegulatedFactory):
    class Meta:
        model = Location

    site = factory.SubFactory(SiteFactory)
    code = factory.Sequence(lambda n: f"LOC-{n}")
    name = factory.Sequence(lambda n: f"Location {n}")
    kind = LocationKind.STORAGE


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = "Test"
    last_name = factory.Sequence(lambda n: f"User {n}")
    email = factory.Sequence(lambda n: f"user{n}@example.com")
    partner = factory.SubFactory(PartnerFactory)
    role = Role.PARTNER_USER

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.set_password(extracted or TEST_PASSWORD)
        if create:
            self.save(update_fields=["password"])


class StorageClassFactory(RegulatedFactory):
    """One row per code: products of a test share their storage class."""

    class Meta:
        model = StorageClass

    code = "2-8c"
    name = "Refrigerated"
    min_celsius = Decimal("2.0")
    max_celsius = Decimal("8.0")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        existing = model_class.objects.filter(code=kwargs["code"]).first()
        return existing or super()._create(model_class, *args, **kwargs)


class ProductFactory(RegulatedFactory):
    class Meta:
        model = Product

    gtin = factory.Sequence(lambda n: gtin14(n + 1))
    name = factory.Sequence(lambda n: f"Product {n}")
    manufacturer = factory.SubFactory(PartnerFactory, kind=PartnerKind.MANUFACTURER)
    category = ProductCategory.VACCINE
    dosage_form = "suspension for injection"
    strength = "0.5 ml"
    pack_size = 10
    storage_class = factory.SubFactory(StorageClassFactory)
    shelf_life_months = 24


class BatchFactory(RegulatedFactory):
    class Meta:
        model = Batch

    product = factory.SubFactory(ProductFactory)
    lot_number = factory.Sequence(lambda n: f"L{n:06d}")
    manufactured_on = datetime.date(2026, 1, 15)
    expires_on = datetime.date(2027, 12, 31)
    status = BatchStatus.RELEASED


# --- orders ----------------------------------------------------------------------------------


class AgreementFactory(RegulatedFactory):
    class Meta:
        model = "orders.Agreement"

    supplier = factory.SubFactory(PartnerFactory, kind=PartnerKind.MANUFACTURER)
    customer = factory.SubFactory(PartnerFactory)
    territory = factory.LazyFunction(lambda: ["DE"])
    min_remaining_shelf_life_days = 0
    valid_from = datetime.date(2020, 1, 1)
    valid_until = datetime.date(2099, 12, 31)


class AgreementPriceFactory(RegulatedFactory):
    class Meta:
        model = "orders.AgreementPrice"

    agreement = factory.SubFactory(AgreementFactory)
    product = factory.SubFactory(ProductFactory)
    unit_price = Decimal("12.5000")
    currency = "EUR"


# --- cold chain ------------------------------------------------------------------------------


class LoggerFactory(RegulatedFactory):
    """A calibrated temperature logger (certificate on file, due in the far future)."""

    class Meta:
        model = "coldchain.Logger"

    device_id = factory.Sequence(lambda n: f"LG-{n + 1:04d}")
    device_model = "ColdTrack T1"
    owner = factory.SubFactory(PartnerFactory, kind=PartnerKind.MANUFACTURER)
    calibration_certificate = factory.Sequence(lambda n: f"CAL-{n + 1:05d}")
    calibration_due_on = datetime.date(2099, 12, 31)
    is_active = True


class TemperatureProfileFactory(RegulatedFactory):
    """The 2–8 °C profile of the shared refrigerated storage class, 24 h MKT windows."""

    class Meta:
        model = "coldchain.TemperatureProfile"

    storage_class = factory.SubFactory(StorageClassFactory)
    name = "Refrigerated 2–8 °C"
    min_celsius = Decimal("2.00")
    max_celsius = Decimal("8.00")
    ignore_first_minutes = 0
    mkt_window_hours = 24
    mkt_limit_celsius = Decimal("8.00")


class ExcursionRuleFactory(RegulatedFactory):
    class Meta:
        model = "coldchain.ExcursionRule"

    profile = factory.SubFactory(TemperatureProfileFactory)
    name = factory.Sequence(lambda n: f"rule {n}")
    kind = "instant"
    direction = "both"


# --- scanning --------------------------------------------------------------------------------


def datamatrix(
    gtin: str,
    lot: str | None = None,
    expires_on: datetime.date | None = None,
    serial: str | None = None,
    *,
    symbology: str = "]d2",
) -> str:
    """What a scanner sends for a pack's GS1 DataMatrix: (01)(17)(10)GS(21), FNC1 as GS."""
    code = f"{symbology}01{gtin}"
    if expires_on is not None:
        code += f"17{expires_on:%y%m%d}"
    if lot is not None:
        code += f"10{lot}"
    if serial is not None:
        code += f"\x1d21{serial}"
    return code


def sscc18(n: int, prefix: str = "4012345") -> str:
    """An SSCC with a right check digit: extension 0, ``prefix``, serial reference ``n``."""
    body = f"0{prefix}{n:0{16 - len(prefix)}d}"
    return body + str(gs1_standard_check_digit(body))
