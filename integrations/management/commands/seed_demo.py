"""Seed a realistic demo distribution network through the services, idempotently.

One manufacturer, three regional wholesalers, twenty pharmacies, two hospitals and a regulator,
with their licences, sites and locations; storage classes, ten products, lots around today
(one expired, one near expiry, one in quarantine) and stock at the manufacturer and the
wholesalers; supply agreements (manufacturer → each wholesaler, each wholesaler → the pharmacies
and hospitals of its region) with price lists and monthly sales targets; four rounds of orders
at both tiers taken through submission, confirmation, FEFO allocation, shipment and receipt,
a few left open and one cancelled; and one demo login per role, whose password is
``DEMO_PASSWORD``.

The command lives in ``integrations``, at the edge of the dependency order, because it calls
the services of every app (``batches`` may not import ``orders``).

Every regulated row is written by a service, so each one has a history row naming its actor and
its reason; each released lot carries the demo QA officer's electronic signature. A second
run finds every row by its natural key (GLN, GTIN, lot number, username, supplier–customer
pair) and creates nothing twice; stock is posted only where the lot has no moves yet, and the
orders are placed only when no demo order (``customer_reference`` starting ``DEMO-PO-``) exists.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal

from biip.checksums import gs1_standard_check_digit
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from batches import services as batch_services
from batches.models import (
    Batch,
    BatchStatus,
    ControlledSchedule,
    MoveKind,
    Product,
    StockMove,
    StorageClass,
)
from integrations import receivers
from orders import services as order_services
from orders.models import Agreement, AgreementPrice, Order, SalesTarget, Shipment
from orders.signals import business_event
from partners import services as partner_services
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
from partners.selectors import partner_may_receive
from pharmadms import clock
from pharmadms.exceptions import ApplicationError

# Every random choice (identifiers, date jitter) comes from generators seeded with these, so two
# runs on the same day plan the same network, and identifiers never depend on the day.
IDENTIFIER_SEED = 20260115
DATE_SEED = 20260116
NEAR_EXPIRY_DAYS = 90
ORDER_SEED = 20260117
DEMO_ORDER_MARKER = "DEMO-PO-"  # customer_reference prefix of every order the seed places
SYSTEM_USERNAME = partner_services.SYSTEM_USERNAME
SETUP = "demo network setup"

# --- identifiers ---------------------------------------------------------------------------


def with_check_digit(payload: str) -> str:
    return payload + str(gs1_standard_check_digit(payload))


def make_gln(company_prefix: str, location_reference: int) -> str:
    """GLN-13: company prefix, location reference, GS1 mod-10 check digit."""
    width = 12 - len(company_prefix)
    return with_check_digit(f"{company_prefix}{location_reference:0{width}d}")


def make_gtin14(company_prefix: str, item_reference: str) -> str:
    """GTIN-14 with indicator digit 0 (the trade item itself, not a case)."""
    return with_check_digit("0" + company_prefix + item_reference)


def make_dea_number(registrant_letter: str, name: str, rng: random.Random) -> str:
    """A DEA registration number: two letters, six digits and the DEA check digit."""
    digits = [rng.randint(0, 9) for _ in range(6)]
    check = (digits[0] + digits[2] + digits[4] + 2 * (digits[1] + digits[3] + digits[5])) % 10
    return f"{registrant_letter}{name[0].upper()}{''.join(map(str, digits))}{check}"


# --- dates ---------------------------------------------------------------------------------


def add_months(day: datetime.date, months: int) -> datetime.date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return datetime.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def end_of_month(day: datetime.date) -> datetime.date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


# --- what the network looks like -----------------------------------------------------------


@dataclass(frozen=True)
class LocationSpec:
    code: str
    name: str
    kind: str


@dataclass(frozen=True)
class LicenceSpec:
    kind: str
    number: str
    authority: str
    categories: list[str]
    controlled: bool
    valid_from: datetime.date
    valid_until: datetime.date


@dataclass
class PartnerSpec:
    key: str
    name: str
    kind: str
    region: str
    company_prefix: str
    email: str
    phone: str
    site_name: str
    address: str
    postal_code: str
    city: str
    locations: list[LocationSpec]
    licences: list[LicenceSpec] = field(default_factory=list)
    stores_company_prefix: bool = False

    @property
    def gln(self) -> str:
        return make_gln(self.company_prefix, 0)

    @property
    def site_gln(self) -> str:
        return make_gln(self.company_prefix, 1)


@dataclass(frozen=True)
class StorageClassSpec:
    code: str
    name: str
    min_celsius: Decimal
    max_celsius: Decimal


@dataclass(frozen=True)
class ProductSpec:
    key: str
    item_reference: str
    name: str
    category: str
    dosage_form: str
    strength: str
    pack_size: int
    storage_class: str
    shelf_life_months: int
    lot_prefix: str
    schedule: str = ControlledSchedule.NONE


@dataclass(frozen=True)
class LotSpec:
    product: str
    remaining_months: int  # shelf life left today; negative means already expired
    manufacturer_units: int
    wholesaler_units: dict[str, int]
    released: bool = True


@dataclass
class PlannedLot:
    spec: LotSpec
    lot_number: str
    manufactured_on: datetime.date
    expires_on: datetime.date
    delivery_notes: dict[str, str]


@dataclass(frozen=True)
class UserSpec:
    username: str
    role: str
    partner: str
    first_name: str
    last_name: str
    can_sign_in: bool = True
    is_superuser: bool = False


MANUFACTURER_PREFIX = "0371234"
REFRIGERATED, ROOM_TEMPERATURE, FROZEN = "2-8c", "15-25c", "minus25-minus15c"
ALL_CATEGORIES = [
    ProductCategory.SMALL_MOLECULE,
    ProductCategory.VACCINE,
    ProductCategory.BIOLOGIC,
    ProductCategory.INSULIN,
]

STORAGE_CLASSES = [
    StorageClassSpec(REFRIGERATED, "Refrigerated", Decimal("2"), Decimal("8")),
    StorageClassSpec(ROOM_TEMPERATURE, "Room temperature", Decimal("15"), Decimal("25")),
    StorageClassSpec(FROZEN, "Frozen", Decimal("-25"), Decimal("-15")),
]

PRODUCTS = [
    ProductSpec("flu", "10110", "Meriflu Quadrivalent influenza vaccine",
                ProductCategory.VACCINE, "suspension for injection in prefilled syringe",
                "0.5 mL", 10, REFRIGERATED, 12, "FQ"),
    ProductSpec("hepb", "10210", "Hepameri B hepatitis B vaccine (recombinant)",
                ProductCategory.VACCINE, "suspension for injection in vial",
                "20 µg/1 mL", 10, REFRIGERATED, 36, "HB"),
    ProductSpec("pcv", "10310", "Pneumeri 20 pneumococcal conjugate vaccine",
                ProductCategory.VACCINE, "suspension for injection in prefilled syringe",
                "0.5 mL", 10, REFRIGERATED, 24, "PN"),
    ProductSpec("mrna", "10410", "Coronameri COVID-19 mRNA vaccine",
                ProductCategory.VACCINE, "dispersion for injection in multidose vial",
                "30 µg/0.3 mL", 10, FROZEN, 9, "CM"),
    ProductSpec("glargine", "20105", "Insulin glargine Meridian",
                ProductCategory.INSULIN, "solution for injection in prefilled pen",
                "100 units/mL, 3 mL", 5, REFRIGERATED, 30, "IG"),
    ProductSpec("aspart", "20201", "Insulin aspart Meridian",
                ProductCategory.INSULIN, "solution for injection in vial",
                "100 units/mL, 10 mL", 1, REFRIGERATED, 24, "IA"),
    ProductSpec("adalimumab", "30102", "Adalimeri (adalimumab)",
                ProductCategory.BIOLOGIC, "solution for injection in prefilled pen",
                "40 mg/0.4 mL", 2, REFRIGERATED, 24, "AD"),
    ProductSpec("metformin", "40101", "Metformin hydrochloride Meridian",
                ProductCategory.SMALL_MOLECULE, "film-coated tablet",
                "500 mg", 100, ROOM_TEMPERATURE, 36, "MF"),
    ProductSpec("atorvastatin", "40203", "Atorvastatin Meridian",
                ProductCategory.SMALL_MOLECULE, "film-coated tablet",
                "20 mg", 30, ROOM_TEMPERATURE, 36, "AT"),
    ProductSpec("oxycodone", "50101", "Oxycodone hydrochloride Meridian",
                ProductCategory.SMALL_MOLECULE, "tablet",
                "10 mg", 100, ROOM_TEMPERATURE, 36, "OX", ControlledSchedule.CII),
]  # fmt: skip

LOTS = [
    # last season's influenza vaccine: near expiry
    LotSpec("flu", 2, 180, {"hudson": 60, "greatlakes": 40}),
    LotSpec("flu", 10, 2400, {"hudson": 600, "greatlakes": 450, "peachtree": 380}),
    LotSpec("hepb", 14, 900, {"hudson": 120, "peachtree": 80}),
    LotSpec("hepb", 30, 1500, {"greatlakes": 150}),
    LotSpec("pcv", 18, 1100, {"hudson": 200, "greatlakes": 160, "peachtree": 140}),
    LotSpec("mrna", 6, 3000, {}),  # frozen: only the manufacturer has a freezer
    LotSpec("glargine", 3, 400, {"peachtree": 90}),
    LotSpec("glargine", 22, 2600, {"hudson": 300, "greatlakes": 260, "peachtree": 210}),
    LotSpec("aspart", 16, 1800, {"hudson": 240, "greatlakes": 200}),
    LotSpec("adalimumab", 15, 600, {"hudson": 48, "greatlakes": 36, "peachtree": 24}),
    # made last week, awaiting QA release
    LotSpec("adalimumab", 24, 1200, {}, released=False),
    # expired last month, still on wholesalers' shelves awaiting removal
    LotSpec("metformin", -1, 0, {"hudson": 24, "greatlakes": 36}),
    LotSpec("metformin", 27, 5000, {"hudson": 800, "greatlakes": 700, "peachtree": 650}),
    LotSpec("atorvastatin", 20, 4200, {"hudson": 500, "greatlakes": 420, "peachtree": 380}),
    # schedule CII: only to wholesalers holding a DEA registration
    LotSpec("oxycodone", 25, 700, {"hudson": 60, "greatlakes": 45}),
]

STATE_BOARDS = {
    "US-NJ": ("New Jersey Board of Pharmacy", "NJ"),
    "US-NY": ("New York State Board of Pharmacy", "NY"),
    "US-OH": ("Ohio Board of Pharmacy", "OH"),
    "US-GA": ("Georgia Board of Pharmacy", "GA"),
}
REGULATOR_NAME = "Federal Medicines Supply Agency"
DEA = "Drug Enforcement Administration"

# key, name, region, address, postal code, city, phone, holds a DEA registration
WHOLESALERS = [
    ("hudson", "Hudson Valley Pharma Distribution, LLC", "US-NY", "85 Corporate Circle",
     "12203", "Albany", "+1 (518) 555-0140", True),
    ("greatlakes", "Great Lakes Medical Supply, Inc.", "US-OH", "3900 Alum Creek Drive",
     "43207", "Columbus", "+1 (614) 555-0162", True),
    ("peachtree", "Peachtree Healthcare Distributors, Inc.", "US-GA",
     "1450 Fulton Industrial Blvd NW", "30336", "Atlanta", "+1 (404) 555-0118", False),
]  # fmt: skip

# name, region, address, postal code, city, phone
PHARMACIES = [
    ("Hudson Street Pharmacy", "US-NY", "148 Hudson St", "10013", "New York", "+1 (212) 555-0131"),
    ("Park Slope Apothecary", "US-NY", "312 7th Ave", "11215", "Brooklyn", "+1 (718) 555-0144"),
    ("Lark Street Pharmacy", "US-NY", "201 Lark St", "12210", "Albany", "+1 (518) 555-0152"),
    ("Erie Canal Drug Co.", "US-NY", "410 S Salina St", "13202", "Syracuse", "+1 (315) 555-0117"),
    ("Genesee Family Pharmacy", "US-NY", "655 Monroe Ave", "14607", "Rochester",
     "+1 (585) 555-0126"),
    ("Elmwood Village Pharmacy", "US-NY", "820 Elmwood Ave", "14222", "Buffalo",
     "+1 (716) 555-0183"),
    ("Saratoga Springs Pharmacy", "US-NY", "455 Broadway", "12866", "Saratoga Springs",
     "+1 (518) 555-0109"),
    ("German Village Pharmacy", "US-OH", "740 S 3rd St", "43206", "Columbus",
     "+1 (614) 555-0173"),
    ("Short North Apothecary", "US-OH", "1000 N High St", "43201", "Columbus",
     "+1 (614) 555-0138"),
    ("Lakewood Community Pharmacy", "US-OH", "15100 Detroit Ave", "44107", "Lakewood",
     "+1 (216) 555-0164"),
    ("Over-the-Rhine Drug", "US-OH", "1320 Vine St", "45202", "Cincinnati", "+1 (513) 555-0191"),
    ("Oregon District Pharmacy", "US-OH", "520 E 5th St", "45402", "Dayton", "+1 (937) 555-0122"),
    ("Maumee River Pharmacy", "US-OH", "30 N Summit St", "43604", "Toledo", "+1 (419) 555-0147"),
    ("Highland Square Pharmacy", "US-OH", "815 W Market St", "44303", "Akron",
     "+1 (330) 555-0158"),
    ("Peachtree Corners Pharmacy", "US-GA", "5270 Peachtree Pkwy", "30092", "Peachtree Corners",
     "+1 (770) 555-0135"),
    ("Decatur Square Pharmacy", "US-GA", "125 E Court Sq", "30030", "Decatur",
     "+1 (404) 555-0186"),
    ("Savannah Riverfront Pharmacy", "US-GA", "212 E Broughton St", "31401", "Savannah",
     "+1 (912) 555-0114"),
    ("Classic City Pharmacy", "US-GA", "260 E Clayton St", "30601", "Athens", "+1 (706) 555-0129"),
    ("Ingleside Village Pharmacy", "US-GA", "2190 Ingleside Ave", "31204", "Macon",
     "+1 (478) 555-0150"),
    ("Broad Street Pharmacy", "US-GA", "1020 Broad St", "30901", "Augusta", "+1 (706) 555-0176"),
]  # fmt: skip
# Pharmacies whose licence is about to lapse / has lapsed, to show the licence checks at work.
PHARMACY_LICENCE_RENEWAL_DUE = 3
PHARMACY_LICENCE_LAPSED = 10

HOSPITALS = [
    ("Mohawk Valley Regional Medical Center", "US-NY", "1656 Champlin Ave", "13502", "Utica",
     "+1 (315) 555-0177"),
    ("Scioto Valley University Hospital", "US-OH", "410 W 10th Ave", "43210", "Columbus",
     "+1 (614) 555-0190"),
]  # fmt: skip

DEMO_USERS = [
    UserSpec("admin", Role.ADMIN, "manufacturer", "Dana", "Whitfield", is_superuser=True),
    UserSpec("qa", Role.QA_OFFICER, "manufacturer", "Priya", "Raman"),
    UserSpec("warehouse", Role.WAREHOUSE_OPERATOR, "manufacturer", "Marcus", "Ortega"),
    UserSpec("orderdesk", Role.ORDER_DESK, "hudson", "Lena", "Kowalski"),
    UserSpec("pharmacy", Role.PARTNER_USER, "pharmacy-01", "Samuel", "Okafor"),
    UserSpec("regulator", Role.REGULATOR, "regulator", "Helen", "Brandt"),
]
# The wholesalers' warehouse staff post their opening balances, dispatch and check goods in;
# the order desks of the manufacturer and of the wholesalers without a demo login sell; one
# buyer per pharmacy and hospital orders and checks deliveries in. None of them signs in.
STAFF_USERS = [
    *(
        UserSpec(f"{key}.warehouse", Role.WAREHOUSE_OPERATOR, key, first, last, can_sign_in=False)
        for key, first, last in [
            ("hudson", "Tom", "Becker"),
            ("greatlakes", "Aisha", "Grant"),
            ("peachtree", "Luis", "Moreno"),
        ]
    ),
    *(
        UserSpec(f"{key}.orderdesk", Role.ORDER_DESK, key, first, last, can_sign_in=False)
        for key, first, last in [
            ("manufacturer", "Grace", "Albright"),
            ("greatlakes", "Owen", "Mercer"),
            ("peachtree", "Tanya", "Holloway"),
        ]
    ),
]
BUYER_FIRST_NAMES = ["Ana", "Ben", "Chloe", "David", "Elif", "Farah", "George", "Hana", "Ivan",
                     "Jada", "Kofi", "Lucia", "Mateo", "Nadia", "Omar", "Paula", "Quinn", "Rosa",
                     "Sean", "Tara", "Uma"]  # fmt: skip
BUYER_LAST_NAMES = ["Novak", "Reyes", "Lindqvist", "Chen", "Adeyemi", "Bauer", "Costa", "Dubois",
                    "Evans", "Fischer", "Gupta", "Haddad", "Ito", "Jensen", "Kim", "Larsen",
                    "Moreau", "Nakamura", "Ortiz", "Petrov", "Quist"]  # fmt: skip
# Who sells for each supplier (the demo order desk for Hudson Valley), and who buys and checks
# goods in for each wholesaler.
SELLER_DESKS = {
    "manufacturer": "manufacturer.orderdesk",
    "hudson": "orderdesk",
    "greatlakes": "greatlakes.orderdesk",
    "peachtree": "peachtree.orderdesk",
}
WHOLESALER_OF_REGION = {"US-NY": "hudson", "US-OH": "greatlakes", "US-GA": "peachtree"}

# Wholesale acquisition cost per pack (USD) under the manufacturer's agreements; wholesalers
# sell on at a markup. Frozen mRNA vaccine stays with the manufacturer (no wholesaler freezer).
LIST_PRICES = {
    "flu": Decimal("182.50"),
    "hepb": Decimal("597.00"),
    "pcv": Decimal("2459.00"),
    "glargine": Decimal("98.40"),
    "aspart": Decimal("72.10"),
    "adalimumab": Decimal("6922.00"),
    "metformin": Decimal("8.90"),
    "atorvastatin": Decimal("6.75"),
    "oxycodone": Decimal("41.20"),
}
WHOLESALE_MARKUP = Decimal("1.08")
MANUFACTURER_MIN_SHELF_LIFE_DAYS = 180
WHOLESALER_MIN_SHELF_LIFE_DAYS = 60
# Packs a pharmacy orders of a product on one line (a hospital twice that; a wholesaler ten times).
PHARMACY_LINE_PACKS = {
    "flu": (5, 25),
    "hepb": (1, 6),
    "pcv": (1, 4),
    "glargine": (2, 10),
    "aspart": (2, 12),
    "adalimumab": (1, 3),
    "metformin": (2, 10),
    "atorvastatin": (3, 15),
    "oxycodone": (1, 3),
}
ORDER_ROUNDS = 4  # one round a month, the last one this month
# Days after an order is placed (and submitted) that it is confirmed and allocated, dispatched,
# delivered by the carrier and checked in: its business dates in the seeded history.
ORDER_STEP_DAYS = (0, 1, 2, 3, 4)


# One buyer per pharmacy and hospital; the first pharmacy's buyer is the demo "pharmacy" login.
BUYER_USERS = [
    UserSpec(f"{key}.buyer", Role.PARTNER_USER, key, first, last, can_sign_in=False)
    for key, first, last in zip(
        [f"pharmacy-{n:02d}" for n in range(2, len(PHARMACIES) + 1)]
        + [f"hospital-{n:02d}" for n in range(1, len(HOSPITALS) + 1)],
        BUYER_FIRST_NAMES,
        BUYER_LAST_NAMES,
        strict=True,
    )
]
CARRIERS = ["ColdChain Express", "Medline Freight", "PharmaLogix Courier"]
INTEGRATIONS_RECEIVER = "integrations.on_business_event"


def _locations(*specs: tuple[str, str, str]) -> list[LocationSpec]:
    return [LocationSpec(code, name, kind) for code, name, kind in specs]


QUARANTINE = ("QUAR", "Quarantine, awaiting QA decision", LocationKind.QUARANTINE)
RETURNS = ("RET", "Returns, awaiting QA disposition", LocationKind.RETURNS)
IN_TRANSIT = ("TRANSIT", "Outbound, in transit to customers", LocationKind.IN_TRANSIT)
COLD = ("COLD", "Cold room, 2–8 °C", LocationKind.STORAGE)
AMBIENT = ("AMB", "Ambient warehouse, 15–25 °C", LocationKind.STORAGE)
FREEZER = ("FRZ", "Freezer, −25 to −15 °C", LocationKind.STORAGE)
VAULT = ("VAULT", "Controlled-substance vault", LocationKind.STORAGE)


class NetworkPlan:
    """The whole demo network as plain data: a pure function of the day and the seeds."""

    def __init__(self, today: datetime.date):
        self.today = today
        ids = random.Random(IDENTIFIER_SEED)
        dates = random.Random(DATE_SEED)
        self.partners = self._partners(ids, dates)
        self.lots = self._lots(ids, dates)

    def _licence_period(
        self, dates: random.Random, years: int = 3
    ) -> tuple[datetime.date, datetime.date]:
        # Issued before the first seeded order (four months back), so the history is licensed.
        valid_from = self.today - datetime.timedelta(days=dates.randint(150, 600))
        return valid_from, add_months(valid_from, 12 * years) - datetime.timedelta(days=1)

    def _state_licence(
        self, ids: random.Random, dates: random.Random, kind: str, region: str, categories
    ) -> LicenceSpec:
        authority, state = STATE_BOARDS[region]
        tag = {LicenceKind.WHOLESALE: "WD", LicenceKind.PHARMACY: "PH", LicenceKind.HOSPITAL: "HP"}
        number = f"{state}-{tag[kind]}-{ids.randint(100000, 999999)}"
        valid_from, valid_until = self._licence_period(dates)
        return LicenceSpec(
            kind, number, authority, list(categories), False, valid_from, valid_until
        )

    def _dea_licence(
        self, ids: random.Random, dates: random.Random, registrant_letter: str, name: str
    ) -> LicenceSpec:
        valid_from, valid_until = self._licence_period(dates)
        return LicenceSpec(
            LicenceKind.CONTROLLED,
            make_dea_number(registrant_letter, name, ids),
            DEA,
            [ProductCategory.SMALL_MOLECULE],
            True,
            valid_from,
            valid_until,
        )

    def _partners(self, ids: random.Random, dates: random.Random) -> list[PartnerSpec]:
        manufacturer = PartnerSpec(
            key="manufacturer",
            name="Meridian Biologics, Inc.",
            kind=PartnerKind.MANUFACTURER,
            region="US-NJ",
            company_prefix=MANUFACTURER_PREFIX,
            email="supplychain@meridian-biologics.example",
            phone="+1 (732) 555-0100",
            site_name="Somerset Distribution Center",
            address="2100 Cottontail Lane",
            postal_code="08873",
            city="Somerset",
            locations=_locations(COLD, FREEZER, AMBIENT, VAULT, QUARANTINE, RETURNS, IN_TRANSIT),
            stores_company_prefix=True,
        )
        valid_from, valid_until = self._licence_period(dates, years=5)
        manufacturer.licences = [
            LicenceSpec(
                LicenceKind.MANUFACTURING,
                f"MA-{ids.randint(1000000, 9999999)}",
                REGULATOR_NAME,
                list(ALL_CATEGORIES),
                False,
                valid_from,
                valid_until,
            ),
            self._dea_licence(ids, dates, "R", manufacturer.name),
        ]
        partners = [manufacturer]

        for number, (key, name, region, address, postal, city, phone, dea) in enumerate(
            WHOLESALERS, start=1
        ):
            storage = (COLD, AMBIENT, VAULT) if dea else (COLD, AMBIENT)
            spec = PartnerSpec(
                key=key,
                name=name,
                kind=PartnerKind.WHOLESALER,
                region=region,
                company_prefix=f"08520{number:02d}",
                email=f"orders@{slugify(name.split(',')[0])}.example",
                phone=phone,
                site_name=f"{city} Distribution Center",
                address=address,
                postal_code=postal,
                city=city,
                locations=_locations(*storage, QUARANTINE, RETURNS, IN_TRANSIT),
            )
            spec.licences = [
                self._state_licence(ids, dates, LicenceKind.WHOLESALE, region, ALL_CATEGORIES)
            ]
            if dea:
                spec.licences.append(self._dea_licence(ids, dates, "R", name))
            partners.append(spec)

        for number, (name, region, address, postal, city, phone) in enumerate(PHARMACIES, 1):
            # Most dispense controlled substances; a few have no DEA registration.
            dea = number % 3 != 0
            spec = PartnerSpec(
                key=f"pharmacy-{number:02d}",
                name=name,
                kind=PartnerKind.PHARMACY,
                region=region,
                company_prefix=f"0861{number:03d}",
                email=f"rx@{slugify(name)}.example",
                phone=phone,
                site_name=f"{name}, {city}",
                address=address,
                postal_code=postal,
                city=city,
                locations=_locations(
                    ("SHELF", "Dispensary shelves, 15–25 °C", LocationKind.STORAGE),
                    ("FRIDGE", "Pharmacy refrigerator, 2–8 °C", LocationKind.STORAGE),
                    *([("SAFE", "CII safe", LocationKind.STORAGE)] if dea else []),
                    ("QUAR", "Quarantine bin, segregated", LocationKind.QUARANTINE),
                    ("RET", "Returns tote, segregated", LocationKind.RETURNS),
                ),
            )
            # Not every pharmacy handles biologics.
            categories = [
                category
                for category in ALL_CATEGORIES
                if number % 4 or category != ProductCategory.BIOLOGIC
            ]
            licence = self._state_licence(ids, dates, LicenceKind.PHARMACY, region, categories)
            if number == PHARMACY_LICENCE_RENEWAL_DUE:
                licence = _with_period(licence, until=self.today + datetime.timedelta(days=21))
            elif number == PHARMACY_LICENCE_LAPSED:
                licence = _with_period(licence, until=self.today - datetime.timedelta(days=12))
            spec.licences = [licence]
            if dea:
                spec.licences.append(self._dea_licence(ids, dates, "B", name))
            partners.append(spec)

        for number, (name, region, address, postal, city, phone) in enumerate(HOSPITALS, 1):
            spec = PartnerSpec(
                key=f"hospital-{number:02d}",
                name=name,
                kind=PartnerKind.HOSPITAL,
                region=region,
                company_prefix=f"0874{number:03d}",
                email=f"pharmacy@{slugify(name)}.example",
                phone=phone,
                site_name="Inpatient Pharmacy",
                address=address,
                postal_code=postal,
                city=city,
                locations=_locations(
                    ("MAIN", "Main pharmacy store, 15–25 °C", LocationKind.STORAGE),
                    ("FRIDGE", "Pharmacy cold room, 2–8 °C", LocationKind.STORAGE),
                    ("VAULT", "Controlled-substance vault", LocationKind.STORAGE),
                    QUARANTINE,
                    ("RET", "Returns, awaiting disposition", LocationKind.RETURNS),
                ),
            )
            spec.licences = [
                self._state_licence(
                    ids,
                    dates,
                    LicenceKind.HOSPITAL,
                    region,
                    [*ALL_CATEGORIES, ProductCategory.BLOOD_PRODUCT],
                ),
                self._dea_licence(ids, dates, "A", name),
            ]
            partners.append(spec)

        # The regulator reads; it holds no licence and no stock, so it has no locations.
        partners.append(
            PartnerSpec(
                key="regulator",
                name=REGULATOR_NAME,
                kind=PartnerKind.REGULATOR,
                region="US",
                company_prefix="0890001",
                email="supply-chain-oversight@fmsa.example",
                phone="+1 (301) 555-0123",
                site_name="Headquarters",
                address="1 Oversight Plaza",
                postal_code="20910",
                city="Silver Spring",
                locations=[],
            )
        )
        return partners

    def _lots(self, ids: random.Random, dates: random.Random) -> list[PlannedLot]:
        products = {spec.key: spec for spec in PRODUCTS}
        planned, seen = [], set()
        for spec in LOTS:
            product = products[spec.product]
            lot_number = ""
            while not lot_number or lot_number in seen:
                lot_number = (
                    f"{product.lot_prefix}{ids.randint(1000, 9999)}{ids.choice('ABCDEFGH')}"
                )
            seen.add(lot_number)
            delivery_notes = {
                key: f"DN-{ids.randint(100000, 999999)}" for key in spec.wholesaler_units
            }
            # Expiry is printed as a month: manufacture date plus shelf life, to the month's end.
            manufactured_on = add_months(
                self.today, spec.remaining_months - product.shelf_life_months
            ) - datetime.timedelta(days=dates.randint(5, 25))
            expires_on = end_of_month(add_months(manufactured_on, product.shelf_life_months))
            planned.append(
                PlannedLot(spec, lot_number, manufactured_on, expires_on, delivery_notes)
            )
        return planned


def _with_period(licence: LicenceSpec, *, until: datetime.date) -> LicenceSpec:
    """The same licence, issued for two years ending on ``until``."""
    valid_from = add_months(until, -24) + datetime.timedelta(days=1)
    return replace(licence, valid_from=valid_from, valid_until=until)


# --- seeding through the services ----------------------------------------------------------


class DemoSeeder:
    """Applies a NetworkPlan through the services, one transaction per stage."""

    def __init__(self, *, plan: NetworkPlan, password: str, say):
        self.plan = plan
        self.password = password
        self.say = say
        self.created: Counter[str] = Counter()
        self.found: Counter[str] = Counter()
        self.partners: dict[str, Partner] = {}
        self.locations: dict[tuple[str, str], Location] = {}
        self.sites: dict[str, Site] = {}
        self.agreements: dict[tuple[str, str], Agreement] = {}
        self.users: dict[str, User] = {}
        self.storage_classes: dict[str, StorageClass] = {}
        self.products: dict[str, Product] = {}
        self.batches: dict[str, Batch] = {}
        self.system: User | None = None
        self._password_hash: str | None = None
        self._checked_hashes: dict[str, bool] = {}
        self._licensed: dict[tuple[str, str, datetime.date], bool] = {}

    def stages(self) -> Iterator[tuple[str, Callable[[], str]]]:
        yield "platform account", self.seed_system_account
        yield "partners, licences, sites and locations", self.seed_partners
        yield "users", self.seed_users
        yield "storage classes and products", self.seed_catalogue
        yield "lots and manufacturer stock", self.seed_lots
        yield "wholesaler opening balances", self.seed_wholesaler_stock
        yield "agreements, price lists and sales targets", self.seed_agreements
        yield "orders and shipments", self.seed_orders
        yield "cold chain: profiles, loggers and their readings", self.seed_coldchain

    def run(self) -> None:
        stages = list(self.stages())
        with business_events_muted():
            for number, (title, work) in enumerate(stages, start=1):
                started = time.monotonic()
                with transaction.atomic():
                    summary = work()
                elapsed = time.monotonic() - started
                self.say(f"[{number}/{len(stages)}] {title}: {summary} ({elapsed:.1f} s)")

    def _note(self, what: str, created: bool) -> None:
        (self.created if created else self.found)[what] += 1

    def _tally(self, *whats: str) -> str:
        return ", ".join(
            f"{self.created[w] + self.found[w]} {w} ({self.created[w]} new)" for w in whats
        )

    # stage 1 -----------------------------------------------------------------------------

    def seed_system_account(self) -> str:
        try:
            self.system = partner_services.system_account()
        except ApplicationError as refused:
            raise CommandError(refused.detail) from refused
        return f"{SYSTEM_USERNAME!r} (superuser, cannot sign in)"

    # stage 2 -----------------------------------------------------------------------------

    def seed_partners(self) -> str:
        for spec in self.plan.partners:
            partner = Partner.objects.filter(gln=spec.gln).first()
            created = partner is None
            if created:
                partner = partner_services.partner_create(
                    actor=self.system,
                    reason=f"{SETUP}: onboarding of {spec.name}",
                    name=spec.name,
                    kind=spec.kind,
                    gln=spec.gln,
                    region=spec.region,
                    contact_email=spec.email,
                    contact_phone=spec.phone,
                    gs1_company_prefix=spec.company_prefix if spec.stores_company_prefix else "",
                )
            self._note("partners", created=created)
            self.partners[spec.key] = partner
            self._seed_licences(spec, partner)
            self._seed_site(spec, partner)
        return self._tally("partners", "licences", "sites", "locations")

    def _seed_licences(self, spec: PartnerSpec, partner: Partner) -> None:
        for licence in spec.licences:
            existing = Licence.objects.filter(
                issuing_authority=licence.authority, number=licence.number
            ).first()
            if existing is None:
                partner_services.licence_create(
                    partner=partner,
                    actor=self.system,
                    reason=f"{SETUP}: licence {licence.number} verified with {licence.authority}",
                    number=licence.number,
                    kind=licence.kind,
                    issuing_authority=licence.authority,
                    product_categories=[str(c) for c in licence.categories],
                    covers_controlled_substances=licence.controlled,
                    valid_from=licence.valid_from,
                    valid_until=licence.valid_until,
                )
            self._note("licences", created=existing is None)

    def _seed_site(self, spec: PartnerSpec, partner: Partner) -> None:
        site = Site.objects.filter(gln=spec.site_gln).first()
        site_created = site is None
        if site is None:
            site = partner_services.site_create(
                partner=partner,
                actor=self.system,
                reason=f"{SETUP}: site of {spec.name}",
                name=spec.site_name,
                gln=spec.site_gln,
                address_line=spec.address,
                postal_code=spec.postal_code,
                city=spec.city,
                country="US",
            )
        self._note("sites", created=site_created)
        self.sites[spec.key] = site
        for location_spec in spec.locations:
            location = Location.objects.filter(site=site, code=location_spec.code).first()
            location_created = location is None
            if location is None:
                location = partner_services.location_create(
                    site=site,
                    actor=self.system,
                    reason=f"{SETUP}: {location_spec.name} at {spec.site_name}",
                    code=location_spec.code,
                    name=location_spec.name,
                    kind=location_spec.kind,
                )
            self._note("locations", created=location_created)
            self.locations[spec.key, location_spec.code] = location

    # stage 3 -----------------------------------------------------------------------------

    def seed_users(self) -> str:
        for spec in [*DEMO_USERS, *STAFF_USERS, *BUYER_USERS]:
            self.users[spec.username] = self._ensure_user(spec)
        summary = self._tally("users")
        if self.created["passwords reset"]:
            summary += f"; {self.created['passwords reset']} passwords reset to DEMO_PASSWORD"
        return summary

    def _demo_password_hash(self) -> str:
        # The demo logins share one password, so they share one hash: a slow hash per user
        # would be most of the command's run time, and their common password is no secret.
        if self._password_hash is None:
            self._password_hash = make_password(self.password)
        return self._password_hash

    def _has_demo_password(self, user: User) -> bool:
        if user.password not in self._checked_hashes:
            self._checked_hashes[user.password] = check_password(self.password, user.password)
        return self._checked_hashes[user.password]

    def _ensure_user(self, spec: UserSpec) -> User:
        partner = self.partners[spec.partner]
        password = self.password if spec.can_sign_in else None
        user = User.objects.filter(username=spec.username).first()
        if user is None:
            domain = partner.contact_email.split("@", 1)[1]
            user = User(
                username=spec.username,
                first_name=spec.first_name,
                last_name=spec.last_name,
                email=f"{spec.first_name}.{spec.last_name}@{domain}".lower(),
                partner=partner,
                role=spec.role,
                is_superuser=spec.is_superuser,
                is_staff=spec.is_superuser,
            )
            if password:
                user.password = self._demo_password_hash()
            else:
                user.set_unusable_password()
            user._change_reason = f"{SETUP}: {Role(spec.role).label} account for {partner.name}"
            user._history_user = self.system
            user.save()
            self._note("users", created=True)
            return user
        self._note("users", created=False)
        if user.partner_id != partner.pk or user.role != spec.role:
            raise CommandError(
                f"a user {spec.username!r} exists with another partner or role than the demo's "
                f"({Role(spec.role).label} at {partner.name}): rename it or seed a fresh database"
            )
        if password and not self._has_demo_password(user):
            user.password = self._demo_password_hash()
            user._change_reason = f"{SETUP}: demo password set from DEMO_PASSWORD"
            user._history_user = self.system
            user.save(update_fields=["password"])
            self._note("passwords reset", created=True)
        return user

    # stage 4 -----------------------------------------------------------------------------

    def seed_catalogue(self) -> str:
        for spec in STORAGE_CLASSES:
            storage_class = StorageClass.objects.filter(code=spec.code).first()
            created = storage_class is None
            if created:
                storage_class = batch_services.storage_class_create(
                    actor=self.system,
                    reason=f"{SETUP}: labelled storage condition {spec.name.lower()}",
                    code=spec.code,
                    name=spec.name,
                    min_celsius=spec.min_celsius,
                    max_celsius=spec.max_celsius,
                )
            self._note("storage classes", created=created)
            self.storage_classes[spec.code] = storage_class

        manufacturer, qa = self.partners["manufacturer"], self.users["qa"]
        for spec in PRODUCTS:
            gtin = make_gtin14(MANUFACTURER_PREFIX, spec.item_reference)
            product = Product.objects.filter(gtin=gtin).first()
            created = product is None
            if created:
                product = batch_services.product_create(
                    manufacturer=manufacturer,
                    actor=qa,
                    reason=f"{SETUP}: product master data approved by QA ({spec.name})",
                    gtin=gtin,
                    name=spec.name,
                    category=spec.category,
                    dosage_form=spec.dosage_form,
                    strength=spec.strength,
                    pack_size=spec.pack_size,
                    storage_class=self.storage_classes[spec.storage_class],
                    controlled_schedule=spec.schedule,
                    shelf_life_months=spec.shelf_life_months,
                )
            self._note("products", created=created)
            self.products[spec.key] = product
        return self._tally("storage classes", "products")

    # stage 5 -----------------------------------------------------------------------------

    def _storage_for(self, partner_key: str, product: ProductSpec) -> Location:
        if product.schedule:
            code = "VAULT"
        elif product.storage_class == FROZEN:
            code = "FRZ"
        elif product.storage_class == REFRIGERATED:
            code = "COLD"
        else:
            code = "AMB"
        return self.locations[partner_key, code]

    def seed_lots(self) -> str:
        products = {spec.key: spec for spec in PRODUCTS}
        manufacturer = self.partners["manufacturer"]
        qa, warehouse = self.users["qa"], self.users["warehouse"]
        quarantine = self.locations["manufacturer", "QUAR"]
        moves = 0
        for planned in self.plan.lots:
            spec, product_spec = planned.spec, products[planned.spec.product]
            product = self.products[spec.product]
            batch = Batch.objects.filter(product=product, lot_number=planned.lot_number).first()
            created = batch is None
            if created:
                batch = batch_services.batch_create(
                    product=product,
                    lot_number=planned.lot_number,
                    manufactured_on=planned.manufactured_on,
                    expires_on=planned.expires_on,
                    actor=qa,
                    reason=f"{SETUP}: lot {planned.lot_number} registered from the batch record",
                )
            self._note("lots", created=created)
            needs_stock = (
                bool(spec.manufacturer_units)
                and not StockMove.objects.filter(
                    batch=batch, to_location__site__partner=manufacturer
                ).exists()
            )
            if needs_stock:
                batch_services.stock_receive(
                    batch=batch,
                    location=quarantine,
                    quantity=spec.manufacturer_units,
                    actor=warehouse,
                    reason=f"production output of lot {planned.lot_number}, held for QA release",
                    reference=f"BR-{planned.lot_number}",
                )
                moves += 1
            if spec.released and batch.status == BatchStatus.QUARANTINE:
                # Released as QA releases a lot: e-signed, the QA officer's password re-entered.
                batch = batch_services.batch_release(
                    batch=batch,
                    signer=qa,
                    password=self.password,
                    reason=(
                        f"QA release of lot {planned.lot_number}: executed batch record reviewed, "
                        "certificate of analysis conforms"
                    ),
                ).batch
            if needs_stock and batch.status == BatchStatus.RELEASED:
                batch_services.stock_transfer(
                    batch=batch,
                    from_location=quarantine,
                    to_location=self._storage_for("manufacturer", product_spec),
                    quantity=spec.manufacturer_units,
                    actor=warehouse,
                    reason=f"put-away of lot {planned.lot_number} after QA release",
                    reference=f"BR-{planned.lot_number}",
                )
                moves += 1
            self.batches[planned.lot_number] = batch
        today = self.plan.today
        near = today + datetime.timedelta(days=NEAR_EXPIRY_DAYS)
        lots = list(self.batches.values())
        expired = sum(1 for lot in lots if lot.expires_on < today)
        near_expiry = sum(1 for lot in lots if today <= lot.expires_on <= near)
        quarantined = sum(1 for lot in lots if lot.status == BatchStatus.QUARANTINE)
        return (
            f"{self._tally('lots')}: {expired} expired, {near_expiry} expiring within "
            f"{NEAR_EXPIRY_DAYS} days, {quarantined} in quarantine; {moves} stock moves posted"
        )

    # stage 6 -----------------------------------------------------------------------------

    def seed_wholesaler_stock(self) -> str:
        products = {spec.key: spec for spec in PRODUCTS}
        moves = 0
        for planned in self.plan.lots:
            batch = self.batches[planned.lot_number]
            for key, units in planned.spec.wholesaler_units.items():
                wholesaler = self.partners[key]
                if StockMove.objects.filter(
                    batch=batch, to_location__site__partner=wholesaler
                ).exists():
                    continue
                delivery_note = planned.delivery_notes[key]
                batch_services.stock_receive(
                    batch=batch,
                    location=self._storage_for(key, products[planned.spec.product]),
                    quantity=units,
                    actor=self.users[f"{key}.warehouse"],
                    reason=f"opening balance from delivery note {delivery_note}",
                    reference=delivery_note,
                )
                moves += 1
        return f"{moves} receipts posted at {len(WHOLESALERS)} wholesalers"

    # stage 7 -----------------------------------------------------------------------------

    def _agreement_period(self) -> tuple[datetime.date, datetime.date]:
        """Two years from the first of the month half a year ago: every order round lies in it."""
        start = add_months(self.plan.today.replace(day=1), -6)
        return start, add_months(start, 24) - datetime.timedelta(days=1)

    def _trade_pairs(self) -> list[tuple[str, str]]:
        """(supplier key, customer key): the manufacturer supplies each wholesaler, and each
        wholesaler the pharmacies and hospitals of its region."""
        pairs = [("manufacturer", key) for key, *_ in WHOLESALERS]
        pairs += [
            (WHOLESALER_OF_REGION[spec.region], spec.key)
            for spec in self.plan.partners
            if spec.kind in (PartnerKind.PHARMACY, PartnerKind.HOSPITAL)
        ]
        return pairs

    def _may_receive(self, partner_key: str, product_key: str, *days: datetime.date) -> bool:
        """The licence check the order rules make, asked once per partner, product and day."""
        for day in days:
            key = (partner_key, product_key, day)
            if key not in self._licensed:
                self._licensed[key] = partner_may_receive(
                    partner=self.partners[partner_key], product=self.products[product_key], on=day
                ).allowed
            if self._licensed[key]:
                return True
        return False

    def _price_list(self, supplier_key: str, customer_key: str) -> dict[str, Decimal]:
        """The products the supplier can stock and the customer is licensed for (now, or when the
        agreement began: a lapsed licence does not rewrite the price list), at the tier's price."""
        today, (valid_from, _) = self.plan.today, self._agreement_period()
        prices = {}
        for key, price in LIST_PRICES.items():
            if supplier_key != "manufacturer" and not self._may_receive(supplier_key, key, today):
                continue
            if not self._may_receive(customer_key, key, today, valid_from):
                continue
            prices[key] = (
                price
                if supplier_key == "manufacturer"
                else (price * WHOLESALE_MARKUP).quantize(Decimal("0.01"))
            )
        return prices

    def seed_agreements(self) -> str:
        valid_from, valid_until = self._agreement_period()
        month = self.plan.today.replace(day=1)
        months = [add_months(month, n) for n in range(1 - ORDER_ROUNDS, 3)]
        for supplier_key, customer_key in self._trade_pairs():
            supplier, customer = self.partners[supplier_key], self.partners[customer_key]
            desk = self.users[SELLER_DESKS[supplier_key]]
            wholesale = supplier_key == "manufacturer"
            agreement = (
                Agreement.objects.filter(supplier=supplier, customer=customer)
                .order_by("valid_from")
                .first()
            )
            created = agreement is None
            if created:
                agreement = order_services.agreement_create(
                    supplier=supplier,
                    customer=customer,
                    territory=[customer.region],
                    valid_from=valid_from,
                    valid_until=valid_until,
                    min_remaining_shelf_life_days=(
                        MANUFACTURER_MIN_SHELF_LIFE_DAYS
                        if wholesale
                        else WHOLESALER_MIN_SHELF_LIFE_DAYS
                    ),
                    actor=desk,
                    reason=f"{SETUP}: supply agreement with {customer.name} signed",
                )
            self._note("agreements", created=created)
            self.agreements[supplier_key, customer_key] = agreement

            prices = self._price_list(supplier_key, customer_key)
            priced = set(
                AgreementPrice.objects.filter(agreement=agreement).values_list(
                    "product_id", flat=True
                )
            )
            for key, price in prices.items():
                product = self.products[key]
                if product.pk not in priced:
                    order_services.agreement_set_price(
                        agreement=agreement,
                        product=product,
                        unit_price=price,
                        currency="USD",
                        actor=desk,
                        reason=f"{SETUP}: price list of the agreement with {customer.name}",
                    )
                self._note("prices", created=product.pk not in priced)

            # Monthly targets: the agreement's value, and per product units for a wholesaler.
            factor = 10 if wholesale else 2 if customer.kind == PartnerKind.HOSPITAL else 1
            targets: list[tuple[Product | None, int | None, Decimal | None]] = [
                (
                    None,
                    None,
                    (
                        sum(
                            (
                                price * _mid(PHARMACY_LINE_PACKS[key]) * factor
                                for key, price in prices.items()
                            ),
                            Decimal(0),
                        )
                        / 2  # not every product is ordered every month
                    ).quantize(Decimal("0.01")),
                )
            ]
            if wholesale:
                targets += [
                    (self.products[key], _mid(PHARMACY_LINE_PACKS[key]) * factor, None)
                    for key in prices
                ]
            existing = set(
                SalesTarget.objects.filter(agreement=agreement).values_list(
                    "period_start", "product_id"
                )
            )
            for start in months:
                for product, quantity, value in targets:
                    new = (start, product.pk if product else None) not in existing
                    if new:
                        order_services.sales_target_set(
                            agreement=agreement,
                            period_start=start,
                            period_end=end_of_month(start),
                            product=product,
                            target_quantity=quantity,
                            target_value=value,
                            actor=desk,
                            reason=f"{SETUP}: {start:%B %Y} target agreed with {customer.name}",
                        )
                    self._note("sales targets", created=new)
        return self._tally("agreements", "prices", "sales targets")

    # stage 8 -----------------------------------------------------------------------------

    def seed_coldchain(self) -> str:
        """Temperature profiles, a calibrated logger on each shipment in transit, and their
        readings so far (one trip with an excursion), through coldchain's own demo seed."""
        from coldchain.demo import seed_coldchain

        return str(seed_coldchain())

    def seed_orders(self) -> str:
        """Four monthly rounds: each wholesaler replenishes from the manufacturer, then the
        pharmacies and hospitals order from their wholesaler; each order is submitted, confirmed,
        allocated FEFO, shipped and received. The last round leaves a few orders open (submitted,
        allocated, in transit) and one is withdrawn.

        Each order is placed on a day of its round's month and taken through its steps over
        the following days under ``pharmadms.clock.at``: its business dates (order, submission,
        dispatch, delivery, receipt) are that month's, so the sales by month show every round.
        History rows, chain entries and ledger moves still record the real time they were
        written: the audit trail is never back-dated.
        """
        existing = Order.objects.filter(customer_reference__startswith=DEMO_ORDER_MARKER).count()
        if existing:
            return f"{existing} demo orders (0 new): the order history exists already"
        rng = random.Random(ORDER_SEED)
        today = self.plan.today
        customers = [
            spec.key
            for spec in self.plan.partners
            if spec.kind in (PartnerKind.PHARMACY, PartnerKind.HOSPITAL)
        ]
        outcome: Counter[str] = Counter()
        for round_number in range(ORDER_ROUNDS):
            month = add_months(today.replace(day=1), round_number - ORDER_ROUNDS + 1)
            last_round = round_number == ORDER_ROUNDS - 1
            for key, *_ in WHOLESALERS:
                day = self._order_day(rng, month)
                order = self._place(rng, "manufacturer", key, month, day, lines=3)
                if order is None:
                    continue
                # In the last round Great Lakes' replenishment is still on the truck.
                stop = "dispatched" if last_round and key == "greatlakes" else "received"
                outcome[self._advance(rng, order, day, stop=stop)] += 1
            placed = 0
            for key in customers:
                day = self._order_day(rng, month)
                if rng.random() > 0.6 or not self._orderable(key, day):
                    continue
                supplier = self.agreements_supplier(key)
                order = self._place(rng, supplier, key, month, day, lines=rng.randint(1, 3))
                if order is None:
                    continue
                stop, receipt = "received", "full"
                if last_round:
                    # The month's last orders are still open; one is withdrawn by the buyer.
                    stop = {0: "submitted", 1: "submitted", 2: "allocated", 3: "allocated",
                            4: "dispatched", 5: "cancelled"}.get(placed, "received")  # fmt: skip
                elif round_number == 1 and placed == 0:
                    receipt = "damaged"
                elif round_number == 2 and placed == 0:
                    receipt = "short"
                outcome[self._advance(rng, order, day, stop=stop, receipt=receipt)] += 1
                placed += 1
        orders = sum(outcome.values())
        self.created["orders"] += orders
        states = ", ".join(f"{count} {state}" for state, count in sorted(outcome.items()))
        shipments = Shipment.objects.filter(order__customer_reference__startswith=DEMO_ORDER_MARKER)
        return f"{orders} orders ({orders} new): {states}; {shipments.count()} shipments"

    def agreements_supplier(self, customer_key: str) -> str:
        return next(s for s, c in self.agreements if c == customer_key)

    def _order_day(self, rng: random.Random, month: datetime.date) -> datetime.date:
        """A day of ``month`` to place an order on, early enough that its last step (the
        receipt, ``ORDER_STEP_DAYS`` later) is not after today."""
        latest = min(end_of_month(month), self.plan.today - datetime.timedelta(ORDER_STEP_DAYS[-1]))
        earliest = min(month, latest)
        return earliest + datetime.timedelta(days=rng.randint(0, (latest - earliest).days))

    def _orderable(self, customer_key: str, day: datetime.date) -> bool:
        """A customer whose licence has lapsed by ``day`` cannot order then."""
        return any(
            self._licensed_throughout(customer_key, key, day)
            for key in self._price_list(self.agreements_supplier(customer_key), customer_key)
        )

    def _licensed_throughout(self, customer_key: str, product_key: str, day) -> bool:
        """Licensed for the product on the order day and on the dispatch day (both checked)."""
        return all(
            self._may_receive(customer_key, product_key, day + datetime.timedelta(offset))
            for offset in (ORDER_STEP_DAYS[0], ORDER_STEP_DAYS[2])
        )

    def _buyer(self, partner_key: str) -> User:
        if partner_key in SELLER_DESKS:
            return self.users[SELLER_DESKS[partner_key]]
        return self.users["pharmacy" if partner_key == "pharmacy-01" else f"{partner_key}.buyer"]

    def _warehouse(self, partner_key: str) -> User:
        return self.users[
            "warehouse" if partner_key == "manufacturer" else f"{partner_key}.warehouse"
        ]

    def _place(
        self,
        rng: random.Random,
        supplier_key: str,
        customer_key: str,
        month,
        day: datetime.date,
        *,
        lines: int,
    ) -> Order | None:
        """Place an order on ``day`` (none when the customer is licensed for nothing then)."""
        agreement = self.agreements[supplier_key, customer_key]
        customer = self.partners[customer_key]
        priced = [
            key
            for key in self._price_list(supplier_key, customer_key)
            if self._licensed_throughout(customer_key, key, day)
        ]
        factor = (
            10
            if customer.kind == PartnerKind.WHOLESALER
            else 2
            if customer.kind == PartnerKind.HOSPITAL
            else 1
        )
        if not priced:
            return None
        chosen = rng.sample(priced, min(lines, len(priced)))
        self.created["order lines"] += len(chosen)
        sequence = self.created["orders placed"] = self.created["orders placed"] + 1
        with step_at(day, 0):
            return order_services.order_create(
                buyer=customer,
                seller=agreement.supplier,
                ship_to=self.sites[customer_key],
                lines=[
                    {
                        "product": self.products[key],
                        "quantity": rng.randint(*PHARMACY_LINE_PACKS[key]) * factor,
                    }
                    for key in chosen
                ],
                actor=self._buyer(customer_key),
                reason=f"{month:%B %Y} order to {agreement.supplier.name}",
                customer_reference=f"{DEMO_ORDER_MARKER}{month:%Y%m}-{sequence:04d}",
            )

    def _advance(
        self,
        rng: random.Random,
        order: Order,
        day: datetime.date,
        *,
        stop: str,
        receipt: str = "full",
    ) -> str:
        """Take ``order`` through its life up to ``stop``, each step on its business day after
        ``day`` (``ORDER_STEP_DAYS``); answer the state it was left in."""
        seller_key = next(k for k, p in self.partners.items() if p.pk == order.seller_id)
        buyer_key = next(k for k, p in self.partners.items() if p.pk == order.buyer_id)
        buyer, desk = self._buyer(buyer_key), self.users[SELLER_DESKS[seller_key]]
        seller_warehouse = self._warehouse(seller_key)
        placed, confirmed, dispatched, delivered, received = ORDER_STEP_DAYS
        with step_at(day, placed):
            order = order_services.order_submit(order=order, actor=buyer, reason="order sent")
            if stop in ("submitted", "cancelled"):
                if stop == "cancelled":
                    order_services.order_cancel(
                        order=order, actor=buyer, reason="withdrawn: ordered twice by mistake"
                    )
                return stop
        with step_at(day, confirmed):
            order = order_services.order_confirm(
                order=order, actor=desk, reason="order accepted: licence and agreement checked"
            )
            order = order_services.order_allocate(order=order, actor=desk, reason="FEFO allocation")
        if stop == "allocated" or not any(line.quantity_allocated for line in order.lines.all()):
            return "allocated"
        with step_at(day, dispatched):
            shipment = order_services.shipment_create_from_order(
                order=order,
                actor=seller_warehouse,
                reason="picking list printed",
                carrier=rng.choice(CARRIERS),
                tracking_number=f"1Z{rng.randint(10**9, 10**10 - 1)}",
            )
            shipment = order_services.shipment_dispatch(
                shipment=shipment, actor=seller_warehouse, reason="handed to the carrier"
            )
        if stop == "dispatched":
            return "in transit"
        with step_at(day, delivered):
            order_services.shipment_deliver(
                shipment=shipment, actor=desk, reason="carrier's proof of delivery"
            )
        lines = list(shipment.lines.order_by("id"))
        entries = [
            {"line": line.pk, "received_quantity": line.quantity, "damaged_quantity": 0}
            for line in lines
        ]
        if receipt == "damaged" and lines[0].quantity > 1:
            entries[0]["received_quantity"] -= 1
            entries[0]["damaged_quantity"] = 1
        elif receipt == "short" and lines[0].quantity > 1:
            entries[0]["received_quantity"] -= 1
        receiver = self._warehouse(buyer_key) if buyer_key in SELLER_DESKS else buyer
        with step_at(day, received):
            order_services.shipment_receive(
                shipment=shipment, lines=entries, actor=receiver, reason="goods checked in"
            )
        if buyer_key in SELLER_DESKS:
            self._put_away(buyer_key, shipment)
        return "received"

    def _put_away(self, partner_key: str, shipment: Shipment) -> None:
        """A receipt lands in the site's first storage location; move each product to its own
        (ambient goods to the warehouse, controlled ones to the vault)."""
        moves = StockMove.objects.filter(
            reference=f"shipment:{shipment.number}",
            kind=MoveKind.DELIVERY,
            to_location__kind=LocationKind.STORAGE,
        ).select_related("batch", "to_location")
        specs = {self.products[spec.key].pk: spec for spec in PRODUCTS}
        for move in moves:
            spec = specs[move.batch.product_id]
            target = self._storage_for(partner_key, spec)
            if target.pk != move.to_location_id:
                batch_services.stock_transfer(
                    batch=move.batch,
                    from_location=move.to_location,
                    to_location=target,
                    quantity=move.quantity,
                    actor=self._warehouse(partner_key),
                    reason=f"put-away of lot {move.batch.lot_number} after receipt",
                    reference=move.reference,
                )


def step_at(day: datetime.date, offset: int):
    """Run a step of a seeded order on its business day: ``offset`` days after ``day``, in the
    morning, never later than now (the audit trail keeps the real time regardless)."""
    moment = timezone.make_aware(
        datetime.datetime.combine(day + datetime.timedelta(days=offset), datetime.time(10, 0))
    )
    return clock.at(min(moment, timezone.now() - datetime.timedelta(minutes=1)))


def _mid(bounds: tuple[int, int]) -> int:
    return (bounds[0] + bounds[1] + 1) // 2


@contextlib.contextmanager
def business_events_muted() -> Iterator[None]:
    """Announce none of the seeded history: the demo partners' contacts are fictitious, and
    hundreds of event e-mails (console or SMTP) and webhook lookups would be the seed's run time.
    The integrations receiver is connected again afterwards, failure or not."""
    muted = business_event.disconnect(dispatch_uid=INTEGRATIONS_RECEIVER)
    try:
        yield
    finally:
        if muted:
            business_event.connect(receivers.on_business_event, dispatch_uid=INTEGRATIONS_RECEIVER)


class Command(BaseCommand):
    help = (
        "Seed a demo network (partners, licences, products, lots, stock, one login per role) "
        "through the services. Safe to run again: nothing is created twice."
    )

    def handle(self, *args, **options):
        password = settings.DEMO_PASSWORD
        if not password:
            raise CommandError(
                "DEMO_PASSWORD is empty: set it to the password the demo logins should use"
            )
        started = time.monotonic()
        today = timezone.localdate()
        self.stdout.write(f"Seeding the PharmaDMS demo network (today is {today:%Y-%m-%d})")
        seeder = DemoSeeder(plan=NetworkPlan(today), password=password, say=self.stdout.write)
        try:
            seeder.run()
        except ApplicationError as error:
            raise CommandError(
                f"a service refused ({error.code}): {error.detail}; that stage was rolled back"
            ) from error
        self.stdout.write(self.style.SUCCESS(f"Done in {time.monotonic() - started:.1f} s."))
        self.stdout.write("")
        self.stdout.write(self._logins_table(seeder, password))

    def _logins_table(self, seeder: DemoSeeder, password: str) -> str:
        header = ("username", "role", "partner", "password")
        rows = [
            (
                spec.username,
                Role(spec.role).label,
                seeder.users[spec.username].partner.name,
                password,
            )
            for spec in DEMO_USERS
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

        def line(cells) -> str:
            cells = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
            return "  ".join(cells).rstrip()

        return "\n".join(
            [
                "Demo logins (the password is DEMO_PASSWORD):",
                line(header),
                line("-" * width for width in widths),
                *(line(row) for row in rows),
            ]
        )
