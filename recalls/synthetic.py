"""A large synthetic distribution network, loaded set-based, for recall drills and benchmarks.

``seed_network`` (the management command) calls :func:`seed_network`: one manufacturer with
its products and lots, ``wholesalers`` wholesalers that each buy every lot from it, and
``pharmacies`` pharmacies that each buy up to :data:`LOTS_PER_PHARMACY` lots from their
wholesaler (a tenth of them from a second wholesaler as well). Every sale is a whole order as
the services would leave it after dispatch: order, order line per product, one allocation
(consumed) and one shipment line per lot, and the ledger's moves — production receipt,
dispatch into the seller's in-transit location, delivery into the buyer's storage — with the
balances they sum to. A twentieth of the pharmacies' shipments are still in transit, and now and
then a line was picked short to nothing (``quantity`` 0 after dispatch, its units backordered),
as ``orders.services.shipment_dispatch`` leaves such a line. So the trace, on-hand and in-transit
figures read from this network are real ones: moves and balances agree, lot by lot.

Why set-based, and why only on a throw-away database
----------------------------------------------------
``--pharmacies 5000 --wholesalers 50 --lots 200`` is about 200 000 shipment lines and 400 000
moves. Through the per-order services (about 120 ms an order, ``bench/orders.py``) that takes
hours; loaded with COPY (PostgreSQL) or batched executemany (SQLite), under a minute here.

Loading that way writes no history rows and no audit-chain entries: the rows are not records
of anything that happened. Sealing them in bulk would make invented data look like an audited
past, in a chain whose whole point is that it only holds what really happened; and
``audit_verify`` on a seeded database rightly reports the synthetic moves as rows without a
chain entry. So the network is for a throw-away drill or benchmark database only:
:func:`seed_network` refuses (``database_not_empty``) unless the database holds no partner and
the audit chain is empty, and it never runs twice on one database. Everything it writes is
marked: partner names start with ``SYN``, every move's reason names ``seed_network``.
"""

from __future__ import annotations

import datetime
import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from biip.checksums import gs1_standard_check_digit
from django.contrib.auth.hashers import make_password
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.utils import timezone

from audit.models import AuditEntry
from batches.models import (
    AllocationStatus,
    Batch,
    BatchStatus,
    MoveKind,
    Product,
    StockAllocation,
    StockBalance,
    StockMove,
    StorageClass,
)
from orders.models import (
    Order,
    OrderLine,
    OrderNumberCounter,
    OrderStatus,
    Shipment,
    ShipmentLine,
    ShipmentNumberCounter,
    ShipmentStatus,
)
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
from pharmadms import clock
from pharmadms.exceptions import InvalidInput, RuleViolation

# The lots a pharmacy buys: 5000 pharmacies × 38 lots + 50 wholesalers × 200 lots ≈ 200 000
# shipment lines, the size the recall benchmark is specified on.
LOTS_PER_PHARMACY = 38
LOTS_PER_PRODUCT = 10
PRODUCTS_PER_ORDER = 3
SECOND_SUPPLIER_EVERY = 10  # every tenth pharmacy buys from a second wholesaler too
IN_TRANSIT_EVERY = 20  # every twentieth pharmacy shipment is not received yet
ZERO_LINE_EVERY = 250  # every 250th pharmacy order had a lot picked short to nothing
COMPANY_PREFIX = "4012345"
REASON = "synthetic network for drills and benchmarks (seed_network)"
REGIONS = ("DE-BY", "DE-BW", "DE-NW", "DE-HE", "DE-NI", "AT-9", "AT-3")
MAX_SIZE = 100_000


@dataclass
class SeedResult:
    """What was loaded, and how long it took."""

    partners: int = 0
    lots: int = 0
    orders: int = 0
    shipments: int = 0
    shipment_lines: int = 0
    moves: int = 0
    balances: int = 0
    seconds: float = 0.0
    manufacturer_id: int = 0
    qa_username: str = ""
    rows: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.partners} partners, {self.lots} lots, {self.orders} orders, "
            f"{self.shipments} shipments, {self.shipment_lines} shipment lines, "
            f"{self.moves} moves, {self.balances} balances in {self.seconds:.1f} s"
        )


def _check_digit(payload: str) -> str:
    return payload + str(gs1_standard_check_digit(payload))


def _count(value: Any, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= MAX_SIZE:
        raise InvalidInput(
            f"{name} is a whole number from {least} to {MAX_SIZE}", code="invalid_size"
        )
    return value


def database_is_empty() -> bool:
    """No partner and no audit-chain entry: nothing real can be mixed up with synthetic rows."""
    return not Partner.objects.exists() and not AuditEntry.objects.exists()


# --- the loader: COPY on PostgreSQL, multi-row INSERT elsewhere ---------------------------------


class _Loader:
    """Writes rows straight into a model's table, ids assigned here (after the largest one)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = defaultdict(int)
        self._next: dict[type[models.Model], int] = {}

    def next_id(self, model: type[models.Model]) -> int:
        if model not in self._next:
            largest = model._base_manager.aggregate(largest=models.Max("pk"))["largest"]
            self._next[model] = (largest or 0) + 1
        value = self._next[model]
        self._next[model] = value + 1
        return value

    @staticmethod
    def _adapt(value: Any) -> Any:
        if isinstance(value, datetime.datetime):
            return connection.ops.adapt_datetimefield_value(value)
        if isinstance(value, datetime.date):
            return connection.ops.adapt_datefield_value(value)
        if isinstance(value, list | dict):
            return json.dumps(value)
        return value

    def write(
        self, model: type[models.Model], columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> int:
        table = model._meta.db_table
        names = [model._meta.get_field(name).column for name in columns]
        quoted = ", ".join(connection.ops.quote_name(name) for name in names)
        written = 0
        if connection.vendor == "postgresql":
            connection.ensure_connection()
            with (
                connection.connection.cursor() as cursor,
                cursor.copy(
                    f"COPY {connection.ops.quote_name(table)} ({quoted}) FROM STDIN"
                ) as copy,
            ):
                for row in rows:
                    copy.write_row([self._adapt(value) for value in row])
                    written += 1
        else:
            marks = ", ".join(["%s"] * len(names))
            sql = f"INSERT INTO {connection.ops.quote_name(table)} ({quoted}) VALUES ({marks})"  # noqa: S608 - names from the model
            chunk: list[list[Any]] = []
            with connection.cursor() as cursor:
                for row in rows:
                    chunk.append([self._adapt(value) for value in row])
                    if len(chunk) == 5000:
                        cursor.executemany(sql, chunk)
                        written += len(chunk)
                        chunk = []
                if chunk:
                    cursor.executemany(sql, chunk)
                    written += len(chunk)
        self.counts[model._meta.label] += written
        return written

    def finish(self) -> None:
        """Move the id sequences past the ids given here, and refresh the planner's statistics."""
        loaded = list(self._next)
        with connection.cursor() as cursor:
            for statement in connection.ops.sequence_reset_sql(no_style(), loaded):
                cursor.execute(statement)
            if connection.vendor == "postgresql":
                for model in loaded:
                    cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


# --- the network -----------------------------------------------------------------------------


@dataclass
class _Member:
    partner_id: int
    site_id: int
    storage_id: int
    quarantine_id: int
    returns_id: int
    in_transit_id: int
    user_id: int


def _partners(
    load: _Loader,
    rng: random.Random,
    kinds: list[tuple[str, str]],
    now: datetime.datetime,
    password: str | None = None,
) -> list[_Member]:
    """Partners with a site, the four locations, a licence and one user each (the
    manufacturer's a QA officer, the others' a warehouse operator)."""
    members: list[_Member] = []
    partner_rows, site_rows, location_rows, licence_rows, user_rows = [], [], [], [], []
    today = timezone.localdate()
    for kind, name in kinds:
        partner_id = load.next_id(Partner)
        site_id = load.next_id(Site)
        locations = {}
        for code, location_kind in (
            ("STORE", LocationKind.STORAGE),
            ("QUAR", LocationKind.QUARANTINE),
            ("RETURNS", LocationKind.RETURNS),
            ("TRANSIT", LocationKind.IN_TRANSIT),
        ):
            location_id = load.next_id(Location)
            locations[location_kind] = location_id
            location_rows.append((location_id, site_id, code, code.title(), location_kind, True))
        gln = _check_digit(f"47{partner_id:010d}")
        region = REGIONS[rng.randrange(len(REGIONS))]
        partner_rows.append(
            (
                partner_id,
                name,
                kind,
                gln,
                region,
                f"recalls@syn-{partner_id}.example",
                f"+49 89 {partner_id:07d}",
                COMPANY_PREFIX if kind == PartnerKind.MANUFACTURER else "",
                True,
            )
        )
        site_rows.append(
            (
                site_id,
                partner_id,
                f"{name} site",
                _check_digit(f"48{site_id:010d}"),
                f"{partner_id} Synthetic Street",
                f"{80000 + partner_id % 9999:05d}",
                "Munich",
                region[:2],
                True,
            )
        )
        licence_kind = {
            PartnerKind.MANUFACTURER: LicenceKind.MANUFACTURING,
            PartnerKind.WHOLESALER: LicenceKind.WHOLESALE,
        }.get(kind, LicenceKind.PHARMACY)
        licence_rows.append(
            (
                load.next_id(Licence),
                partner_id,
                f"SYN-{partner_id}",
                licence_kind,
                "Synthetic licensing authority",
                list(ProductCategory.values),
                False,
                today - datetime.timedelta(days=365),
                today + datetime.timedelta(days=3650),
                "active",
            )
        )
        user_id = load.next_id(User)
        role = Role.QA_OFFICER if kind == PartnerKind.MANUFACTURER else Role.WAREHOUSE_OPERATOR
        user_rows.append(
            (
                user_id,
                password or make_password(None),  # unusable unless given
                f"syn-{partner_id}-{role}",
                "",
                "",
                "",
                False,
                True,
                False,
                now,
                partner_id,
                role,
            )
        )
        members.append(
            _Member(
                partner_id,
                site_id,
                locations[LocationKind.STORAGE],
                locations[LocationKind.QUARANTINE],
                locations[LocationKind.RETURNS],
                locations[LocationKind.IN_TRANSIT],
                user_id,
            )
        )
    load.write(
        Partner,
        [
            "id",
            "name",
            "kind",
            "gln",
            "region",
            "contact_email",
            "contact_phone",
            "gs1_company_prefix",
            "is_active",
        ],
        partner_rows,
    )
    load.write(
        Site,
        [
            "id",
            "partner",
            "name",
            "gln",
            "address_line",
            "postal_code",
            "city",
            "country",
            "is_active",
        ],
        site_rows,
    )
    load.write(Location, ["id", "site", "code", "name", "kind", "is_active"], location_rows)
    load.write(
        Licence,
        [
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
        ],
        licence_rows,
    )
    load.write(
        User,
        [
            "id",
            "password",
            "username",
            "first_name",
            "last_name",
            "email",
            "is_superuser",
            "is_active",
            "is_staff",
            "date_joined",
            "partner",
            "role",
        ],
        user_rows,
    )
    return members


@dataclass
class _Sale:
    """One order, as dispatched: its lines per product, each with its lots and quantities."""

    seller: _Member
    buyer: _Member
    lines: list[tuple[int, list[tuple[int, int, int]]]]  # product, [(lot, planned, shipped)]
    received: bool
    dispatched_at: datetime.datetime


class _Ledger:
    """Moves as they are posted, and the balances they sum to."""

    def __init__(self, load: _Loader) -> None:
        self.load = load
        self.balances: dict[tuple[int, int], int] = defaultdict(int)
        self.rows: list[tuple] = []

    def move(self, lot, quantity, source, target, kind, reference, user, when) -> None:
        if source is not None:
            self.balances[(lot, source)] -= quantity
        if target is not None:
            self.balances[(lot, target)] += quantity
        self.rows.append(
            (
                self.load.next_id(StockMove),
                lot,
                quantity,
                source,
                target,
                kind,
                reference,
                REASON,
                user,
                when,
            )
        )

    def flush(self) -> None:
        self.load.write(
            StockMove,
            [
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
            ],
            self.rows,
        )
        self.rows = []


def _write_sales(load: _Loader, ledger: _Ledger, sales: list[_Sale], year: int) -> tuple[int, int]:
    """Orders, order lines, allocations, shipments, shipment lines and their moves."""
    orders, order_lines, allocations, shipments, lines = [], [], [], [], []
    for number, sale in enumerate(sales, start=1):
        order_id, shipment_id = load.next_id(Order), load.next_id(Shipment)
        shipment_number = f"SH-{year}-{number:06d}"
        reference = f"shipment:{shipment_number}"
        created = sale.dispatched_at - datetime.timedelta(hours=6)
        received_at = sale.dispatched_at + datetime.timedelta(hours=20) if sale.received else None
        backordered_any = False
        for product_id, lots in sale.lines:
            order_line_id = load.next_id(OrderLine)
            planned = sum(item[1] for item in lots)
            shipped = sum(item[2] for item in lots)
            backordered_any |= shipped < planned
            order_lines.append(
                (
                    order_line_id,
                    order_id,
                    product_id,
                    planned,
                    None,
                    "",
                    shipped,
                    planned - shipped,
                    shipped,
                )
            )
            for lot_id, planned_units, shipped_units in lots:
                allocation_id = load.next_id(StockAllocation)
                allocations.append(
                    (
                        allocation_id,
                        lot_id,
                        sale.seller.storage_id,
                        planned_units,
                        f"order-line:{order_line_id}",
                        AllocationStatus.CONSUMED if shipped_units else AllocationStatus.RELEASED,
                        sale.seller.user_id,
                        created,
                    )
                )
                lines.append(
                    (
                        load.next_id(ShipmentLine),
                        shipment_id,
                        order_line_id,
                        lot_id,
                        shipped_units,
                        0,
                        [],
                        sale.seller.storage_id,
                        allocation_id,
                        shipped_units if sale.received else None,
                        0,
                        "none",
                    )
                )
                if not shipped_units:
                    continue
                ledger.move(
                    lot_id,
                    shipped_units,
                    sale.seller.storage_id,
                    sale.seller.in_transit_id,
                    MoveKind.SHIPMENT,
                    reference,
                    sale.seller.user_id,
                    sale.dispatched_at,
                )
                if sale.received:
                    ledger.move(
                        lot_id,
                        shipped_units,
                        sale.seller.in_transit_id,
                        sale.buyer.storage_id,
                        MoveKind.DELIVERY,
                        reference,
                        sale.buyer.user_id,
                        received_at,
                    )
        if backordered_any:
            order_status = OrderStatus.ALLOCATED
        else:
            order_status = OrderStatus.DELIVERED if sale.received else OrderStatus.SHIPPED
        orders.append(
            (
                order_id,
                f"SO-{year}-{number:06d}",
                sale.buyer.partner_id,
                sale.seller.partner_id,
                sale.buyer.site_id,
                order_status,
                None,
                "",
                sale.buyer.user_id,
                created,
                created,
            )
        )
        shipments.append(
            (
                shipment_id,
                shipment_number,
                order_id,
                sale.seller.site_id,
                sale.buyer.site_id,
                sale.seller.in_transit_id,
                "Synthetic Carrier",
                None,
                "",
                ShipmentStatus.RECEIVED if sale.received else ShipmentStatus.DISPATCHED,
                sale.seller.user_id,
                created,
                sale.dispatched_at,
                None,
                received_at,
            )
        )
    load.write(
        Order,
        [
            "id",
            "number",
            "buyer",
            "seller",
            "ship_to",
            "status",
            "agreement",
            "customer_reference",
            "created_by",
            "created_at",
            "submitted_at",
        ],
        orders,
    )
    load.write(
        OrderLine,
        [
            "id",
            "order",
            "product",
            "quantity",
            "unit_price",
            "currency",
            "quantity_allocated",
            "quantity_backordered",
            "quantity_shipped",
        ],
        order_lines,
    )
    load.write(
        StockAllocation,
        ["id", "batch", "location", "quantity", "reference", "status", "created_by", "created_at"],
        allocations,
    )
    load.write(
        Shipment,
        [
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
            "created_by",
            "created_at",
            "dispatched_at",
            "delivered_at",
            "received_at",
        ],
        shipments,
    )
    load.write(
        ShipmentLine,
        [
            "id",
            "shipment",
            "order_line",
            "batch",
            "quantity",
            "picked_quantity",
            "serials",
            "from_location",
            "allocation",
            "received_quantity",
            "damaged_quantity",
            "discrepancy",
        ],
        lines,
    )
    return len(shipments), len(lines)


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def seed_network(
    *, pharmacies: int, wholesalers: int, lots: int, seed: int = 7, qa_password: str | None = None
) -> SeedResult:
    """Load the synthetic network into an empty database, in one transaction (see the module).

    Refused with ``database_not_empty`` when the database holds a partner or an audit-chain
    entry. ``qa_password`` gives the manufacturer's QA officer a usable password (for a drill
    over the API); without it nobody can log in as a synthetic user.
    """
    pharmacies = _count(pharmacies, "pharmacies", 0)
    wholesalers = _count(wholesalers, "wholesalers", 1)
    lots = _count(lots, "lots", 1)
    started = time.perf_counter()
    rng = random.Random(seed)  # noqa: S311 - a reproducible synthetic network, no secret
    now = timezone.now()
    year = clock.localdate().year
    with transaction.atomic():
        if not database_is_empty():
            raise RuleViolation(
                "seed_network loads synthetic rows without history or audit-chain entries, so it "
                "runs only on an empty, throw-away drill or benchmark database; this one holds "
                "partners or an audit chain",
                code="database_not_empty",
            )
        load = _Loader()
        storage_class_id = load.next_id(StorageClass)
        load.write(
            StorageClass,
            ["id", "code", "name", "min_celsius", "max_celsius"],
            [(storage_class_id, "syn-2-8c", "Refrigerated (synthetic)", 2, 8)],
        )
        (manufacturer,) = _partners(
            load,
            rng,
            [(PartnerKind.MANUFACTURER, "SYN Manufacturer")],
            now,
            password=make_password(qa_password) if qa_password else None,
        )
        wholesale = _partners(
            load,
            rng,
            [
                (PartnerKind.WHOLESALER, f"SYN Wholesaler {n:03d}")
                for n in range(1, wholesalers + 1)
            ],
            now,
        )
        retail = _partners(
            load,
            rng,
            [(PartnerKind.PHARMACY, f"SYN Pharmacy {n:05d}") for n in range(1, pharmacies + 1)],
            now,
        )

        # products and lots
        product_count = math.ceil(lots / LOTS_PER_PRODUCT)
        product_ids, product_rows = [], []
        for n in range(product_count):
            product_id = load.next_id(Product)
            product_ids.append(product_id)
            gtin = _check_digit(f"0{COMPANY_PREFIX}{product_id:05d}")
            product_rows.append(
                (
                    product_id,
                    gtin,
                    f"SYN Product {n + 1:03d}",
                    manufacturer.partner_id,
                    ProductCategory.VACCINE,
                    "solution for injection",
                    "10 mg/ml",
                    10,
                    storage_class_id,
                    "",
                    36,
                    True,
                )
            )
        load.write(
            Product,
            [
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
            ],
            product_rows,
        )
        today = timezone.localdate()
        lot_ids, lot_product, lot_rows = [], {}, []
        for n in range(lots):
            lot_id = load.next_id(Batch)
            lot_ids.append(lot_id)
            lot_product[lot_id] = product_ids[n // LOTS_PER_PRODUCT]
            made = today - datetime.timedelta(days=90 + n % 60)
            lot_rows.append(
                (
                    lot_id,
                    lot_product[lot_id],
                    f"SYN{n + 1:05d}",
                    made,
                    made + datetime.timedelta(days=730),
                    BatchStatus.RELEASED,
                )
            )
        load.write(
            Batch,
            ["id", "product", "lot_number", "manufactured_on", "expires_on", "status"],
            lot_rows,
        )

        # who buys what: each pharmacy its lots from its wholesaler (a tenth from two)
        per_pharmacy = min(lots, LOTS_PER_PHARMACY)
        demand: dict[tuple[int, int], int] = defaultdict(int)  # (wholesaler index, lot) → units
        retail_sales: list[_Sale] = []
        for index, pharmacy in enumerate(retail):
            suppliers = [index % wholesalers]
            if wholesalers > 1 and index % SECOND_SUPPLIER_EVERY == 0:
                suppliers.append((index + 1 + rng.randrange(wholesalers - 1)) % wholesalers)
            chosen = sorted(rng.sample(lot_ids, per_pharmacy))
            by_supplier: dict[int, list[int]] = defaultdict(list)
            for position, lot_id in enumerate(chosen):
                by_supplier[suppliers[position % len(suppliers)]].append(lot_id)
            for supplier, supplier_lots in by_supplier.items():
                by_product: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
                for lot_id in supplier_lots:
                    units = rng.randint(1, 12)
                    demand[(supplier, lot_id)] += units
                    by_product[lot_product[lot_id]].append((lot_id, units, units))
                for order_products in _chunks(sorted(by_product.items()), PRODUCTS_PER_ORDER):
                    sale_number = len(retail_sales)
                    if sale_number % ZERO_LINE_EVERY == ZERO_LINE_EVERY - 1:
                        # picked short to nothing: planned, nothing shipped, backordered
                        product_id, items = order_products[0]
                        lot_id, units, _ = items[0]
                        demand[(supplier, lot_id)] -= units
                        items[0] = (lot_id, units, 0)
                    retail_sales.append(
                        _Sale(
                            seller=wholesale[supplier],
                            buyer=pharmacy,
                            lines=order_products,
                            received=sale_number % IN_TRANSIT_EVERY != IN_TRANSIT_EVERY - 1,
                            dispatched_at=now - datetime.timedelta(minutes=rng.randint(60, 40_000)),
                        )
                    )
        # the manufacturer sells each wholesaler what it sells on, and a quarter more
        wholesale_sales: list[_Sale] = []
        made_units: dict[int, int] = defaultdict(int)
        for index, wholesaler in enumerate(wholesale):
            by_product: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
            for lot_id in lot_ids:
                units = math.ceil(demand[(index, lot_id)] * 1.25) + 10
                made_units[lot_id] += units
                by_product[lot_product[lot_id]].append((lot_id, units, units))
            for product_id, items in sorted(by_product.items()):
                wholesale_sales.append(
                    _Sale(
                        seller=manufacturer,
                        buyer=wholesaler,
                        lines=[(product_id, items)],
                        received=True,
                        dispatched_at=now - datetime.timedelta(days=40, minutes=index),
                    )
                )

        ledger = _Ledger(load)
        production = now - datetime.timedelta(days=60)
        for lot_id in lot_ids:
            units = made_units[lot_id] + 100  # the manufacturer keeps some of each lot
            ledger.move(
                lot_id,
                units,
                None,
                manufacturer.storage_id,
                MoveKind.RECEIPT,
                "",
                manufacturer.user_id,
                production,
            )
        shipments, lines = _write_sales(load, ledger, wholesale_sales + retail_sales, year)
        moves = len(ledger.rows)
        ledger.flush()
        negative = [key for key, units in ledger.balances.items() if units < 0]
        if negative:  # the plan above never sells what a seller does not hold
            raise RuleViolation(
                f"synthetic ledger below zero at {negative[:3]}", code="seed_broken"
            )
        balances = [
            (load.next_id(StockBalance), lot_id, location_id, units, 0, now)
            for (lot_id, location_id), units in sorted(ledger.balances.items())
        ]
        load.write(
            StockBalance,
            ["id", "batch", "location", "on_hand", "allocated", "updated_at"],
            balances,
        )
        orders = len(wholesale_sales) + len(retail_sales)
        load.write(OrderNumberCounter, ["year", "last_number"], [(year, orders)])
        load.write(ShipmentNumberCounter, ["year", "last_number"], [(year, orders)])
        load.finish()
    return SeedResult(
        partners=1 + wholesalers + pharmacies,
        lots=lots,
        orders=orders,
        shipments=shipments,
        shipment_lines=lines,
        moves=moves,
        balances=len(balances),
        seconds=time.perf_counter() - started,
        manufacturer_id=manufacturer.partner_id,
        qa_username=f"syn-{manufacturer.partner_id}-{Role.QA_OFFICER}",
        rows=dict(load.counts),
    )
